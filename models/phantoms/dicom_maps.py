"""Synthetic parametric-map series: T1, long-axis T1, MOLLI source, T2, ECV, post-contrast.

The main product is a MOLLI native T1-map series (:func:`t1map_series_datasets`, MR Image
Storage, one instance per short-axis slice) with vendor-like naming and pixel encoding;
:func:`t1map_long_axis_series_datasets` writes a four-chamber view, and
:func:`t1map_enhanced_dataset` a Legacy Converted Enhanced (multi-frame) form of the T1
map.  Other series of the same study serve routing tests: the MOLLI source images (one
instance per inversion time), a T2 map, a post-contrast T1 map and an ECV map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage
from pydicom.valuerep import DA, TM

from models.phantoms.dicom_build import (
    UNIT_MS,
    UNIT_PERCENT,
    _base_dataset,
    _check_slices,
    _encode,
    _Encoding,
    _field,
    _file_meta,
    _map_series,
    _philips_private,
    _set_geometry,
    _set_pixels,
    _spec,
)
from models.phantoms.dicom_study import (
    VENDOR_PROFILES,
    SaxGeometry,
    SeriesKind,
    StudyInfo,
    Vendor,
    _ds,
    _resolve_vendor,
    _study,
    _uid,
    _unit_tuple,
)
from models.phantoms.long_axis import LongAxisSlice
from models.phantoms.maps import ContrastState, ecv_map, postcontrast_t1_map, t2_map
from models.phantoms.molli_source import make_molli_source
from models.phantoms.t1map import PhantomSlice


def t1map_series_datasets(
    slices: Sequence[PhantomSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 10,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    description: str | None = None,
    slice_gap_mm: float | None = None,
) -> list[Dataset]:
    """Native MOLLI T1-map series: one MR Image instance per slice, basal to apical.

    Parameters
    ----------
    slices
        Phantom slices (same matrix and spacing), in base-to-apex order.
    vendor
        ``"siemens"``, ``"philips"`` or ``"ge"``: naming, ImageType and pixel encoding.
    study
        Patient/study facts; ``StudyInfo.synthetic(0)`` if ``None``.
    series_number
        SeriesNumber (also enters the UIDs).
    field_strength_t
        MagneticFieldStrength; taken from the slices if ``None``.
    rng
        Draws the slice gap (8–10 mm) and trigger time when given; fixed values otherwise.
    description
        Overrides the vendor's SeriesDescription.
    slice_gap_mm
        SpacingBetweenSlices.

    Returns
    -------
    list of pydicom.Dataset
        Instances with file meta, ready for :func:`write_series`.
    """
    _check_slices(slices)
    v = _resolve_vendor(vendor)
    st = _study(study)
    gap = slice_gap_mm if slice_gap_mm is not None else (
        float(round(rng.uniform(8.0, 10.0), 1)) if rng is not None else 8.0)
    trigger = float(round(rng.uniform(350.0, 650.0), 1)) if rng is not None else 480.0
    field = _field(slices, field_strength_t)
    spec = _spec(SeriesKind.T1MAP, v, series_number, description)
    window = (1300.0, 1300.0) if field < 2 else (1500.0, 1500.0)
    return _map_series(
        [s.t1_ms for s in slices], slices, vendor=v, study=st, spec=spec,
        field_strength_t=field, unit=UNIT_MS, quantity="T1", window=window,
        slice_gap_mm=gap, trigger_time_ms=trigger,
    )


def long_axis_name(short_axis_name: str) -> str:
    """A vendor's short-axis series or protocol name turned into its four-chamber name.

    ``"MOLLI_5(3)3_SAX_T1MAP"`` becomes ``"MOLLI_5(3)3_4CH_T1MAP"``, ``"T1map_MOLLI SAX"``
    ``"T1map_MOLLI 4CH"``; a name without ``SAX`` gets `` 4CH`` appended.
    """
    if "SAX" in short_axis_name:
        return short_axis_name.replace("SAX", "4CH")
    return f"{short_axis_name} 4CH"


def four_chamber_orientation(
    geometry: SaxGeometry, rotation_rad: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(row cosines, column cosines) of the four-chamber plane of a short-axis geometry.

    The image's right is the heart's lateral direction (the heart-local angle 0 of the
    anatomy, ``rotation_rad`` from the short-axis image's right); the image's down runs from
    the apex to the base along the LV long axis.
    """
    right_sax = np.asarray(geometry.row_cosines, dtype=np.float64)
    down_sax = np.asarray(geometry.column_cosines, dtype=np.float64)
    lateral = math.cos(rotation_rad) * right_sax + math.sin(rotation_rad) * down_sax
    lateral /= np.linalg.norm(lateral)
    down = -np.asarray(geometry.apex_direction, dtype=np.float64)
    down = down - np.dot(down, lateral) * lateral
    down /= np.linalg.norm(down)
    return lateral, down


def t1map_long_axis_series_datasets(
    view: LongAxisSlice,
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 12,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    description: str | None = None,
) -> list[Dataset]:
    """Native MOLLI T1-map series of one four-chamber long-axis view.

    The plane contains the LV long axis of the study's short-axis geometry
    (:attr:`StudyInfo.geometry`), so it is perpendicular to the short-axis slices written
    for the same study, and passes through the LV centre; SeriesDescription and
    ProtocolName are the vendor's T1-map names with ``4CH`` for ``SAX`` (as scanners name
    long-axis MOLLI maps, e.g. ``MOLLI_5(3)3_4CH_T1MAP``); ImageType is the vendor's T1-map
    ImageType.

    Parameters
    ----------
    view
        The four-chamber phantom (:func:`models.phantoms.long_axis.make_t1map_long_axis`).
    vendor, study, series_number, field_strength_t, description
        As for :func:`t1map_series_datasets`.
    rng
        Draws the trigger time when given; fixed otherwise.

    Returns
    -------
    list of pydicom.Dataset
        One MR Image instance with file meta, ready for :func:`write_series`.
    """
    v = _resolve_vendor(vendor)
    st = _study(study)
    profile = VENDOR_PROFILES[v]
    field = float(field_strength_t if field_strength_t is not None else view.field_strength_t)
    trigger = float(round(rng.uniform(350.0, 650.0), 1)) if rng is not None else 480.0
    spec = _spec(SeriesKind.T1MAP, v, series_number, description,
                 description=long_axis_name(profile.t1map_description),
                 protocol=long_axis_name(profile.t1map_protocol))
    geometry = st.geometry
    right, down = four_chamber_orientation(geometry, view.heart.rotation_rad)
    # The LV mid-cavity: the short-axis stack's basal centre moved along the long axis by
    # half the LV length beyond the basal level and to the LV centre of that level.
    case = view.heart
    length = float(view.truth["lv_length_mm"])
    basal = case.position("basal")
    cx, cy = case.lv_centre(0.5)
    mid = (np.asarray(geometry.base_centre_mm)
           + (0.5 - basal) * length * np.asarray(geometry.apex_direction)
           + cx * np.asarray(geometry.row_cosines) + cy * np.asarray(geometry.column_cosines))
    r0, c0 = view.rendered.rendered.lv_centre_px
    dy, dx = view.pixel_spacing
    first = mid - c0 * dx * right - r0 * dy * down
    series_uid = _uid(st.seed, "series", spec.kind, spec.series_number)
    sop_uid = _uid(st.seed, "instance", spec.kind, spec.series_number, 1)
    ds = _base_dataset(st, profile, spec, field, series_uid, sop_uid, MRImageStorage, 1)
    _set_geometry(ds, (*_unit_tuple(right), *_unit_tuple(down)),
                  (float(first[0]), float(first[1]), float(first[2])), view.pixel_spacing, None)
    ds.TriggerTime = _ds(trigger, 2)
    if "IR" in spec.scanning_sequence:
        ds.InversionTime = None  # Type 2C: present, empty for a fitted map
    ds.ImagesInAcquisition = "1"
    ds.AcquisitionMatrix = [0, view.shape[1] // 2, view.shape[0] // 2, 0]
    enc = _encode(view.t1_ms, v, UNIT_MS, "T1")
    _set_pixels(ds, enc, (1300.0, 1300.0) if field < 2 else (1500.0, 1500.0))
    if v is Vendor.PHILIPS:
        _philips_private(ds, enc)
    _file_meta(ds)
    return [ds]


def molli_source_series_datasets(
    phantom: PhantomSlice,
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 9,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    scheme: str = "5(3)3",
    slice_index: int = 1,
    slice_gap_mm: float = 8.0,
) -> list[Dataset]:
    """MOLLI inversion-recovery source images of one slice: one instance per TI.

    The images come from :func:`~models.phantoms.molli_source.make_molli_source`; InversionTime
    and TriggerTime are set per instance, ordered by acquisition.  ``slice_index`` places
    the slice in the short-axis stack geometry (1 = mid of basal/mid/apical).
    """
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    images, tis = make_molli_source(generator, phantom, scheme,
                                    heart_rate_bpm=st.heart_rate_bpm)
    field = _field([phantom], field_strength_t)
    profile = VENDOR_PROFILES[v]
    spec = _spec(
        SeriesKind.MOLLI_SOURCE, v, series_number, None,
        description=profile.molli_source_description.replace("5(3)3", scheme),
        image_type=profile.molli_source_image_type,
        protocol=profile.t1map_protocol,
        seconds_after_start=590.0,
    )
    series_uid = _uid(st.seed, "series", spec.kind, series_number)
    orientation = (*st.geometry.row_cosines, *st.geometry.column_cosines)
    position = st.geometry.image_position(slice_index, slice_gap_mm, phantom.shape,
                                          phantom.pixel_spacing)
    scale = 4095.0 / max(float(images.max()), 1.0)
    out = []
    for index, (image, ti) in enumerate(zip(images, tis, strict=True)):
        number = index + 1
        sop_uid = _uid(st.seed, "instance", spec.kind, series_number, number)
        ds = _base_dataset(st, profile, spec, field, series_uid, sop_uid, MRImageStorage,
                           number)
        _set_geometry(ds, orientation, position, phantom.pixel_spacing, None)
        ds.InversionTime = _ds(float(ti), 2)
        ds.TriggerTime = _ds(float(ti), 2)
        ds.ImagesInAcquisition = str(len(tis))
        stored = np.clip(np.rint(image * scale), 0, 4095).astype(np.uint16)
        enc = _Encoding(stored, 12, None, None, None, None, ("1", "no units"), "signal")
        _set_pixels(ds, enc, (float(np.percentile(stored, 99)) / 2.0,
                              float(np.percentile(stored, 99))))
        _file_meta(ds)
        out.append(ds)
    return out


def t2map_series_datasets(
    slices: Sequence[PhantomSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 12,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    slice_gap_mm: float = 8.0,
) -> list[Dataset]:
    """T2-map series of the same slices (T2-prepared bSSFP; not a T1 map)."""
    _check_slices(slices)
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    maps = [t2_map(generator, s) for s in slices]
    profile = VENDOR_PROFILES[v]
    spec = _spec(
        SeriesKind.T2MAP, v, series_number, None,
        description=profile.t2map_description, protocol=profile.t2map_description,
        image_type=profile.t2map_image_type, sequence_name=profile.t2_sequence_name,
        scanning_sequence=("GR",), sequence_variant=("SK", "SP"), scan_options=("CG",),
        seconds_after_start=900.0, flip_angle_deg=70.0,
    )
    return _map_series(
        maps, slices, vendor=v, study=st, spec=spec, field_strength_t=_field(slices,
                                                                             field_strength_t),
        unit=UNIT_MS, quantity="T2", window=(60.0, 120.0), slice_gap_mm=slice_gap_mm,
        trigger_time_ms=480.0,
    )


def _contrast_maps(
    slices: Sequence[PhantomSlice],
    make_map: Callable[..., tuple[npt.NDArray[np.float32], Any]],
    vendor: str | Vendor,
    study: StudyInfo | None,
    series_number: int,
    rng: np.random.Generator | None,
    contrast: ContrastState | None,
) -> tuple[Vendor, StudyInfo, ContrastState, list[npt.NDArray[np.float32]]]:
    """Vendor, study, contrast state and one map per slice for a post-contrast series."""
    _check_slices(slices)
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    state = contrast or ContrastState.sample(generator)
    return v, st, state, [make_map(generator, s, state)[0] for s in slices]


def postcontrast_t1map_series_datasets(
    slices: Sequence[PhantomSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 30,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    contrast: ContrastState | None = None,
    slice_gap_mm: float = 8.0,
) -> list[Dataset]:
    """Post-contrast MOLLI T1-map series (ContrastBolusAgent set, "POST" in the name)."""
    v, st, state, maps = _contrast_maps(
        slices, postcontrast_t1_map, vendor, study, series_number, rng, contrast
    )
    profile = VENDOR_PROFILES[v]
    spec = _spec(
        SeriesKind.T1MAP_POST, v, series_number, None,
        description=profile.post_description, protocol=profile.t1map_protocol + "_POST",
        contrast_agent=state.agent, seconds_after_start=2400.0,
    )
    return _map_series(
        maps, slices, vendor=v, study=st, spec=spec,
        field_strength_t=_field(slices, field_strength_t), unit=UNIT_MS, quantity="T1",
        window=(500.0, 800.0), slice_gap_mm=slice_gap_mm, trigger_time_ms=480.0,
    )


def ecv_map_series_datasets(
    slices: Sequence[PhantomSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 31,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    contrast: ContrastState | None = None,
    slice_gap_mm: float = 8.0,
) -> list[Dataset]:
    """ECV-map series (percent), derived from pre- and post-contrast maps."""
    v, st, state, maps = _contrast_maps(
        slices, ecv_map, vendor, study, series_number, rng, contrast
    )
    profile = VENDOR_PROFILES[v]
    spec = _spec(
        SeriesKind.ECV, v, series_number, None,
        description=profile.ecv_description, protocol=profile.ecv_description,
        image_type=profile.ecv_image_type, contrast_agent=state.agent,
        seconds_after_start=2450.0,
    )
    return _map_series(
        maps, slices, vendor=v, study=st, spec=spec,
        field_strength_t=_field(slices, field_strength_t), unit=UNIT_PERCENT, quantity="ECV",
        window=(40.0, 80.0), slice_gap_mm=slice_gap_mm, trigger_time_ms=480.0,
    )


def t1map_enhanced_dataset(
    datasets: Sequence[Dataset],
    *,
    study: StudyInfo | None = None,
    series_number: int = 11,
) -> Dataset:
    """The T1-map series as one multi-frame Legacy Converted Enhanced MR Image instance.

    Parameters
    ----------
    datasets
        Single-frame instances from :func:`t1map_series_datasets`.
    study
        The study of those instances (for UIDs).
    series_number
        SeriesNumber of the new multi-frame series.
    """
    import highdicom as hd

    if not datasets:
        raise ValueError("No single-frame instances to convert")
    st = _study(study)
    legacy = []
    for ds in datasets:
        copy = Dataset()
        copy.update(ds)
        copy.file_meta = ds.file_meta
        # highdicom copies private tags; drop them, and RWV mapping goes per frame.
        copy.remove_private_tags()
        legacy.append(copy)
    try:
        enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
            legacy_datasets=legacy,
            series_instance_uid=_uid(st.seed, "series", SeriesKind.T1MAP_ENHANCED,
                                     series_number),
            series_number=series_number,
            sop_instance_uid=_uid(st.seed, "instance", SeriesKind.T1MAP_ENHANCED,
                                  series_number, 1),
            instance_number=1,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"Cannot convert the T1-map series to multi-frame: {exc}") from exc
    enhanced.SeriesDescription = str(datasets[0].SeriesDescription) + " MF"
    # The converted instance references its sources only through the Conversion Source
    # Attributes; a Referenced Series Sequence without referenced instances is invalid.
    if "ReferencedSeriesSequence" in enhanced:
        del enhanced.ReferencedSeriesSequence
    # Replace creation times and generated UIDs so that the same seed gives the same file.
    created_date, created_time = st.time_after(700.0)
    enhanced.InstanceCreationDate = DA(created_date)
    enhanced.InstanceCreationTime = TM(created_time)
    for item in enhanced.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = created_date + created_time
    organization = _uid(st.seed, "dimension-organization", series_number)
    for name in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in enhanced.get(name, []):
            item.DimensionOrganizationUID = organization
    _file_meta(enhanced)
    return enhanced
