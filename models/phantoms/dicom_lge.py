"""Synthetic late gadolinium enhancement series: LGE, matched cine and TI scout.

:func:`lge_series_datasets` writes a PSIR or magnitude LGE stack (from
:mod:`models.phantoms.lge`), :func:`cine_series_datasets` the matched bSSFP cine (from
:mod:`models.phantoms.cine`) at the same slice locations, and
:func:`ti_scout_series_datasets` a TI scout; :func:`write_lge_study_series` writes all four
into a study.  PSIR pixels keep the vendors' conventions: Siemens adds 4096 to the signed
value (no rescale), Philips stores unsigned values with a negative RescaleIntercept, GE
stores signed 16-bit integers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage

from models.phantoms.cine import CineSlice, matched_cine_stack
from models.phantoms.dicom_build import (
    _base_dataset,
    _file_meta,
    _SeriesSpec,
    _set_geometry,
    _spec,
    write_series,
)
from models.phantoms.dicom_study import (
    VENDOR_PROFILES,
    SeriesKind,
    StudyInfo,
    Vendor,
    _ds,
    _resolve_vendor,
    _study,
    _uid,
)
from models.phantoms.heart_sampling import make_heart_case
from models.phantoms.lge import LgeSlice, lge_case_truth, make_lge_stack, make_ti_scout
from models.phantoms.lge_acquisition import Contrast
from models.phantoms.lge_scar import draw_scar_pattern

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LgeNaming:
    """Series naming and sequence facts of a vendor's LGE, cine and TI-scout protocols."""

    lge_protocol: str
    psir_description: str
    magnitude_description: str
    psir_image_type: tuple[str, ...]
    magnitude_image_type: tuple[str, ...]
    lge_sequence_name: str
    lge_sequence_variant: tuple[str, ...]
    cine_description: str
    cine_image_type: tuple[str, ...]
    cine_sequence_name: str
    ti_scout_description: str
    ti_scout_image_type: tuple[str, ...]
    ti_scout_sequence_name: str


LGE_NAMING: dict[Vendor, LgeNaming] = {
    Vendor.SIEMENS: LgeNaming(
        lge_protocol="de_TFL_PSIR_SAX",
        psir_description="de_TFL_PSIR_SAX_PSIR",
        magnitude_description="de_TFL_PSIR_SAX_MAG",
        psir_image_type=("DERIVED", "PRIMARY", "PSIR", "R", "NORM", "DIS2D"),
        magnitude_image_type=("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"),
        lge_sequence_name="*tfl2d1_16",
        lge_sequence_variant=("SP", "MP", "OSP"),
        cine_description="cine_tf2d13_retro_iPAT_SAX",
        cine_image_type=("ORIGINAL", "PRIMARY", "M", "RETRO", "DIS2D"),
        cine_sequence_name="*tfi2d1_13",
        ti_scout_description="TI_Scout_SAX",
        ti_scout_image_type=("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"),
        ti_scout_sequence_name="*tfi2d1_27",
    ),
    Vendor.PHILIPS: LgeNaming(
        lge_protocol="LGE_PSIR SA",
        psir_description="LGE_PSIR SA",
        magnitude_description="LGE_PSIR SA",
        psir_image_type=("DERIVED", "PRIMARY", "R_IR", "R", "IR"),
        magnitude_image_type=("ORIGINAL", "PRIMARY", "M_IR", "M", "IR"),
        lge_sequence_name="",
        lge_sequence_variant=("SK", "MP", "SP"),
        cine_description="sBTFE_BH SA",
        cine_image_type=("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"),
        cine_sequence_name="",
        ti_scout_description="Look-Locker SA",
        ti_scout_image_type=("ORIGINAL", "PRIMARY", "M_IR", "M", "IR"),
        ti_scout_sequence_name="",
    ),
    Vendor.GE: LgeNaming(
        lge_protocol="MDE SAX",
        psir_description="PSMDE SAX",
        magnitude_description="MDE SAX",
        psir_image_type=("DERIVED", "PRIMARY", "PSIR"),
        magnitude_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        lge_sequence_name="fgre_mde",
        lge_sequence_variant=("SK", "SP", "MP"),
        cine_description="FIESTA CINE SAX",
        cine_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        cine_sequence_name="fiesta_cine",
        ti_scout_description="Cine IR SAX",
        ti_scout_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        ti_scout_sequence_name="fiesta_cineir",
    ),
}
"""LGE, cine and TI-scout naming per vendor."""

LGE_SLICE_GAP_MM = 10.0
"""SpacingBetweenSlices of the LGE and cine stacks (8 mm slices, 2 mm gap)."""
SIEMENS_PSIR_OFFSET = 4096
"""Stored value of zero signal in Siemens PSIR images."""
PHILIPS_PSIR_OFFSET = 2048
"""Stored value of zero signal in Philips PSIR images (removed by the rescale intercept)."""
PHILIPS_PSIR_RESCALE_SLOPE = 1.2
"""Rescale slope of Philips PSIR images."""


@dataclass(frozen=True)
class SignalEncoding:
    """How a signal image (magnitude or PSIR) is stored.

    Attributes
    ----------
    stored
        Stored pixel values (uint16, or int16 for signed).
    bits_stored
        BitsStored.
    signed
        PixelRepresentation 1 (two's complement).
    rescale
        (slope, intercept) or ``None`` when no Modality LUT is written.
    zero_stored
        Stored value that means zero signal (the PSIR null); 0 for magnitude.
    """

    stored: npt.NDArray[np.uint16] | npt.NDArray[np.int16]
    bits_stored: int
    signed: bool
    rescale: tuple[float, float] | None
    zero_stored: float

    def to_value(self, window: tuple[float, float]) -> tuple[float, float]:
        """A (centre, width) window given in signal units, in Modality-LUT output units."""
        centre, width = window
        if self.rescale is None:
            return (centre + self.zero_stored, width)
        return (centre, width)


def encode_signal(values: npt.NDArray[np.float32], vendor: str | Vendor,
                  psir: bool) -> SignalEncoding:
    """Encode a magnitude or PSIR image the way a vendor stores it.

    Magnitude: unsigned 12-bit for all vendors.  PSIR: Siemens ``stored = value + 4096``
    (13 bits, no rescale), Philips ``stored = value / 1.2 + 2048`` with RescaleSlope 1.2
    and RescaleIntercept -2457.6, GE signed 16-bit integers.
    """
    v = _resolve_vendor(vendor)
    if not psir:
        stored = np.clip(np.rint(values), 0, 4095).astype(np.uint16)
        return SignalEncoding(stored, 12, False, None, 0.0)
    if v is Vendor.SIEMENS:
        stored = np.clip(np.rint(values + SIEMENS_PSIR_OFFSET), 0, 8191).astype(np.uint16)
        return SignalEncoding(stored, 13, False, None, float(SIEMENS_PSIR_OFFSET))
    if v is Vendor.PHILIPS:
        slope = PHILIPS_PSIR_RESCALE_SLOPE
        stored = np.clip(np.rint(values / slope + PHILIPS_PSIR_OFFSET), 0, 4095).astype(
            np.uint16)
        return SignalEncoding(stored, 12, False, (slope, -PHILIPS_PSIR_OFFSET * slope),
                              float(PHILIPS_PSIR_OFFSET))
    stored_signed = np.clip(np.rint(values), -32768, 32767).astype(np.int16)
    return SignalEncoding(stored_signed, 16, True, None, 0.0)


def _set_signal_pixels(ds: Dataset, enc: SignalEncoding, window: tuple[float, float]) -> None:
    rows, cols = enc.stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = enc.bits_stored
    ds.HighBit = enc.bits_stored - 1
    ds.PixelRepresentation = 1 if enc.signed else 0
    if not enc.signed:
        ds.SmallestImagePixelValue = int(enc.stored.min())
        ds.LargestImagePixelValue = int(enc.stored.max())
    if enc.rescale is not None:
        ds.RescaleIntercept = _ds(enc.rescale[1], 6)
        ds.RescaleSlope = _ds(enc.rescale[0], 6)
        ds.RescaleType = "US"
    centre, width = enc.to_value(window)
    ds.WindowCenter = _ds(centre, 2)
    ds.WindowWidth = _ds(max(width, 1.0), 2)
    dtype = "<i2" if enc.signed else "<u2"
    ds.PixelData = enc.stored.astype(dtype).tobytes()


def _signal_instance(
    study: StudyInfo, vendor: Vendor, spec: _SeriesSpec, field_strength_t: float,
    series_uid: str, number: int, image: npt.NDArray[np.float32],
    pixel_spacing: tuple[float, float], slice_index: int, psir: bool,
    window: tuple[float, float], n_images: int,
) -> Dataset:
    profile = VENDOR_PROFILES[vendor]
    sop_uid = _uid(study.seed, "instance", spec.kind, spec.series_number, number)
    ds = _base_dataset(study, profile, spec, field_strength_t, series_uid, sop_uid,
                       MRImageStorage, number)
    geometry = study.geometry
    orientation = (*geometry.row_cosines, *geometry.column_cosines)
    shape = (int(image.shape[0]), int(image.shape[1]))
    position = geometry.image_position(slice_index, LGE_SLICE_GAP_MM, shape, pixel_spacing)
    _set_geometry(ds, orientation, position, pixel_spacing, LGE_SLICE_GAP_MM)
    ds.ImagesInAcquisition = str(n_images)
    ds.AcquisitionMatrix = [0, shape[1] // 2, shape[0] // 2, 0]
    ds.NominalInterval = str(round(60000.0 / study.heart_rate_bpm))
    _set_signal_pixels(ds, encode_signal(image, vendor, psir), window)
    return ds


def _check_lge_slices(slices: Sequence[LgeSlice] | Sequence[CineSlice]) -> None:
    if not slices:
        raise ValueError("At least one slice is needed to write a series")
    first = slices[0]
    for other in slices[1:]:
        if other.shape != first.shape or other.pixel_spacing != first.pixel_spacing:
            raise ValueError(
                "All slices of a series must share matrix and pixel spacing; got "
                f"{first.shape}/{first.pixel_spacing} and {other.shape}/{other.pixel_spacing}"
            )


def lge_series_datasets(
    slices: Sequence[LgeSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    contrast: Contrast | str = Contrast.PSIR,
    series_number: int | None = None,
    field_strength_t: float | None = None,
    description: str | None = None,
) -> list[Dataset]:
    """LGE series (PSIR or magnitude): one MR Image instance per slice, base to apex.

    Parameters
    ----------
    slices
        LGE slices of one stack (same matrix and spacing), base to apex.
    vendor
        ``"siemens"``, ``"philips"`` or ``"ge"``: naming, ImageType and PSIR encoding
        (see :func:`encode_signal`).
    study
        Patient/study facts; ``StudyInfo.synthetic(0)`` if ``None``.
    contrast
        ``"psir"`` or ``"magnitude"``: which reconstruction of the slices to write.
    series_number
        SeriesNumber; 41 for PSIR and 40 for magnitude if ``None``.
    field_strength_t
        MagneticFieldStrength; the slices' if ``None``.
    description
        Overrides the vendor's SeriesDescription.

    Returns
    -------
    list of pydicom.Dataset
        Instances at 10 mm spacing with InversionTime, TriggerTime and ContrastBolusAgent.
    """
    _check_lge_slices(slices)
    v = _resolve_vendor(vendor)
    st = _study(study)
    psir = Contrast(str(contrast).lower()) is Contrast.PSIR
    naming = LGE_NAMING[v]
    number = series_number if series_number is not None else (41 if psir else 40)
    acq = slices[0].acquisition
    field = float(field_strength_t if field_strength_t is not None
                  else slices[0].field_strength_t)
    spec = _spec(
        SeriesKind.LGE_PSIR if psir else SeriesKind.LGE_MAGNITUDE, v, number, description,
        description=naming.psir_description if psir else naming.magnitude_description,
        protocol=naming.lge_protocol,
        image_type=naming.psir_image_type if psir else naming.magnitude_image_type,
        sequence_name=naming.lge_sequence_name,
        scanning_sequence=("GR", "IR"),
        sequence_variant=naming.lge_sequence_variant,
        scan_options=("CG", "PFP"),
        contrast_agent=acq.contrast.agent,
        seconds_after_start=2600.0,
        repetition_time_ms=acq.recovery_ms,
        echo_time_ms=3.3,
        flip_angle_deg=25.0,
        slice_thickness_mm=8.0,
    )
    key = "psir_blood_mean" if psir else "magnitude_blood_mean"
    blood = float(np.mean([s.truth[key] for s in slices])) or 100.0
    window = (0.7 * blood, 2.2 * blood) if psir else (0.9 * blood, 2.0 * blood)
    series_uid = _uid(st.seed, "series", spec.kind, number)
    out = []
    for index, lge in enumerate(slices):
        ds = _signal_instance(st, v, spec, field, series_uid, index + 1,
                              lge.psir if psir else lge.magnitude, lge.pixel_spacing, index,
                              psir, window, len(slices))
        ds.InversionTime = _ds(acq.inversion_time_ms, 2)
        ds.TriggerTime = _ds(acq.trigger_time_ms, 2)
        ds.CardiacNumberOfImages = "1"
        _file_meta(ds)
        out.append(ds)
    return out


def cine_series_datasets(
    cines: Sequence[Sequence[CineSlice]],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 20,
    field_strength_t: float | None = None,
) -> list[Dataset]:
    """Short-axis bSSFP cine series: per slice location, one instance per phase.

    Parameters
    ----------
    cines
        Per slice (base to apex, same positions as the LGE stack), the
        :class:`~models.phantoms.cine.CineSlice` objects of its phases, e.g. from
        :func:`~models.phantoms.cine.matched_cine_stack`.
    vendor, study, series_number, field_strength_t
        As for :func:`lge_series_datasets`.

    Returns
    -------
    list of pydicom.Dataset
        Instances ordered by slice then phase, with TriggerTime and CardiacNumberOfImages;
        slice ``k`` lies at the position of LGE slice ``k``.
    """
    flat = [c for per_slice in cines for c in per_slice]
    _check_lge_slices(flat)
    v = _resolve_vendor(vendor)
    st = _study(study)
    naming = LGE_NAMING[v]
    first = flat[0]
    field = float(field_strength_t if field_strength_t is not None
                  else first.field_strength_t)
    acq = first.acquisition
    n_phases = len(cines[0])
    spec = _spec(
        SeriesKind.CINE, v, series_number, None,
        description=naming.cine_description, protocol=naming.cine_description,
        image_type=naming.cine_image_type, sequence_name=naming.cine_sequence_name,
        scanning_sequence=("GR",), sequence_variant=("SK", "SS"), scan_options=("CG",),
        seconds_after_start=1200.0, repetition_time_ms=acq.repetition_time_ms,
        echo_time_ms=acq.repetition_time_ms / 2.0, flip_angle_deg=acq.flip_angle_deg,
        slice_thickness_mm=8.0,
    )
    blood = float(np.mean([c.truth["blood_mean"] for c in flat])) or 100.0
    series_uid = _uid(st.seed, "series", spec.kind, series_number)
    out = []
    number = 0
    for index, per_slice in enumerate(cines):
        for cine in per_slice:
            number += 1
            ds = _signal_instance(st, v, spec, field, series_uid, number,
                                  cine.image, cine.pixel_spacing, index, False,
                                  (0.6 * blood, 1.4 * blood), len(flat))
            ds.TriggerTime = _ds(cine.trigger_time_ms, 2)
            ds.CardiacNumberOfImages = str(n_phases)
            _file_meta(ds)
            out.append(ds)
    return out


def ti_scout_series_datasets(
    lge_slice: LgeSlice,
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 38,
    slice_index: int = 5,
    rng: np.random.Generator | None = None,
    inversion_times_ms: Sequence[float] | None = None,
) -> list[Dataset]:
    """TI-scout (Look-Locker) series of one slice: one instance per inversion time.

    The images come from :func:`~models.phantoms.lge.make_ti_scout`; all instances share
    the slice position (``slice_index`` of the LGE stack geometry).
    """
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    images, tis = make_ti_scout(generator, lge_slice, inversion_times_ms)
    naming = LGE_NAMING[v]
    acq = lge_slice.acquisition
    spec = _spec(
        SeriesKind.TI_SCOUT, v, series_number, None,
        description=naming.ti_scout_description, protocol=naming.ti_scout_description,
        image_type=naming.ti_scout_image_type, sequence_name=naming.ti_scout_sequence_name,
        scanning_sequence=("GR", "IR"), sequence_variant=("SK", "SS", "MP"),
        scan_options=("CG",), contrast_agent=acq.contrast.agent, seconds_after_start=2500.0,
        repetition_time_ms=3.0, echo_time_ms=1.5, flip_angle_deg=35.0,
        slice_thickness_mm=8.0,
    )
    top = float(np.percentile(images, 99.5)) or 100.0
    series_uid = _uid(st.seed, "series", spec.kind, series_number)
    out = []
    for index, (image, ti) in enumerate(zip(images, tis, strict=True)):
        ds = _signal_instance(st, v, spec, lge_slice.field_strength_t, series_uid, index + 1,
                              image, lge_slice.pixel_spacing, slice_index, False,
                              (0.5 * top, top), len(tis))
        ds.InversionTime = _ds(float(ti), 2)
        ds.TriggerTime = _ds(float(ti), 2)
        _file_meta(ds)
        out.append(ds)
    return out


LGE_EXPECTED_ANALYSIS: dict[SeriesKind, str | None] = {
    SeriesKind.LGE_PSIR: "lge",
    SeriesKind.LGE_MAGNITUDE: "lge",
    SeriesKind.CINE: None,
    SeriesKind.TI_SCOUT: None,
}
"""Which analysis a router should choose for each LGE-related series."""


def write_lge_study_series(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vendor: str | Vendor = Vendor.SIEMENS,
    field_strength_t: float = 1.5,
    scar_pattern: str | None = None,
    n_slices: int = 10,
) -> dict[str, Any]:
    """Write LGE PSIR, LGE magnitude, matched cine and TI-scout series of a study.

    The subject is the one :func:`models.phantoms.study.write_synthetic_study` draws for
    the same seed and field strength (same anatomy as its T1 maps), given a scar.

    Parameters
    ----------
    out_dir
        Study directory; each series goes into a sub-directory named after its kind.
    seed, vendor, field_strength_t
        As for ``write_synthetic_study`` (same seed: same patient, study and subject).
    scar_pattern
        A :class:`~models.phantoms.lge_scar.ScarPattern` value; random if ``None``.
    n_slices
        Slices of the LGE and cine stacks.

    Returns
    -------
    dict
        ``series``: one record per written series (kind, expected analysis, UIDs, files,
        per-instance truth); ``lge``: the case truth of :func:`~models.phantoms.lge.
        lge_case_truth`.
    """
    root = Path(out_dir)
    v = _resolve_vendor(vendor)
    study = StudyInfo.synthetic(seed)
    # Same generator stream as write_synthetic_study: its first draw is the subject.
    heart = make_heart_case(np.random.default_rng([int(seed), 1]),
                            field_strength_t=field_strength_t)
    rng = np.random.default_rng([int(seed), 3])
    pattern = scar_pattern if scar_pattern is not None else draw_scar_pattern(rng)
    case, slices = make_lge_stack(rng, n_slices=n_slices, heart=heart, scar_pattern=pattern)
    cines = matched_cine_stack(rng, slices)
    mid = len(slices) // 2
    records: list[dict[str, object]] = []

    def emit(kind: SeriesKind, datasets: list[Dataset], truths: list[dict[str, object]]
             ) -> None:
        paths = write_series(datasets, root / kind.value)
        instances = []
        for ds, path, truth in zip(datasets, paths, truths, strict=True):
            record: dict[str, object] = {
                "sop_instance_uid": str(ds.SOPInstanceUID),
                "instance_number": int(ds.InstanceNumber),
                "file": str(path.relative_to(root)),
                **truth,
            }
            if "InversionTime" in ds and ds.InversionTime not in (None, ""):
                record["inversion_time_ms"] = float(ds.InversionTime)
            instances.append(record)
        records.append({
            "kind": kind.value,
            "expected_analysis": LGE_EXPECTED_ANALYSIS[kind],
            "series_number": int(datasets[0].SeriesNumber),
            "series_instance_uid": str(datasets[0].SeriesInstanceUID),
            "series_description": str(datasets[0].SeriesDescription),
            "sop_class_uid": str(datasets[0].SOPClassUID),
            "directory": str(paths[0].parent.relative_to(root)),
            "instances": instances,
        })

    def lge_truth(s: LgeSlice, encoding: SignalEncoding) -> dict[str, object]:
        # Zero signal as stored, and after the Modality LUT (what a loader sees).
        return {"level": s.level, "truth": s.truth,
                "signal_zero_stored": encoding.zero_stored,
                "signal_zero_value": encoding.to_value((0.0, 1.0))[0]}

    for contrast in (Contrast.PSIR, Contrast.MAGNITUDE):
        datasets = lge_series_datasets(slices, vendor=v, study=study, contrast=contrast,
                                       field_strength_t=case.field_strength_t)
        psir = contrast is Contrast.PSIR
        kind = SeriesKind.LGE_PSIR if psir else SeriesKind.LGE_MAGNITUDE
        emit(kind, datasets, [lge_truth(s, encode_signal(s.image[:1, :1], v, psir))
                              for s in slices])
    emit(SeriesKind.CINE, cine_series_datasets(cines, vendor=v, study=study),
         [{"level": c.level, "phase": c.phase, "truth": c.truth}
          for per_slice in cines for c in per_slice])
    scout = ti_scout_series_datasets(slices[mid], vendor=v, study=study, slice_index=mid,
                                     rng=rng)
    emit(SeriesKind.TI_SCOUT, scout, [{"level": slices[mid].level} for _ in scout])
    case_truth = lge_case_truth(slices)
    case_truth["scar_pattern"] = case.scar.pattern if case.scar is not None else "none"
    logger.info("wrote LGE, cine and TI-scout series (%s, %.1f %% scar) to %s",
                case_truth["scar_pattern"], case_truth["scar_percent"], root)
    return {"series": records, "lge": case_truth}
