"""Identity of the synthetic DICOM studies: vendors, series kinds, vendor profiles, study facts.

:class:`Vendor` and :class:`SeriesKind` name what is imitated and written;
:data:`VENDOR_PROFILES` holds each vendor's naming, ImageType and sequence facts of the
mapping series; :class:`StudyInfo` (with its short-axis :class:`SaxGeometry`) the patient,
study and geometry facts drawn from a seed.  UIDs (:func:`_uid`) are derived from the seed,
so the same seed gives byte-identical files; every instance is marked as synthetic
(:data:`SYNTHETIC_MARK`).
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.uid import (
    UID,
    generate_uid,
)

SYNTHETIC_MARK = "SYNTHETIC PHANTOM - NOT A PATIENT - NOT FOR DIAGNOSTIC USE"
LEGACY_ENHANCED_MR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.4")
IMPLEMENTATION_VERSION = "CMRNODE_PHANTOM"


class Vendor(enum.StrEnum):
    """Scanner manufacturers imitated."""

    SIEMENS = "siemens"
    PHILIPS = "philips"
    GE = "ge"


class SeriesKind(enum.StrEnum):
    """Kinds of series the generator writes."""

    T1MAP = "t1map"
    T1MAP_ENHANCED = "t1map_enhanced"
    MOLLI_SOURCE = "molli_source"
    T2MAP = "t2map"
    T1MAP_POST = "t1map_post"
    ECV = "ecv"
    BRAIN_T2 = "brain_t2"
    LGE_PSIR = "lge_psir"
    LGE_MAGNITUDE = "lge_magnitude"
    CINE = "cine"
    TI_SCOUT = "ti_scout"


@dataclass(frozen=True)
class VendorProfile:
    """Header facts that differ per manufacturer."""

    manufacturer: str
    model_1p5t: str
    model_3t: str
    software_versions: str
    station_name: str
    receive_coil: str
    t1map_description: str
    t1map_protocol: str
    t1map_image_type: tuple[str, ...]
    molli_source_description: str
    molli_source_image_type: tuple[str, ...]
    t2map_description: str
    t2map_image_type: tuple[str, ...]
    post_description: str
    ecv_description: str
    ecv_image_type: tuple[str, ...]
    sequence_name: str
    t2_sequence_name: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]


VENDOR_PROFILES: dict[Vendor, VendorProfile] = {
    Vendor.SIEMENS: VendorProfile(
        manufacturer="SIEMENS",
        model_1p5t="MAGNETOM Aera",
        model_3t="MAGNETOM Vida",
        software_versions="syngo MR XA20",
        station_name="AWP66031",
        receive_coil="Body_18",
        t1map_description="MOLLI_5(3)3_SAX_T1MAP",
        t1map_protocol="t1map_long_T1_SAX",
        t1map_image_type=("DERIVED", "PRIMARY", "T1 MAP", "MOCO"),
        molli_source_description="MOLLI_5(3)3_SAX",
        molli_source_image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
        t2map_description="T2map_flash_SAX_T2MAP",
        t2map_image_type=("DERIVED", "PRIMARY", "T2 MAP", "MOCO"),
        post_description="MOLLI_4(1)3(1)2_SAX_POST_T1MAP",
        ecv_description="MOLLI_SAX_ECV_MAP",
        ecv_image_type=("DERIVED", "SECONDARY", "ECV MAP", "MOCO"),
        sequence_name="*tfi2d1_191",
        t2_sequence_name="*tfl2d1_81",
        scanning_sequence=("GR", "IR"),
        sequence_variant=("SK", "SP", "MP"),
        scan_options=("CG",),
    ),
    Vendor.PHILIPS: VendorProfile(
        manufacturer="Philips Healthcare",
        model_1p5t="Ingenia",
        model_3t="Ingenia Elition X",
        software_versions="5.7.1\\5.7.1.2",
        station_name="PHILIPS-MR1",
        receive_coil="MULTI COIL",
        t1map_description="T1map_MOLLI SAX",
        t1map_protocol="WIP T1map_MOLLI SAX",
        t1map_image_type=("DERIVED", "PRIMARY", "T1", "T1"),
        molli_source_description="MOLLI SAX",
        molli_source_image_type=("ORIGINAL", "PRIMARY", "M_IR", "M", "IR"),
        t2map_description="T2map_GraSE SAX",
        t2map_image_type=("DERIVED", "PRIMARY", "T2", "T2"),
        post_description="T1map_MOLLI POST SAX",
        ecv_description="ECV map SAX",
        ecv_image_type=("DERIVED", "SECONDARY", "ECV", "ECV"),
        sequence_name="",
        t2_sequence_name="",
        scanning_sequence=("GR", "IR"),
        sequence_variant=("SK", "SS"),
        scan_options=("CG",),
    ),
    Vendor.GE: VendorProfile(
        manufacturer="GE MEDICAL SYSTEMS",
        model_1p5t="SIGNA Artist",
        model_3t="SIGNA Premier",
        software_versions="29\\LX\\MR29.1_EA_2113.a",
        station_name="GEMR1",
        receive_coil="32Ch Cardiac",
        t1map_description="MOLLI T1 MAP",
        t1map_protocol="CARDIAC T1 MAPPING",
        t1map_image_type=("DERIVED", "PRIMARY", "T1MAP"),
        molli_source_description="MOLLI SAX",
        molli_source_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        t2map_description="T2 Map SAX",
        t2map_image_type=("DERIVED", "PRIMARY", "T2MAP"),
        post_description="MOLLI T1 MAP POST",
        ecv_description="ECV MAP",
        ecv_image_type=("DERIVED", "SECONDARY", "ECVMAP"),
        sequence_name="fiesta_molli",
        t2_sequence_name="t2prep_fiesta",
        scanning_sequence=("GR", "IR"),
        sequence_variant=("SS", "SK"),
        scan_options=("CG", "FAST_GEMS"),
    ),
}
"""Naming and equipment per vendor."""

LARMOR_MHZ_PER_T = 42.577478


@dataclass(frozen=True)
class SaxGeometry:
    """Orientation and position of a short-axis stack in patient (LPS) coordinates.

    Attributes
    ----------
    row_cosines, column_cosines
        ImageOrientationPatient: direction of increasing column index, then of increasing
        row index.  The image's right is the subject's left-posterior, down is inferior.
    base_centre_mm
        Centre of the field of view of the most basal slice.
    apex_direction
        Unit vector from base to apex along which slices step.
    """

    row_cosines: tuple[float, float, float]
    column_cosines: tuple[float, float, float]
    base_centre_mm: tuple[float, float, float]
    apex_direction: tuple[float, float, float]

    @classmethod
    def sample(cls, rng: np.random.Generator) -> SaxGeometry:
        """A typical double-oblique short-axis orientation with random tilt."""
        # LV long axis (base -> apex) points left, anterior and inferior in LPS.
        axis = np.array([0.62, -0.5, -0.6]) + rng.normal(0.0, 0.08, 3)
        axis /= np.linalg.norm(axis)
        down = np.array([0.0, 0.55, -0.83])  # posterior-inferior (towards the diaphragm)
        down = down - np.dot(down, axis) * axis
        down /= np.linalg.norm(down)
        right = np.cross(down, axis)
        if right[0] < 0:  # image right must point to the subject's left
            right = -right
        # Keep a right-handed row x column = normal; stepping is along ``axis`` regardless.
        centre = np.array([20.0, -30.0, 40.0]) + rng.normal(0.0, 15.0, 3)
        return cls(
            row_cosines=_unit_tuple(right),
            column_cosines=_unit_tuple(down),
            base_centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
            apex_direction=_unit_tuple(axis),
        )

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        """Row cosines x column cosines."""
        return np.cross(np.asarray(self.row_cosines), np.asarray(self.column_cosines))

    def image_position(
        self, index: int, spacing_mm: float, shape: tuple[int, int],
        pixel_spacing: tuple[float, float],
    ) -> tuple[float, float, float]:
        """ImagePositionPatient of slice ``index`` (0 basal) for a matrix and spacing."""
        rows, cols = shape
        centre = np.asarray(self.base_centre_mm) + index * spacing_mm * np.asarray(
            self.apex_direction)
        first = (
            centre
            - (cols / 2.0 - 0.5) * pixel_spacing[1] * np.asarray(self.row_cosines)
            - (rows / 2.0 - 0.5) * pixel_spacing[0] * np.asarray(self.column_cosines)
        )
        return (float(first[0]), float(first[1]), float(first[2]))


def _unit_tuple(v: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    v = v / np.linalg.norm(v)
    return (float(v[0]), float(v[1]), float(v[2]))


@dataclass(frozen=True)
class StudyInfo:
    """Patient and study facts shared by every series of one synthetic study.

    Build it with :meth:`synthetic` so that identifiers derive from a seed.
    """

    seed: int
    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    patient_age: str
    patient_weight_kg: float
    patient_size_m: float
    study_instance_uid: str
    frame_of_reference_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    institution_name: str
    referring_physician_name: str
    geometry: SaxGeometry
    heart_rate_bpm: float

    @classmethod
    def synthetic(cls, seed: int) -> StudyInfo:
        """A synthetic patient and study derived deterministically from ``seed``."""
        rng = np.random.default_rng([int(seed), 0x5717D1])
        sex = "F" if rng.random() < 0.45 else "M"
        age = int(rng.integers(18, 86))
        study_day = datetime.date(2024, 1, 1) + datetime.timedelta(days=int(rng.integers(0,
                                                                                         700)))
        # 29 February has no anniversary in most years: count it from the 28th.
        anniversary = study_day.replace(day=min(study_day.day, 28)) if (
            study_day.month == 2 and study_day.day == 29) else study_day
        birth = anniversary.replace(year=study_day.year - age) - datetime.timedelta(
            days=int(rng.integers(1, 360)))
        seconds = int(rng.integers(7 * 3600, 18 * 3600))
        study_time = f"{seconds // 3600:02d}{(seconds // 60) % 60:02d}{seconds % 60:02d}"
        return cls(
            seed=int(seed),
            patient_name=f"PHANTOM^SYNTHETIC^{seed}",
            patient_id=f"SYN{int(seed):08d}",
            patient_birth_date=birth.strftime("%Y%m%d"),
            patient_sex=sex,
            patient_age=f"{age:03d}Y",
            patient_weight_kg=float(round(rng.uniform(50.0, 110.0), 1)),
            patient_size_m=float(round(rng.uniform(1.55, 1.95), 2)),
            study_instance_uid=_uid(seed, "study"),
            frame_of_reference_uid=_uid(seed, "frame-of-reference"),
            study_date=study_day.strftime("%Y%m%d"),
            study_time=study_time,
            accession_number=f"SYNACC{int(seed) % 10**8:08d}",
            study_id=str(int(seed) % 10**6),
            study_description="CARDIAC^MRI T1 MAPPING (SYNTHETIC)",
            institution_name="Synthetic Phantom Hospital",
            referring_physician_name="REFERRER^SYNTHETIC",
            geometry=SaxGeometry.sample(rng),
            heart_rate_bpm=float(round(rng.uniform(55.0, 85.0), 1)),
        )

    def time_after(self, seconds: float) -> tuple[str, str]:
        """(date, time) ``seconds`` after the study start, as DICOM DA and TM strings."""
        start = datetime.datetime.strptime(self.study_date + self.study_time, "%Y%m%d%H%M%S")
        moment = start + datetime.timedelta(seconds=float(seconds))
        return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S.%f")[:13]


def _uid(seed: int, *parts: object) -> str:
    """Deterministic UID from the seed and a path of names."""
    return str(generate_uid(entropy_srcs=["cmr-node-phantom", str(int(seed)),
                                          *(str(p) for p in parts)]))


def _ds(value: float, decimals: int = 6) -> str:
    """A float formatted as a DICOM DS string of at most 16 characters."""
    text = f"{round(float(value), decimals):.{decimals}f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        text = f"{float(value):.8g}"
    return text


def _resolve_vendor(vendor: str | Vendor) -> Vendor:
    try:
        return Vendor(str(vendor).lower())
    except ValueError as exc:
        raise ValueError(
            f"Unknown vendor {vendor!r}; expected one of {', '.join(v.value for v in Vendor)}"
        ) from exc


def _study(study: StudyInfo | None) -> StudyInfo:
    return study if study is not None else StudyInfo.synthetic(0)
