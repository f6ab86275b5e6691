"""Choosing, per slice position, the images an analysis needs from a loaded series.

Scanners do not send one kind of image per series: Philips keeps the T1 maps in the series
of their inversion-recovery source images, Siemens may send a motion-corrected and an
uncorrected map of one slice, LGE series mix magnitude and PSIR or phase images, and a
scanner or a PACS may send a slice again with a new SOP Instance UID (or a stray instance of
another modality with the series' UID).  Instead of refusing such a series, the images the
analysis needs are chosen, and every choice is recorded as a sentence (kept in
``LoadedSeries.header["ImageSelection"]`` and in results.json).

Rules, in order:

1. Instances of another modality than the series' (e.g. a CT image carrying an MR series'
   UID) are left out.
2. Images that repeat another image of the series at the same position, with the same
   ImageType, kind, inversion time, trigger time and echo time (a re-sent or re-acquired
   slice) are left out: the newest one (ContentDate/ContentTime, then InstanceNumber,
   then arrival order) is kept.
3. For a map analysis (t1map, ecv): when the series holds T1-map images, only those are
   kept (source images, fit parameters and other maps are left out), and of two maps at one
   position the motion-corrected one (ImageType MOCO), else the newest, is kept.
4. For the MOLLI fit (molli): source images and T1-map images (for the comparison) are kept;
   fit parameters, phase images and other maps are left out.
5. For LGE (lge): phase images are left out; where a position has both a PSIR (or real)
   and a magnitude image, the PSIR image is kept (the node's default LGE preference,
   :mod:`node.completion.pairing`); one image per position, the newest.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Final

from node.vendor.image_kind import ImageKind
from plugins.api import SourceFrame

__all__ = ["KIND_ATTRIBUTE", "select_frames"]

KIND_ATTRIBUTE: Final = "ImageKind"
"""Frame attribute holding the :class:`~node.vendor.image_kind.ImageKind` value."""
MAP_ANALYSES: Final = frozenset({"t1map", "ecv"})
_POSITION_DECIMALS: Final = 1


def _kind(frame: SourceFrame) -> ImageKind:
    try:
        return ImageKind(frame.attributes.get(KIND_ATTRIBUTE, ImageKind.UNKNOWN.value))
    except ValueError:
        return ImageKind.UNKNOWN


def _position(frame: SourceFrame) -> tuple[Any, ...]:
    normal = tuple(round(float(n), 2) + 0.0 for n in frame.normal)
    return (normal, round(frame.slice_location, _POSITION_DECIMALS) + 0.0)


def _number(value: Any) -> float | None:
    try:
        return round(float(value), 3)
    except (TypeError, ValueError):
        return None


def _recency(frame: SourceFrame, order: int) -> tuple[str, float, int]:
    attrs = frame.attributes
    stamp = f"{attrs.get('ContentDate') or ''}{attrs.get('ContentTime') or ''}"
    instance = _number(attrs.get("InstanceNumber"))
    return (stamp, instance if instance is not None else -1.0, order)


def _tokens(frame: SourceFrame) -> set[str]:
    value = frame.attributes.get("ImageType") or ()
    items = value.split("\\") if isinstance(value, str) else list(value)
    return {str(v).strip().upper() for v in items}


def _describe(frame: SourceFrame) -> str:
    where = f"frame {frame.frame_number} of " if frame.frame_number else ""
    return f"{where}{frame.sop_instance_uid}"


def _keep_newest(
    frames: Sequence[tuple[int, SourceFrame]],
    key: Callable[[SourceFrame], tuple[Any, ...]],
    reason: str,
    notes: list[str],
    prefer: Callable[[SourceFrame], int] | None = None,
) -> list[tuple[int, SourceFrame]]:
    groups: dict[tuple[Any, ...], list[tuple[int, SourceFrame]]] = defaultdict(list)
    for item in frames:
        groups[key(item[1])].append(item)
    kept: list[tuple[int, SourceFrame]] = []
    for group in groups.values():
        best = max(group, key=lambda it: ((prefer(it[1]) if prefer else 0),
                                          _recency(it[1], it[0])))
        kept.append(best)
        left = [it for it in group if it is not best]
        if left:
            notes.append(
                f"{reason} at {best[1].slice_location:.1f} mm: kept {_describe(best[1])}, "
                f"left out {', '.join(_describe(it[1]) for it in left)}"
            )
    kept.sort(key=lambda it: it[0])
    return kept


def select_frames(
    frames: Sequence[SourceFrame],
    analysis: str | None,
) -> tuple[list[SourceFrame], list[str]]:
    """The frames ``analysis`` needs, and one sentence per choice made.

    Parameters
    ----------
    frames
        The series' frames in arrival order, each with its ``ImageKind`` attribute.
    analysis
        The analysis the series is loaded for, or ``None`` (only rules 1-2 apply).
    """
    notes: list[str] = []
    items = list(enumerate(frames))

    modalities = Counter(str(f.attributes.get("Modality") or "") for _, f in items)
    if len(modalities) > 1:
        main = "MR" if "MR" in modalities else modalities.most_common(1)[0][0]
        others = [it for it in items if str(it[1].attributes.get("Modality") or "") != main]
        if others and len(others) < len(items):
            items = [it for it in items if it not in others]
            notes.append(
                f"left out {len(others)} instance(s) of another modality than {main} "
                f"({', '.join(sorted({str(o[1].attributes.get('Modality')) for o in others}))}) "
                "that carry this series' UID"
            )

    def repeat_key(frame: SourceFrame) -> tuple[Any, ...]:
        a = frame.attributes
        return (_position(frame), _kind(frame), _number(a.get("InversionTime")),
                _number(a.get("TriggerTime")), _number(a.get("EchoTime")),
                tuple(sorted(_tokens(frame))), frame.pixels.shape)

    items = _keep_newest(items, repeat_key, "repeated image (same position, ImageType and timing)",
                         notes)

    kinds = Counter(_kind(f) for _, f in items)
    if analysis in MAP_ANALYSES and kinds.get(ImageKind.T1_MAP):
        others = [it for it in items if _kind(it[1]) is not ImageKind.T1_MAP]
        if others:
            left = Counter(_kind(f).value for _, f in others)
            notes.append(
                f"took the {kinds[ImageKind.T1_MAP]} T1-map image(s) of the series; left out "
                + ", ".join(f"{n} {k} image(s)" for k, n in sorted(left.items()))
            )
            items = [it for it in items if _kind(it[1]) is ImageKind.T1_MAP]
        items = _keep_newest(items, _position, "two T1 maps at one position", notes,
                             prefer=lambda f: int("MOCO" in _tokens(f)))
    elif analysis == "molli":
        unwanted = {ImageKind.FIT_PARAMETER, ImageKind.PHASE, ImageKind.T2_MAP,
                    ImageKind.T2STAR_MAP, ImageKind.ECV_MAP}
        others = [it for it in items if _kind(it[1]) in unwanted]
        if others:
            left = Counter(_kind(f).value for _, f in others)
            notes.append("left out " + ", ".join(f"{n} {k} image(s)" for k, n in
                                                 sorted(left.items()))
                         + " (not inversion-recovery source images or T1 maps)")
            items = [it for it in items if _kind(it[1]) not in unwanted]
    elif analysis == "lge":
        phase = [it for it in items if _kind(it[1]) is ImageKind.PHASE]
        if phase and len(phase) < len(items):
            notes.append(f"left out {len(phase)} phase image(s)")
            items = [it for it in items if _kind(it[1]) is not ImageKind.PHASE]
        psir_kinds = {ImageKind.PSIR, ImageKind.REAL}
        items = _keep_newest(
            items, _position, "several LGE images at one position (PSIR preferred)", notes,
            prefer=lambda f: int(_kind(f) in psir_kinds),
        )
    return [f for _, f in items], notes
