"""Tests of the DICOM writers (SEG, planar-ROI SR, summary SR, summary image)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from node.writers import OutputKind, OutputObject, WriterSettings, build_outputs
from plugins.api import (
    AnalysisResult,
    Code,
    Label,
    LoadedSeries,
    Measurement,
    Provenance,
    QCFlag,
    SegmentDefinition,
    Severity,
    SliceResult,
    SourceFrame,
)

ROWS, COLUMNS = 96, 112
SPACING_MM = 1.8
LEVELS = ("basal", "mid", "apical")
MS = Code("ms", "UCUM", "millisecond")
MM2 = Code("mm2", "UCUM", "square millimeter")
T1 = Code("T1", "99TEST", "T1")
AREA = Code("42798000", "SCT", "Area")
MEAN = Code("373098007", "SCT", "Mean")
SD = Code("386136009", "SCT", "Standard Deviation")

SEGMENTS = (
    SegmentDefinition(
        label=Label.LV_BLOOD_POOL,
        name="Left ventricle blood pool",
        category=Code("91723000", "SCT", "Anatomical Structure"),
        property_type=Code("32554009", "SCT", "Cavity of left ventricle"),
        colour_rgb=(220, 40, 40),
    ),
    SegmentDefinition(
        label=Label.MYOCARDIUM,
        name="Left ventricle myocardium",
        category=Code("91723000", "SCT", "Anatomical Structure"),
        property_type=Code("87878005", "SCT", "Left ventricle myocardium"),
        colour_rgb=(40, 200, 60),
        anatomic_region=Code("80891009", "SCT", "Heart"),
    ),
)


@dataclass(frozen=True)
class Case:
    """A synthetic analysed series."""

    result: AnalysisResult
    series: LoadedSeries
    sources: list[pydicom.Dataset]


def ring_labels(centre: tuple[float, float], r_endo: float, r_epi: float) -> np.ndarray:
    """Label image with a blood-pool disc inside a myocardial ring."""
    rr, cc = np.mgrid[:ROWS, :COLUMNS]
    distance = np.hypot(rr - centre[0], cc - centre[1])
    labels = np.zeros((ROWS, COLUMNS), dtype=np.uint8)
    labels[distance <= r_epi] = Label.MYOCARDIUM
    labels[distance <= r_endo] = Label.LV_BLOOD_POOL
    return labels


def make_source(
    index: int, study_uid: str, series_uid: str, t1_ms: np.ndarray, field_strength: float
) -> pydicom.Dataset:
    """A single-frame MR image (T1 map in ms) with what dciodvfy wants of an MR image."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    sop_uid = generate_uid(entropy_srcs=[series_uid, str(index)])
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Test^Writers"
    ds.PatientID = "WRITERS-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC1"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.Modality = "MR"
    ds.SeriesNumber = 12
    ds.SeriesDescription = "MOLLI T1 MAP"
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "HEART"
    ds.Manufacturer = "Synthetic"
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "for"])
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = index + 1
    ds.ImageType = ["DERIVED", "PRIMARY", "T1 MAP"]
    ds.ContentDate = "20240102"
    ds.ContentTime = "101600"
    ds.AcquisitionNumber = 1
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "SS"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = 2.5
    ds.EchoTime = 1.1
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = field_strength
    ds.SliceThickness = 8.0
    ds.ImageOrientationPatient = [0.7, 0.7, 0.1414, -0.1, 0.1, 0.99]
    row = np.array([0.7, 0.7, 0.1414])
    col = np.array([-0.1, 0.1, 0.99])
    row /= np.linalg.norm(row)
    col -= row * np.dot(row, col)
    col /= np.linalg.norm(col)
    ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row, *col)]
    normal = np.cross(row, col)
    position = np.array([-100.0, -80.0, 40.0]) + normal * 10.0 * index
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]
    ds.SliceLocation = round(float(np.dot(normal, position)), 4)
    ds.PixelSpacing = [SPACING_MM, SPACING_MM]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = t1_ms.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PixelData = np.clip(t1_ms, 0, 65535).astype(np.uint16).tobytes()
    return ds


def frame_of(ds: pydicom.Dataset) -> SourceFrame:
    """The loader's view of a single-frame source."""
    return SourceFrame(
        pixels=ds.pixel_array.astype(np.float32),
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        frame_number=None,
        image_position=tuple(float(v) for v in ds.ImagePositionPatient),  # type: ignore[arg-type]
        image_orientation=tuple(float(v) for v in ds.ImageOrientationPatient),  # type: ignore[arg-type]
        pixel_spacing=(float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])),
        slice_thickness=float(ds.SliceThickness),
        units="ms",
        attributes={"InstanceNumber": int(ds.InstanceNumber)},
    )


def slice_measurements(labels: np.ndarray, t1: np.ndarray) -> tuple[Measurement, ...]:
    """Mean/SD of T1 and area of myocardium and blood pool, computed from the images."""
    out = []
    for region, prefix in ((Label.MYOCARDIUM, "myocardium"), (Label.LV_BLOOD_POOL, "blood")):
        values = t1[labels == region]
        out += [
            Measurement(f"{prefix}_t1_mean_ms", T1, float(values.mean()), MS, region, MEAN),
            Measurement(f"{prefix}_t1_sd_ms", T1, float(values.std()), MS, region, SD),
            Measurement(
                f"{prefix}_area_mm2", AREA, float(values.size * SPACING_MM**2), MM2, region
            ),
        ]
    return tuple(out)


def make_case(
    *,
    series_uid: str | None = None,
    version: str = "0.1.0",
    field_strength: float = 1.5,
    with_model: bool = True,
) -> Case:
    """Three analysed short-axis slices of a synthetic T1 map with a ring myocardium."""
    rng = np.random.default_rng(7)
    study_uid = generate_uid(entropy_srcs=["writers-study"])
    series_uid = series_uid or generate_uid(entropy_srcs=["writers-series"])
    sources, slices, labels_all = [], [], []
    radii = ((14.0, 21.0), (12.0, 19.0), (8.0, 14.5))
    for index, (r_endo, r_epi) in enumerate(radii):
        labels = ring_labels((ROWS / 2 + 2, COLUMNS / 2 - 3), r_endo, r_epi)
        t1 = rng.normal(1250.0, 60.0, (ROWS, COLUMNS))
        t1[labels == Label.MYOCARDIUM] = rng.normal(1000.0 + 10 * index, 35.0, (labels == 2).sum())
        t1[labels == Label.LV_BLOOD_POOL] = rng.normal(1650.0, 40.0, (labels == 1).sum())
        sources.append(make_source(index, study_uid, series_uid, t1, field_strength))
        labels_all.append(labels)
    frames = tuple(frame_of(ds) for ds in sources)
    for index, labels in enumerate(labels_all):
        core = labels == Label.MYOCARDIUM
        if index == 1:  # erode the analysed core on one slice so it differs from the ring
            from scipy import ndimage

            core = ndimage.binary_erosion(core)
        slices.append(
            SliceResult(
                frame_index=index,
                labels=labels,
                measurements=slice_measurements(labels, frames[index].pixels),
                level=LEVELS[index],
                analysed_region=core,
            )
        )
    myo_means = [s.measurements[0].value for s in slices]
    measurements = (
        Measurement(
            "myocardium_t1_mean_ms", T1, float(np.mean(myo_means)), MS, Label.MYOCARDIUM, MEAN
        ),
        Measurement(
            "myocardium_t1_sd_ms",
            T1,
            None,
            MS,
            Label.MYOCARDIUM,
            SD,
            reason="Too few pixels in the analysed core.",
        ),
        Measurement("blood_t1_mean_ms", T1, 1650.2, MS, Label.LV_BLOOD_POOL, MEAN),
    )
    flags = (
        QCFlag("t1_high_variance", Severity.WARNING, "Myocardial T1 spread is high.", 2),
        QCFlag("slice_missing", Severity.INFO, "No basal slice above the first one.", None),
    )
    provenance = Provenance(
        algorithm_name="cmr-node t1map",
        algorithm_version=version,
        method="U-Net segmentation of the LV myocardium; T1 statistics over an eroded core.",
        model_name="unet-t1" if with_model else None,
        model_version="1" if with_model else None,
        model_sha256=("ab" * 32) if with_model else None,
    )
    result = AnalysisResult(
        analysis="t1map",
        series_instance_uid=series_uid,
        segments=SEGMENTS,
        slices=tuple(slices),
        measurements=measurements,
        qc_flags=flags,
        provenance=provenance,
        extra={"display_name": "T1"},
    )
    series = LoadedSeries(
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        frames=frames,
        header={"Modality": "MR", "MagneticFieldStrength": field_strength, "SeriesNumber": 12},
    )
    return Case(result, series, sources)
