"""Reader-correction agreement on real LGE images: EMIDEC expert labels as the "correction".

``python -m bench.corrections_real [--data DIR] [--segmenter two-stage|one-stage] [--json PATH]``

Per EMIDEC development case (``../shared/data/emidec-dev``, 20 real LGE cases, CC BY-NC-SA
4.0, Lalande et al., Data 2020;5(4):89; measuring only, nothing trains): the slices are
wrapped as single-frame MR images (the PNGs have no geometry: an assumed 1.25 mm spacing and
8 mm slice step), segmented by the LGE segmenter as the analysis does, and written as the
node's SEG (LV myocardium with scar, scar); the expert labels are written as a reader's SEG
(another series, another manufacturer).  Both go through DICOM encoding, and
:func:`node.corrections.intake.compare` measures them as the node does when a corrected SEG
arrives.  Reported per case and summarised: myocardium and scar Dice (case-pooled), Δ%scar
(reader minus node); each Dice is checked against the one computed from the arrays directly.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from models.evaluation.lgeseg.evaluate_real import DEFAULT_DATA, load_emidec, make_segmenter
from models.training.lgeseg.real_scores import (
    ASSUMED_SPACING_MM,
    EMIDEC_MYO,
    EMIDEC_SCAR,
    OUR_MYO,
    OUR_SCAR,
)
from node.corrections.intake import compare
from node.outputs.writers.seg import to_pydicom_code
from plugins.lge.segmenter import LgeContrast
from plugins.lib.codes import SEGMENT_LGE_MYOCARDIUM, SEGMENT_SCAR

logger = logging.getLogger(__name__)

SLICE_STEP_MM = 8.0
"""Assumed distance between slices (EMIDEC's originals: about 8 mm slices)."""


def _mr_images(case: str, images: list[npt.NDArray[np.float32]]) -> list[pydicom.Dataset]:
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    datasets = []
    for index, image in enumerate(images):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = case, case, "", ""
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20200101", "120000", "1", ""
        ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber = "", "MR", 1
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, SLICE_STEP_MM * index]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [ASSUMED_SPACING_MM, ASSUMED_SPACING_MM]
        ds.SliceThickness = SLICE_STEP_MM
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.clip(image, 0, 65535).astype(np.uint16).tobytes()
        datasets.append(ds)
    return datasets


def _seg(sources: list[pydicom.Dataset], myo: npt.NDArray[np.bool_],
         scar: npt.NDArray[np.bool_], manufacturer: str) -> pydicom.Dataset:
    """A SEG with the node's two LGE segments, encoded and read back as a receiver would."""
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=definition.name,
            segmented_property_category=to_pydicom_code(definition.category),
            segmented_property_type=to_pydicom_code(definition.property_type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            anatomic_regions=([to_pydicom_code(definition.anatomic_region)]
                              if definition.anatomic_region else None),
        )
        for number, definition in ((1, SEGMENT_LGE_MYOCARDIUM), (2, SEGMENT_SCAR))
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=np.stack([myo, scar], axis=-1),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=2,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=manufacturer,
        manufacturer_model_name=manufacturer, software_versions="1", device_serial_number="1",
        omit_empty_frames=False,
    )
    buffer = io.BytesIO()
    seg.save_as(buffer)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float | None:
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else 2.0 * float((a & b).sum()) / total


def measure(data: Path, segmenter_name: str) -> dict[str, Any]:
    """Per-case agreement of the segmenter's SEG with the expert SEG, and a summary."""
    segmenter = make_segmenter(segmenter_name)
    by_case: dict[str, list[tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]]] = (
        defaultdict(list))
    for case, _, image, labels in load_emidec(data / "emidec-dev"):
        by_case[case].append((image, labels))
    cases = []
    for case, slices in sorted(by_case.items()):
        sources = _mr_images(case, [image for image, _ in slices])
        ours = [np.asarray(segmenter.segment(image, (ASSUMED_SPACING_MM,) * 2,
                                             LgeContrast.MAGNITUDE).labels)
                for image, _ in slices]
        node_myo = np.stack([np.isin(lab, OUR_MYO) for lab in ours])
        node_scar = np.stack([np.isin(lab, OUR_SCAR) for lab in ours])
        true_myo = np.stack([np.isin(lab, EMIDEC_MYO) for _, lab in slices])
        true_scar = np.stack([np.isin(lab, EMIDEC_SCAR) for _, lab in slices])
        figures = compare(_seg(sources, node_myo, node_scar, "cmr-node"),
                          _seg(sources, true_myo, true_scar, "EMIDEC expert"))
        direct = {SEGMENT_LGE_MYOCARDIUM.name: _dice(node_myo, true_myo),
                  SEGMENT_SCAR.name: _dice(node_scar, true_scar)}
        for label, value in direct.items():
            got = figures.dice.get(label)
            if (value is None) != (got is None) or (value is not None and got is not None
                                                    and abs(value - got) > 1e-12):
                raise RuntimeError(f"{case}: {label} Dice {got} through DICOM, {value} direct")
        cases.append({"case": case, "slices": len(slices), **figures.as_json()})
        logger.info("%s: %s", case, figures.as_json())
    return {"cases": cases, "summary": summarise(cases)}


def _quartiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "q1": None, "q3": None}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"n": len(values), "median": round(float(median), 3), "q1": round(float(q1), 3),
            "q3": round(float(q3), 3)}


def summarise(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and quartiles of the per-case figures."""
    myo = [c["dice"][SEGMENT_LGE_MYOCARDIUM.name] for c in cases
           if SEGMENT_LGE_MYOCARDIUM.name in c["dice"]]
    scar = [c["dice"][SEGMENT_SCAR.name] for c in cases if SEGMENT_SCAR.name in c["dice"]]
    delta = [c["delta_scar_percent"] for c in cases
             if c["delta_scar_percent"] is not None and not math.isnan(c["delta_scar_percent"])]
    return {"myocardium_dice": _quartiles(myo), "scar_dice": _quartiles(scar),
            "delta_scar_percent": _quartiles(delta),
            "mean_delta_scar_percent": round(float(np.mean(delta)), 2) if delta else None}


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--segmenter", default="two-stage", choices=("two-stage", "one-stage"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    result = measure(args.data, args.segmenter)
    text = json.dumps(result["summary"], indent=2)
    logger.info("summary %s", text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
