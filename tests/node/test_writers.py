"""Tests of the DICOM writers (SEG, planar-ROI SR, summary SR, summary image)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from node.outputs.writers import OutputKind, OutputObject, WriterSettings, build_outputs
from node.outputs.writers.sr import CONTOUR_ONLY_REGIONS, shown_on_contour
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
    SegmentDefinition(
        label=Label.RV_BLOOD_POOL,
        name="Right ventricle blood pool",
        category=Code("91723000", "SCT", "Anatomical Structure"),
        property_type=Code("367428002", "SCT", "Cavity of right ventricle"),
        colour_rgb=(60, 120, 230),
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
    ds.PixelSpacing = [SPACING_MM, SPACING_MM]  # the caller may change it
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


def slice_measurements(
    labels: np.ndarray, t1: np.ndarray, spacing: tuple[float, float]
) -> tuple[Measurement, ...]:
    """Mean/SD of T1 and area of myocardium and blood pool, computed from the images."""
    out = []
    for region, prefix in ((Label.MYOCARDIUM, "myocardium"), (Label.LV_BLOOD_POOL, "blood")):
        values = t1[labels == region]
        out += [
            Measurement(f"{prefix}_t1_mean_ms", T1, float(values.mean()), MS, region, MEAN),
            Measurement(f"{prefix}_t1_sd_ms", T1, float(values.std()), MS, region, SD),
            Measurement(
                f"{prefix}_area_mm2",
                AREA,
                float(values.size * spacing[0] * spacing[1]),
                MM2,
                region,
            ),
        ]
    return tuple(out)


def ring_images(
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """Three (T1 map, labels, pixel spacing) of concentric-ring hearts."""
    images = []
    radii = ((14.0, 21.0), (12.0, 19.0), (8.0, 14.5))
    for index, (r_endo, r_epi) in enumerate(radii):
        labels = ring_labels((ROWS / 2 + 2, COLUMNS / 2 - 3), r_endo, r_epi)
        t1 = rng.normal(1250.0, 60.0, (ROWS, COLUMNS))
        t1[labels == Label.MYOCARDIUM] = rng.normal(1000.0 + 10 * index, 35.0, (labels == 2).sum())
        t1[labels == Label.LV_BLOOD_POOL] = rng.normal(1650.0, 40.0, (labels == 1).sum())
        images.append((t1, labels, (SPACING_MM, SPACING_MM)))
    return images


def phantom_images(
    rng: np.random.Generator, field_strength: float
) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """Base, mid and apical phantom T1 maps with their exact labels (LV, myocardium, RV)."""
    t1map = pytest.importorskip("models.phantoms.t1map")
    _heart, slices = t1map.make_t1map_stack(rng, field_strength_t=field_strength)
    return [(s.t1_ms, s.labels.astype(np.uint8), s.pixel_spacing) for s in slices]


def make_case(
    *,
    series_uid: str | None = None,
    version: str = "0.1.0",
    field_strength: float = 1.5,
    with_model: bool = True,
    images: str = "rings",
) -> Case:
    """Three analysed short-axis slices of a synthetic T1 map.

    ``images`` is ``"rings"`` (concentric myocardial rings) or ``"phantom"`` (the project's
    anatomical phantom, with a right ventricle and irregular borders).
    """
    rng = np.random.default_rng(7)
    study_uid = generate_uid(entropy_srcs=["writers-study"])
    series_uid = series_uid or generate_uid(entropy_srcs=["writers-series"])
    sources, slices, labels_all = [], [], []
    made = ring_images(rng) if images == "rings" else phantom_images(rng, field_strength)
    for index, (t1, labels, spacing) in enumerate(made):
        source = make_source(index, study_uid, series_uid, t1, field_strength)
        source.PixelSpacing = [round(float(v), 6) for v in spacing]
        sources.append(source)
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
                measurements=slice_measurements(
                    labels, frames[index].pixels, frames[index].pixel_spacing
                ),
                level=LEVELS[index],
                analysed_region=core,
            )
        )
    myo_means = [float(s.measurements[0].value or 0.0) for s in slices]
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


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def build(case: Case, settings: WriterSettings | None = None) -> dict[str, OutputObject]:
    """Build the outputs of ``case`` keyed by kind."""
    outputs = build_outputs(
        case.result, case.series, case.sources, settings=settings or WriterSettings()
    )
    return {output.kind: output for output in outputs}


def roundtrip(dataset: pydicom.Dataset, path: Path) -> pydicom.Dataset:
    """Write ``dataset`` as a DICOM file and read it back."""
    dataset.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def measurement_report(ds: pydicom.Dataset) -> hd.sr.MeasurementReport:
    """The TID 1500 content of an SR dataset, parsed by highdicom."""
    content = hd.sr.ComprehensiveSR.from_dataset(ds).content
    assert isinstance(content, hd.sr.MeasurementReport)
    return content


def shoelace(points: np.ndarray) -> float:
    """Absolute area of a closed polygon given as (n, 2) vertices."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@pytest.fixture(scope="module", params=["rings", "phantom"])
def case(request: pytest.FixtureRequest) -> Case:
    return make_case(images=request.param)


@pytest.fixture(scope="module")
def outputs(case: Case) -> dict[str, OutputObject]:
    return build(case)


# --------------------------------------------------------------------------------------------
# All outputs
# --------------------------------------------------------------------------------------------


def test_builds_every_kind_with_distinct_files(outputs: dict[str, OutputObject]) -> None:
    assert list(outputs) == [kind.value for kind in OutputKind]
    assert len({o.filename for o in outputs.values()}) == len(outputs)
    for output in outputs.values():
        assert output.filename.endswith(".dcm")


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("kind", [kind.value for kind in OutputKind])
def test_dciodvfy_reports_no_error(
    outputs: dict[str, OutputObject], kind: str, tmp_path: Path
) -> None:
    path = tmp_path / outputs[kind].filename
    outputs[kind].dataset.save_as(path, enforce_file_format=True)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    report = run.stdout + run.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report


def test_outputs_belong_to_the_source_study_and_patient(
    case: Case, outputs: dict[str, OutputObject]
) -> None:
    source = case.sources[0]
    series_uids = set()
    for output in outputs.values():
        ds = output.dataset
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientID == source.PatientID
        assert ds.PatientName == source.PatientName
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert int(ds.SeriesNumber) > int(source.SeriesNumber)
        assert ds.SeriesDescription.startswith("cmr-node T1")
        assert ds.Manufacturer == "cmr-node"
        series_uids.add(ds.SeriesInstanceUID)
    assert len(series_uids) == len(outputs)


def test_uids_are_deterministic_per_series_version_and_kind(case: Case) -> None:
    def uids(c: Case) -> dict[str, tuple[str, str]]:
        return {
            kind: (str(o.dataset.SeriesInstanceUID), str(o.dataset.SOPInstanceUID))
            for kind, o in build(c).items()
        }

    first = uids(case)
    again = uids(make_case())
    assert first == again
    other_version = uids(make_case(version="0.2.0"))
    other_series = uids(make_case(series_uid=generate_uid(entropy_srcs=["another series"])))
    for kind, (series_uid, sop_uid) in first.items():
        assert other_version[kind][0] != series_uid and other_version[kind][1] != sop_uid
        assert other_series[kind][0] != series_uid and other_series[kind][1] != sop_uid
    flat = [uid for pair in first.values() for uid in pair]
    assert len(set(flat)) == len(flat)
    for uid in flat:
        assert uid.startswith("2.25.") and len(uid) <= 64


def test_mismatched_series_is_refused(case: Case) -> None:
    from node.outputs.writers import WriterError

    result = replace(case.result, series_instance_uid="1.2.3.4")
    with pytest.raises(WriterError, match=r"1\.2\.3\.4"):
        build_outputs(result, case.series, case.sources, settings=WriterSettings())


def test_label_without_segment_definition_is_refused(case: Case) -> None:
    from node.outputs.writers import WriterError

    labels = case.result.slices[0].labels.copy()
    labels[:3, :3] = Label.SCAR
    slices = (replace(case.result.slices[0], labels=labels), *case.result.slices[1:])
    result = replace(case.result, slices=slices)
    with pytest.raises(WriterError, match="segment definition"):
        build_outputs(result, case.series, case.sources, settings=WriterSettings())


# --------------------------------------------------------------------------------------------
# SEG
# --------------------------------------------------------------------------------------------


def used_labels(case: Case) -> list[Label]:
    """Labels present in the case's label images, in segment-definition order."""
    present = {int(v) for s in case.result.slices for v in np.unique(s.labels)}
    return [d.label for d in SEGMENTS if int(d.label) in present]


def test_seg_decodes_back_to_the_label_images(
    case: Case, outputs: dict[str, OutputObject], tmp_path: Path
) -> None:
    path = tmp_path / "seg.dcm"
    outputs["seg"].dataset.save_as(path, enforce_file_format=True)
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY"
    labels = used_labels(case)
    names = {d.label: d.name for d in SEGMENTS}
    descriptions = {int(d.SegmentNumber): d for d in seg.SegmentSequence}
    assert sorted(descriptions) == list(range(1, len(labels) + 1))
    assert [descriptions[n].SegmentLabel for n in sorted(descriptions)] == [
        names[label] for label in labels
    ]
    for description in descriptions.values():
        assert description.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = description.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "cmr-node t1map"
        assert algorithm.AlgorithmVersion == "0.1.0"
        assert "ab" * 32 in algorithm.AlgorithmParameters
    assert "not for diagnostic use" in seg.ContentDescription
    uids = [frame.sop_instance_uid for frame in case.series.frames]
    numbers = list(range(1, len(labels) + 1))
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=numbers)
    for index, slice_result in enumerate(case.result.slices):
        for number, label in zip(numbers, labels, strict=True):
            np.testing.assert_array_equal(
                pixels[index, :, :, number - 1], slice_result.labels == label
            )


def test_seg_omits_empty_frames(tmp_path: Path) -> None:
    base = make_case()
    # Leave the apical frame unanalysed: it must not appear in the SEG.
    result = replace(base.result, slices=base.result.slices[:2])
    seg = build_outputs(result, base.series, base.sources, settings=WriterSettings())[0]
    assert seg.kind == "seg"
    assert int(seg.dataset.NumberOfFrames) == 4
    referenced = {
        item.SourceImageSequence[0].ReferencedSOPInstanceUID
        for frame in seg.dataset.PerFrameFunctionalGroupsSequence
        for item in frame.DerivationImageSequence
    }
    assert referenced == {f.sop_instance_uid for f in base.series.frames[:2]}


# --------------------------------------------------------------------------------------------
# SRs
# --------------------------------------------------------------------------------------------


def test_roi_sr_has_closed_contours_per_slice_and_region(
    case: Case, outputs: dict[str, OutputObject], tmp_path: Path
) -> None:
    ds = roundtrip(outputs["sr"].dataset, tmp_path / "sr.dcm")
    assert ds.CompletionFlag == "COMPLETE"
    assert ds.VerificationFlag == "UNVERIFIED"
    report = measurement_report(ds)
    assert report[0].ConceptNameCodeSequence[0].CodeValue == "126000"
    groups = report.get_planar_roi_measurement_groups()
    frames_by_uid = {f.sop_instance_uid: i for i, f in enumerate(case.series.frames)}
    slices = {s.frame_index: s for s in case.result.slices}
    labels_by_type = {d.property_type.value: d.label for d in SEGMENTS}
    drawn_area: dict[tuple[int, Label], float] = {}
    measured: dict[tuple[int, Label], list[tuple[str, float, str]]] = {}
    for group in groups:
        roi = group.roi
        assert roi is not None and roi.GraphicType == "POLYLINE"
        points = np.asarray(roi.value, dtype=np.float64)
        np.testing.assert_allclose(points[0], points[-1])
        image = roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        slice_result = slices[frames_by_uid[image]]
        finding = group.finding_type
        assert finding is not None
        key = (slice_result.frame_index, labels_by_type[finding.value])
        drawn_area[key] = drawn_area.get(key, 0.0) + shoelace(points)
        assert slice_result.level in (group.tracking_identifier or "")
        assert group.tracking_uid is not None
        measured.setdefault(key, []).extend(
            (item.name.meaning, item.value, item.unit.value) for item in group.get_measurements()
        )
    expected_keys = {
        (s.frame_index, label)
        for s in case.result.slices
        for label in used_labels(case)
        if (s.labels == label).any()
    }
    assert set(drawn_area) == expected_keys
    for (frame_index, label), area in drawn_area.items():
        mask_area = int((slices[frame_index].labels == label).sum())
        assert area == pytest.approx(mask_area, rel=0.03), (frame_index, label)
        expected = [
            m for m in slices[frame_index].measurements
            if m.region == label and shown_on_contour(m)
        ]
        if label in CONTOUR_ONLY_REGIONS:
            assert not expected and not measured.get((frame_index, label))
            continue
        written = measured[(frame_index, label)]
        assert len(written) == len(expected)
        for measurement, (name, value, unit) in zip(expected, written, strict=True):
            assert name == measurement.name.meaning
            assert value == pytest.approx(measurement.value, rel=1e-6)
            assert unit == measurement.unit.value


def test_roi_sr_carries_slice_qc_flags_and_disclaimer(
    outputs: dict[str, OutputObject], tmp_path: Path
) -> None:
    ds = roundtrip(outputs["sr"].dataset, tmp_path / "sr.dcm")
    texts = _texts(ds)
    assert any("t1_high_variance" in t for t in texts)
    assert any("not for diagnostic use" in t for t in texts)
    assert any("ab" * 32 in t for t in texts)
    groups = measurement_report(ds).get_planar_roi_measurement_groups()
    flagged = [g for g in groups if "[QC warning]" in (g.tracking_identifier or "")]
    assert flagged and all("apical" in (g.tracking_identifier or "") for g in flagged)


def _texts(ds: pydicom.Dataset) -> list[str]:
    """Every TEXT value in an SR content tree."""
    found = []
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "TEXT":
            found.append(str(item.TextValue))
        found += _texts(item)
    return found


def _device_observer_name(ds: pydicom.Dataset) -> str:
    for item in ds.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "121013":
            return str(item.TextValue)
    raise AssertionError("no Device Observer Name")


def test_summary_sr_references_seg_segments_and_reports_missing_values(
    case: Case, outputs: dict[str, OutputObject], tmp_path: Path
) -> None:
    ds = roundtrip(outputs["sr-summary"].dataset, tmp_path / "sr-summary.dcm")
    assert _device_observer_name(ds).startswith("cmr-node ")
    groups = measurement_report(ds).get_volumetric_roi_measurement_groups()
    assert len(groups) == len(used_labels(case))
    seg = outputs["seg"].dataset
    numbers_of_segments = []
    for group in groups:
        segment = group.referenced_segment
        assert segment is not None
        reference = segment[0].ReferencedSOPSequence[0]
        assert reference.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        numbers_of_segments.append(int(reference.ReferencedSegmentNumber))
    assert sorted(numbers_of_segments) == list(range(1, len(used_labels(case)) + 1))
    regions = {d.property_type.value: d.label for d in SEGMENTS}
    numbers = {
        (
            regions[group.finding_type.value if group.finding_type else ""],
            item.name.meaning,
            item.derivation.meaning if item.derivation else None,
        ): item.value
        for group in groups
        for item in group.get_measurements()
    }
    assert len(numbers) == sum(m.value is not None for m in case.result.measurements)
    for measurement in case.result.measurements:
        assert measurement.derivation is not None
        key = (measurement.region, measurement.name.meaning, measurement.derivation.meaning)
        if measurement.value is None:
            assert key not in numbers
        else:
            assert numbers[key] == pytest.approx(measurement.value, rel=1e-6)
    evaluations = [e for g in groups for e in g.get_qualitative_evaluations()]
    missing = [e for e in evaluations if e[0].ConceptCodeSequence[0].CodeValue == "114006"]
    assert [e.name.meaning for e in missing] == ["T1"]
    texts = _texts(ds)
    assert any("Too few pixels in the analysed core." in t for t in texts)
    for flag in case.result.qc_flags:
        assert any(flag.message in t for t in texts)
    assert any(case.result.provenance.method in t for t in texts)


def test_classical_method_is_identified_as_such(tmp_path: Path) -> None:
    outputs = build(make_case(with_model=False))
    algorithm = outputs["seg"].dataset.SegmentSequence[0]
    identification = algorithm.SegmentationAlgorithmIdentificationSequence[0]
    assert "classical" in identification.AlgorithmParameters
    assert identification.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Morphological Operations"
    texts = _texts(outputs["sr-summary"].dataset)
    assert any("classical method" in t for t in texts)


# --------------------------------------------------------------------------------------------
# Contours
# --------------------------------------------------------------------------------------------


def test_ring_becomes_one_keyhole_polygon_with_the_ring_area() -> None:
    from node.outputs.writers.sr import polygon_area, region_polygons

    labels = ring_labels((40.0, 50.0), 9.0, 15.0)
    ring = labels == Label.MYOCARDIUM
    polygons = region_polygons(ring)
    assert len(polygons) == 1
    polygon = polygons[0]
    np.testing.assert_allclose(polygon[0], polygon[-1])
    assert abs(polygon_area(polygon[:-1])) == pytest.approx(ring.sum(), rel=0.02)
    # The polygon runs along both borders: it reaches the epicardial and endocardial radii.
    radii = np.hypot(polygon[:, 0] - 40.0, polygon[:, 1] - 50.0)
    assert radii.max() == pytest.approx(15.5, abs=1.0)
    assert radii.min() == pytest.approx(8.5, abs=1.0)


def test_separate_parts_give_separate_polygons_largest_first() -> None:
    from node.outputs.writers.sr import region_polygons

    mask = np.zeros((30, 30), dtype=bool)
    mask[2:6, 2:6] = True
    mask[10:25, 10:20] = True
    polygons = region_polygons(mask)
    assert len(polygons) == 2
    assert shoelace(polygons[0]) > shoelace(polygons[1])
    assert shoelace(polygons[0]) == pytest.approx(150, rel=0.02)


# --------------------------------------------------------------------------------------------
# Summary image
# --------------------------------------------------------------------------------------------


def test_summary_image_is_an_rgb_page_with_contours(
    case: Case, outputs: dict[str, OutputObject], tmp_path: Path
) -> None:
    from node.outputs.writers.summary import render_summary

    ds = roundtrip(outputs["summary-image"].dataset, tmp_path / "summary.dcm")
    page = render_summary(case.result, case.series)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.PhotometricInterpretation == "RGB"
    assert int(ds.SamplesPerPixel) == 3
    assert ds.BurnedInAnnotation == "YES"
    assert (int(ds.Columns), int(ds.Rows)) == page.size
    pixels = ds.pixel_array
    assert pixels.shape == (page.size[1], page.size[0], 3)
    for definition in SEGMENTS:
        if definition.label not in used_labels(case):
            continue
        colour = np.asarray(definition.colour_rgb, dtype=np.uint8)
        assert np.all(pixels == colour, axis=-1).sum() > 50, definition.name


def test_display_window_follows_field_strength_and_extra() -> None:
    from node.outputs.writers.tiles import display_window

    low_field = make_case(field_strength=1.5)
    high_field = make_case(field_strength=3.0)
    assert display_window(low_field.result, low_field.series) == (0.0, 2000.0)
    assert display_window(high_field.result, high_field.series) == (0.0, 2500.0)
    custom = replace(low_field.result, extra={"display_window": [200, 1800]})
    assert display_window(custom, low_field.series) == (200.0, 1800.0)


def test_measurement_lines_join_mean_and_sd() -> None:
    from node.outputs.writers.page_text import measurement_lines

    lines = measurement_lines(
        [
            Measurement("a", T1, 1012.4, MS, Label.MYOCARDIUM, MEAN),
            Measurement("b", T1, 38.2, MS, Label.MYOCARDIUM, SD),
            Measurement("c", AREA, None, MM2, Label.MYOCARDIUM, reason="no contour"),
        ]
    )
    assert lines == ["T1 1012 ± 38.2 ms", "Area n/a (no contour)"]


def test_missing_slice_value_is_written_as_failure_with_reason(tmp_path: Path) -> None:
    base = make_case()
    first = base.result.slices[0]
    measurements = tuple(
        replace(m, value=None, reason="Core too thin.") if m.key == "myocardium_t1_mean_ms" else m
        for m in first.measurements
    )
    result = replace(
        base.result, slices=(replace(first, measurements=measurements), *base.result.slices[1:])
    )
    outputs = {
        o.kind: o
        for o in build_outputs(result, base.series, base.sources, settings=WriterSettings())
    }
    ds = roundtrip(outputs["sr"].dataset, tmp_path / "sr.dcm")
    groups = measurement_report(ds).get_planar_roi_measurement_groups()
    myocardium = [
        g
        for g in groups
        if g.finding_type is not None
        and g.finding_type.value == "87878005"
        and first.level in (g.tracking_identifier or "")
    ]
    assert len(myocardium) == 1
    derivations = [m.derivation.meaning for m in myocardium[0].get_measurements() if m.derivation]
    assert "Mean" not in derivations  # written as a measurement failure instead
    codes = [
        e[0].ConceptCodeSequence[0].CodeValue for e in myocardium[0].get_qualitative_evaluations()
    ]
    assert "114006" in codes
    assert any("Core too thin." in t for t in _texts(ds))


def test_result_without_labels_still_gives_summary_sr_and_image(tmp_path: Path) -> None:
    base = make_case()
    failure = QCFlag("no_myocardium", Severity.FAILURE, "No myocardium found.", 0)
    result = replace(base.result, slices=(), qc_flags=(*base.result.qc_flags, failure))
    outputs = build_outputs(result, base.series, base.sources, settings=WriterSettings())
    assert [o.kind for o in outputs] == ["sr-summary", "summary-image"]
    report = measurement_report(roundtrip(outputs[0].dataset, tmp_path / "sr.dcm"))
    assert report.get_volumetric_roi_measurement_groups() == []
    assert len(report.get_image_measurement_groups()) == 2
    assert any("No myocardium found." in t for t in _texts(outputs[0].dataset))
    if shutil.which("dciodvfy"):
        for output in outputs:
            path = tmp_path / output.filename
            output.dataset.save_as(path, enforce_file_format=True)
            run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
            assert "Error" not in run.stdout + run.stderr


def test_derived_uids_depend_on_every_part() -> None:
    from node.outputs.uids import derived_uid

    base = derived_uid("1.2.3", "t1map", "0.1.0", "series", "seg")
    assert base == derived_uid("1.2.3", "t1map", "0.1.0", "series", "seg")
    variants = {
        derived_uid("1.2.4", "t1map", "0.1.0", "series", "seg"),
        derived_uid("1.2.3", "lge", "0.1.0", "series", "seg"),
        derived_uid("1.2.3", "t1map", "0.1.1", "series", "seg"),
        derived_uid("1.2.3", "t1map", "0.1.0", "instance", "seg"),
        derived_uid("1.2.3", "t1map", "0.1.0", "seriesseg"),
    }
    assert base not in variants and len(variants) == 5
    with pytest.raises(ValueError, match="SeriesInstanceUID"):
        derived_uid("", "t1map", "0.1.0")


def as_multi_frame(sources: list[pydicom.Dataset]) -> pydicom.Dataset:
    """Merge single-frame MR images into one (minimal) Enhanced MR multi-frame image."""
    merged = copy.deepcopy(sources[0])
    for keyword in (
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "SliceThickness",
        "SliceLocation",
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
    ):
        delattr(merged, keyword)
    merged.SOPClassUID = EnhancedMRImageStorage
    merged.SOPInstanceUID = generate_uid(entropy_srcs=[str(sources[0].SOPInstanceUID), "mf"])
    merged.file_meta.MediaStorageSOPClassUID = merged.SOPClassUID
    merged.file_meta.MediaStorageSOPInstanceUID = merged.SOPInstanceUID
    merged.NumberOfFrames = len(sources)
    measures = pydicom.Dataset()
    measures.PixelSpacing = sources[0].PixelSpacing
    measures.SliceThickness = sources[0].SliceThickness
    orientation = pydicom.Dataset()
    orientation.ImageOrientationPatient = sources[0].ImageOrientationPatient
    shared = pydicom.Dataset()
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]
    merged.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for ds in sources:
        position = pydicom.Dataset()
        position.ImagePositionPatient = ds.ImagePositionPatient
        item = pydicom.Dataset()
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    merged.PerFrameFunctionalGroupsSequence = per_frame
    merged.PixelData = b"".join(ds.PixelData for ds in sources)
    return merged


def test_multi_frame_source_is_referenced_per_frame(tmp_path: Path) -> None:
    base = make_case()
    merged = as_multi_frame(base.sources)
    frames = tuple(
        replace(
            frame,
            sop_instance_uid=str(merged.SOPInstanceUID),
            sop_class_uid=str(merged.SOPClassUID),
            frame_number=index + 1,
        )
        for index, frame in enumerate(base.series.frames)
    )
    series = replace(base.series, frames=frames)
    outputs = {
        o.kind: o for o in build_outputs(base.result, series, [merged], settings=WriterSettings())
    }
    path = tmp_path / "seg.dcm"
    outputs["seg"].dataset.save_as(path, enforce_file_format=True)
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_frame(
        str(merged.SOPInstanceUID), source_frame_numbers=[1, 2, 3], segment_numbers=[1, 2]
    )
    for index, slice_result in enumerate(base.result.slices):
        np.testing.assert_array_equal(pixels[index, :, :, 1], slice_result.labels == 2)
    groups = measurement_report(outputs["sr"].dataset).get_planar_roi_measurement_groups()
    referenced = {
        int(g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber)
        for g in groups
        if g.roi is not None
    }
    assert referenced == {1, 2, 3}


def test_reference_range_statement_reaches_the_sr_and_the_summary(tmp_path: Path) -> None:
    from node.outputs.writers import reference_range_text
    from node.outputs.writers.summary import render_summary

    case = make_case()
    statement = ("no reference range for this sequence (vendor unknown, sequence unknown, "
                 "1.5 T): values only, no z-scores")
    result = replace(case.result, extra={**case.result.extra,
                                         "reference_range": {"available": False,
                                                             "text": statement}})
    assert reference_range_text(case.result) is None
    assert reference_range_text(result) == statement
    built = build(Case(result, case.series, case.sources))
    for kind in ("sr", "sr-summary"):
        ds = roundtrip(built[kind].dataset, tmp_path / f"{kind}.dcm")
        assert statement in _texts(ds), kind
    without = render_summary(case.result, case.series)
    with_statement = render_summary(result, case.series)
    assert with_statement.size[1] > without.size[1]
