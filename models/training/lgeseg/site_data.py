"""A site's labelled LGE slices for fine-tuning: PNG, NIfTI, or DICOM SEG with its sources.

Every reader returns :class:`SitePair` rows (one per labelled slice) with the labels in
:class:`plugins.api.Label` values:

- **PNG** (:func:`load_png`): ``IMAGES/x.png`` and ``LABELS/x.png`` of the same name, one
  slice each; the case is the name before ``_slice`` (EMIDEC's export).  No pixel spacing.
- **NIfTI** (:func:`load_nifti`): ``IMAGES/x.nii[.gz]`` and ``LABELS/x.nii[.gz]`` of the same
  name, a 2-D slice or a 3-D short-axis stack each (EMIDEC's own layout: ``Images/`` and
  ``Contours/``); read with SimpleITK (a dependency already), one pair per labelled slice,
  in-plane spacing from the header.
- **DICOM SEG** (:func:`load_dicom_seg`): a folder holding SEG objects and their source
  images.  Each SEG frame is matched to its source instance by the SOP Instance UIDs the
  SEG references (highdicom ``get_pixels_by_source_instance``), segments are mapped to
  labels by their segmented property type (and anatomic region for blood) with the codes of
  :mod:`plugins.lib.codes`, so the node's own SEG, corrected by a reader, can be used as it is.

Label values (PNG, NIfTI) or segments (SEG, by number or by label) of another convention
are mapped with a label map (:func:`parse_label_map`: ``"1=lv,2=myocardium,3=scar"``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from plugins.api import Label
from plugins.lib import codes

logger = logging.getLogger(__name__)

__all__ = [
    "EMIDEC_LABELS",
    "SiteDataError",
    "SitePair",
    "check_pairs",
    "load_dicom_seg",
    "load_nifti",
    "load_png",
    "load_site_data",
    "parse_label_map",
]

EMIDEC_LABELS: Final = {0: int(Label.BACKGROUND), 1: int(Label.LV_BLOOD_POOL),
                        2: int(Label.MYOCARDIUM), 3: int(Label.SCAR), 4: int(Label.MVO)}
"""Site label value -> :class:`plugins.api.Label` (EMIDEC convention: 0 background, 1 LV
cavity, 2 myocardium, 3 infarct, 4 MVO; Lalande et al., Data 2020;5(4):89)."""
LABEL_NAMES: Final = {
    "background": Label.BACKGROUND, "lv": Label.LV_BLOOD_POOL,
    "lv_blood_pool": Label.LV_BLOOD_POOL, "myocardium": Label.MYOCARDIUM,
    "rv": Label.RV_BLOOD_POOL, "rv_blood_pool": Label.RV_BLOOD_POOL, "scar": Label.SCAR,
    "infarct": Label.SCAR, "mvo": Label.MVO,
}
"""Names accepted on the right-hand side of a label map."""
SEG_SOP_CLASS: Final = "1.2.840.10008.5.1.4.1.1.66.4"
"""Segmentation Storage."""
PAINT_ORDER: Final = (Label.LV_BLOOD_POOL, Label.RV_BLOOD_POOL, Label.MYOCARDIUM, Label.SCAR,
                      Label.MVO)
"""SEG segments overlap (the node's myocardium segment includes scar and MVO, its scar
segment MVO): segments are painted in this order, the later winning."""
_CASE = re.compile(r"^(.*?)_slice\d+\.png$")
_NIFTI = re.compile(r"\.nii(\.gz)?$")

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


class SiteDataError(ValueError):
    """The site's labelled data cannot be used; the message says which file and why."""


class SitePair(NamedTuple):
    """One labelled slice."""

    case: str
    """Subject (cross-validation folds never split a case)."""
    name: str
    """File name, with the slice index for stacks, or the source SOP Instance UID."""
    image: F32
    labels: U8
    """:class:`plugins.api.Label` values, same shape as ``image``."""
    spacing_mm: float | None = None
    """Mean in-plane pixel spacing when the format carries it."""


def parse_label_map(text: str) -> dict[str, int]:
    """``"1=lv,2=myocardium,3=scar"`` -> ``{"1": 1, "2": 2, "3": 4}``.

    Keys are label values (PNG, NIfTI) or segment numbers or segment labels (SEG); values
    are names of :data:`LABEL_NAMES` or :class:`plugins.api.Label` numbers.
    """
    mapping: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.rpartition("=")
        if not sep or not key.strip():
            raise SiteDataError(f"label map item {item!r} is not KEY=LABEL")
        value = value.strip().lower()
        if value in LABEL_NAMES:
            mapping[key.strip().lower()] = int(LABEL_NAMES[value])
        elif value.isdigit() and int(value) in {int(v) for v in Label}:
            mapping[key.strip().lower()] = int(value)
        else:
            raise SiteDataError(
                f"label map item {item!r}: {value!r} is none of {', '.join(LABEL_NAMES)}")
    return mapping


def _value_map(label_map: Mapping[str, int] | Mapping[int, int] | None) -> dict[int, int]:
    if label_map is None:
        return dict(EMIDEC_LABELS)
    try:
        return {int(k): int(v) for k, v in label_map.items()}
    except ValueError as exc:
        raise SiteDataError(f"a PNG or NIfTI label map needs integer label values: {exc}") from exc


def _relabel(raw: npt.NDArray[np.generic], values: Mapping[int, int], where: str) -> U8:
    """Site values -> Label values; unmapped values are an error, not silent background."""
    if np.issubdtype(raw.dtype, np.floating):
        rounded = np.rint(raw)
        if not np.array_equal(rounded, raw):
            raise SiteDataError(f"{where}: the mask holds non-integer values")
        raw = rounded
    found = {int(v) for v in np.unique(raw)}
    unknown = sorted(found - set(values))
    if unknown:
        raise SiteDataError(f"{where}: mask values {unknown} are not in the label map "
                            f"{dict(values)} (use --label-map)")
    out = np.zeros(raw.shape, dtype=np.uint8)
    for site, ours in values.items():
        out[raw == site] = ours
    return out


def _shape_check(image: npt.NDArray[np.generic], mask: npt.NDArray[np.generic],
                 where: str) -> None:
    if image.shape != mask.shape:
        raise SiteDataError(f"{where}: image shape {image.shape} and mask shape {mask.shape} "
                            "differ")


def load_png(images: Path, labels: Path,
             label_map: Mapping[str, int] | Mapping[int, int] | None = None) -> list[SitePair]:
    """Every image PNG with a label PNG of the same name (images without one are skipped)."""
    from PIL import Image

    values = _value_map(label_map)
    pairs: list[SitePair] = []
    for path in sorted(images.glob("*.png")):
        label_path = labels / path.name
        if not label_path.exists():
            continue
        image = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        raw = np.asarray(Image.open(label_path))
        if raw.ndim != 2:
            raise SiteDataError(f"{label_path}: a label PNG must be single-channel")
        _shape_check(image, raw, str(label_path))
        match = _CASE.match(path.name)
        pairs.append(SitePair(match.group(1) if match else path.stem, path.name, image,
                              _relabel(raw, values, str(label_path))))
    return pairs


def load_nifti(images: Path, labels: Path,
               label_map: Mapping[str, int] | Mapping[int, int] | None = None) -> list[SitePair]:
    """Every labelled slice of the NIfTI images that have a mask of the same name."""
    import SimpleITK as sitk  # noqa: N813 (the library's documented alias)

    values = _value_map(label_map)
    pairs: list[SitePair] = []
    for path in sorted(p for p in images.iterdir() if _NIFTI.search(p.name)):
        mask_path = labels / path.name
        if not mask_path.exists():
            continue
        try:
            image_itk = sitk.ReadImage(str(path))
            mask_itk = sitk.ReadImage(str(mask_path))
        except RuntimeError as exc:
            raise SiteDataError(f"cannot read {path} or {mask_path}: {exc}") from exc
        image = sitk.GetArrayFromImage(image_itk).astype(np.float32)
        mask = sitk.GetArrayFromImage(mask_itk)
        if image.ndim not in (2, 3) or image_itk.GetNumberOfComponentsPerPixel() != 1:
            raise SiteDataError(f"{path}: expected a 2-D slice or a 3-D stack, got shape "
                                f"{image.shape}")
        _shape_check(image, mask, f"{path.name} / {mask_path}")
        spacing = float(np.mean(image_itk.GetSpacing()[:2]))
        labelled = _relabel(mask, values, str(mask_path))
        case = _NIFTI.sub("", path.name)
        stack = zip(image, labelled, strict=True) if image.ndim == 3 else [(image, labelled)]
        for index, (slice_image, slice_labels) in enumerate(stack):
            if slice_labels.any():
                pairs.append(SitePair(case, f"{case}_slice{index:03d}", slice_image,
                                      slice_labels, spacing))
    return pairs


def _segment_label(description: object, label_map: Mapping[str, int] | None,
                   number: int) -> int | None:
    """The :class:`Label` of one SEG segment: by the label map, else by its codes."""
    name = str(getattr(description, "SegmentLabel", "")).strip().lower()
    if label_map is not None:
        for key in (str(number), name):
            if key in label_map:
                return label_map[key]
        return None
    prop = getattr(description, "SegmentedPropertyTypeCodeSequence", [None])[0]
    regions = getattr(description, "AnatomicRegionSequence", [])
    if prop is None:
        return None
    code = (str(prop.CodeValue), str(prop.CodingSchemeDesignator))
    region = {(str(r.CodeValue), str(r.CodingSchemeDesignator)) for r in regions}
    by_type = {
        (codes.MYOCARDIUM.value, codes.MYOCARDIUM.scheme): Label.MYOCARDIUM,
        (codes.SCAR_TISSUE.value, codes.SCAR_TISSUE.scheme): Label.SCAR,
        (codes.MICROVASCULAR_OBSTRUCTION.value, codes.MICROVASCULAR_OBSTRUCTION.scheme):
            Label.MVO,
    }
    if code in by_type:
        return int(by_type[code])
    if code == (codes.BLOOD.value, codes.BLOOD.scheme):
        if (codes.LEFT_VENTRICLE.value, codes.LEFT_VENTRICLE.scheme) in region:
            return int(Label.LV_BLOOD_POOL)
        if (codes.RIGHT_VENTRICLE.value, codes.RIGHT_VENTRICLE.scheme) in region:
            return int(Label.RV_BLOOD_POOL)
    return None


def _dicom_files(folder: Path) -> Iterable[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith("."))


def load_dicom_seg(folder: Path, label_map: Mapping[str, int] | None = None
                   ) -> list[SitePair]:
    """Every source image labelled by a SEG object of ``folder`` (searched recursively).

    Raises
    ------
    SiteDataError
        No SEG; a SEG whose referenced source images are not in the folder; a source image
        labelled by two SEGs; multi-frame sources; a SEG of another matrix than its sources.
    """
    import highdicom as hd
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    segs: list[Path] = []
    sources: dict[str, Path] = {}
    for path in _dicom_files(folder):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        if str(header.get("SOPClassUID", "")) == SEG_SOP_CLASS:
            segs.append(path)
        elif "SOPInstanceUID" in header:
            sources[str(header.SOPInstanceUID)] = path
    if not segs:
        raise SiteDataError(f"{folder}: no DICOM SEG object found")
    labelled_by: dict[str, Path] = {}
    pairs: list[SitePair] = []
    for seg_path in segs:
        seg = hd.seg.segread(seg_path)
        referenced = [uid for _, _, uid in seg.get_source_image_uids()]
        missing = [uid for uid in referenced if uid not in sources]
        if missing:
            raise SiteDataError(f"{seg_path.name}: {len(missing)} of {len(referenced)} source "
                                f"images it references are not in {folder} (e.g. {missing[0]})")
        for uid in referenced:
            if uid in labelled_by:
                raise SiteDataError(f"source image {uid} is labelled by {labelled_by[uid].name} "
                                    f"and {seg_path.name}: keep one SEG per image")
            labelled_by[uid] = seg_path
        by_label: dict[int, list[int]] = {}
        for number in seg.segment_numbers:
            label = _segment_label(seg.get_segment_description(number), label_map, number)
            if label is None or label == Label.BACKGROUND:
                logger.info("%s: segment %d not used", seg_path.name, number)
                continue
            by_label.setdefault(label, []).append(number)
        used = [n for label in PAINT_ORDER for n in by_label.get(int(label), [])]
        if not used:
            raise SiteDataError(f"{seg_path.name}: no segment maps to a label (segment codes "
                                "not recognised; use --label-map)")
        masks = seg.get_pixels_by_source_instance(
            referenced, segment_numbers=used, assert_missing_frames_are_empty=True,
            skip_overlap_checks=True)
        for uid, stack in zip(referenced, masks, strict=True):
            labels = np.zeros(stack.shape[:2], dtype=np.uint8)
            for label in PAINT_ORDER:
                for number in by_label.get(int(label), []):
                    labels[stack[:, :, used.index(number)] > 0] = int(label)
            if not labels.any():
                continue
            ds = pydicom.dcmread(sources[uid])
            if int(ds.get("NumberOfFrames", 1) or 1) > 1:
                raise SiteDataError(f"{sources[uid].name}: multi-frame source images are not "
                                    "supported (single-frame MR images only)")
            image = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)
            _shape_check(image, labels, f"{seg_path.name} / source {uid}")
            spacing = [float(v) for v in ds.get("PixelSpacing", [])]
            case = str(ds.get("PatientID", "") or ds.StudyInstanceUID)
            pairs.append(SitePair(case, uid, image, labels,
                                  float(np.mean(spacing)) if len(spacing) == 2 else None))
    return pairs


def load_site_data(kind: str, images: Path, labels: Path | None = None,
                   label_map: Mapping[str, int] | None = None) -> tuple[str, list[SitePair]]:
    """The kind read and its pairs, with the reader of ``kind`` (``png``, ``nifti``,
    ``dicom-seg``, or ``auto``: PNG or NIfTI files in ``images``, else DICOM)."""
    if not images.is_dir():
        raise SiteDataError(f"{images} is not a folder")
    if kind == "auto":
        names = [p.name for p in images.iterdir()]
        kind = ("png" if any(n.endswith(".png") for n in names)
                else "nifti" if any(_NIFTI.search(n) for n in names) else "dicom-seg")
    if kind == "dicom-seg":
        pairs = load_dicom_seg(images, label_map)
    elif kind in ("png", "nifti"):
        if labels is None:
            raise SiteDataError(f"{kind} input needs a labels folder (--labels)")
        loader = load_png if kind == "png" else load_nifti
        pairs = loader(images, labels, label_map)
    else:
        raise SiteDataError(f"unknown input kind {kind!r}")
    check_pairs(pairs, f"{images} ({kind})")
    return kind, pairs


def check_pairs(pairs: Sequence[SitePair], where: str) -> None:
    """Refuse data without any labelled myocardium (a wrong label map, most often)."""
    if not pairs:
        raise SiteDataError(f"{where}: no labelled slice found")
    if not any(np.any(p.labels == Label.MYOCARDIUM) for p in pairs):
        found = sorted({int(v) for p in pairs for v in np.unique(p.labels)})
        raise SiteDataError(f"{where}: no slice has a myocardium label (labels found "
                            f"{found}; check --label-map)")
