"""The images of the summary page: each slice's map as a tile with its contours, analysed
region, uncertainty shading and scale bar; the display window; the AHA bullseye."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw
from skimage import measure

from node.outputs.writers import WriterError
from node.outputs.writers.page_text import SMALL_SIZE, TEXT, font
from plugins.api import AnalysisResult, Label, LoadedSeries, SegmentDefinition, SliceResult
from plugins.lib.cardiac.bullseye import render_bullseye
from plugins.lib.uncertainty import (
    UNCERTAIN_ENTROPY_BITS,
    uncertain_area_ratio,
    uncertainty_image,
)

CORE_COLOURS = ((0, 229, 255), (60, 255, 60), (255, 64, 255), (255, 214, 10))
"""Candidate colours of the analysed-region overlay, in order of preference."""
MIN_COLOUR_DISTANCE = 150.0
"""RGB distance from every segment colour that an overlay colour needs to be told apart."""

CORE_ALPHA = 0.30
CONTOUR_WIDTH = 2
UNCERTAINTY_COLOURS = ((255, 140, 0), (0, 229, 255), (255, 64, 255), (255, 255, 255))
"""Candidate colours of the uncertainty shading, preferred first (orange shows on grey)."""
MIN_UNCERTAINTY_COLOUR_DISTANCE = 80.0
"""RGB distance from the contour and core colours an uncertainty colour must keep."""
UNCERTAINTY_ALPHA = 0.85
"""Opacity of the uncertainty stripes at entropy 1 (p = 0.5)."""
UNCERTAINTY_STRIPE_PX = 4
"""Width of the diagonal stripes of the uncertainty shading, in tile pixels."""
SCALE_BAR_MM = 20.0
MS_WINDOW_1_5T = (0.0, 2000.0)
MS_WINDOW_3T = (0.0, 2500.0)
HIGH_FIELD_T = 2.0
"""Field strengths above this (tesla) get the wider T1 window."""
BULLSEYE_SIZE = 360


def core_colour(segments: Sequence[SegmentDefinition]) -> tuple[int, int, int]:
    """Return the first overlay colour distinct from every segment colour (else the most)."""
    if not segments:
        return CORE_COLOURS[0]
    colours = np.asarray([d.colour_rgb for d in segments], dtype=np.float64)

    def distance(candidate: tuple[int, int, int]) -> float:
        return float(np.min(np.linalg.norm(colours - np.asarray(candidate), axis=1)))

    for candidate in CORE_COLOURS:
        if distance(candidate) >= MIN_COLOUR_DISTANCE:
            return candidate
    return max(CORE_COLOURS, key=distance)


def display_window(result: AnalysisResult, series: LoadedSeries) -> tuple[float, float]:
    """Return the (low, high) window of the maps.

    ``result.extra["display_window"]`` wins; maps in milliseconds get 0–2000 ms (up to 2 T)
    or 0–2500 ms (above); other maps the 1st–99th percentile of the analysed frames.
    """
    window = result.extra.get("display_window")
    if window is not None:
        try:
            low, high = (float(v) for v in window)
        except (TypeError, ValueError) as exc:
            raise WriterError(
                f"extra['display_window'] must be (low, high), got {window!r}"
            ) from exc
        if high > low:
            return low, high
        raise WriterError(f"extra['display_window'] must have low < high, got {window!r}")
    frames = [series.frames[s.frame_index] for s in result.slices] or list(series.frames)
    if frames and all(f.units == "ms" for f in frames):
        strength = series.field_strength_t
        return MS_WINDOW_3T if strength is not None and strength > HIGH_FIELD_T else MS_WINDOW_1_5T
    values = np.concatenate([f.pixels[np.isfinite(f.pixels)].ravel() for f in frames])
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, [1, 99]))
    return (low, high) if high > low else (low, low + 1.0)


def crop_box(result: AnalysisResult, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Return a square (row0, row1, col0, col1) around every labelled pixel of every slice."""
    rows, columns = shape
    union = np.zeros(shape, dtype=bool)
    for s in result.slices:
        union |= s.labels != Label.BACKGROUND
    if not union.any():
        return 0, rows, 0, columns
    r = np.flatnonzero(union.any(axis=1))
    c = np.flatnonzero(union.any(axis=0))
    size = max(r[-1] - r[0] + 1, c[-1] - c[0] + 1)
    size = min(max(int(size * 1.6), 32), max(rows, columns))
    centre_r, centre_c = (r[0] + r[-1] + 1) / 2, (c[0] + c[-1] + 1) / 2
    r0 = round(min(max(centre_r - size / 2, 0), max(rows - size, 0)))
    c0 = round(min(max(centre_c - size / 2, 0), max(columns - size, 0)))
    return r0, min(r0 + size, rows), c0, min(c0 + size, columns)


def _grey(pixels: npt.NDArray[np.float32], window: tuple[float, float]) -> npt.NDArray[np.uint8]:
    """``pixels`` windowed to 8-bit grey."""
    low, high = window
    scaled = (np.nan_to_num(pixels, nan=low) - low) / (high - low)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _contours(mask: npt.NDArray[np.bool_]) -> list[npt.NDArray[np.float64]]:
    """Iso-contours of ``mask`` in (row, column) pixel indices (outer and hole boundaries)."""
    if not mask.any():
        return []
    padded = np.pad(mask.astype(np.float64), 1)
    return [c - 1.0 for c in measure.find_contours(padded, 0.5)]


def render_tile(
    pixels: npt.NDArray[np.float32],
    slice_result: SliceResult,
    segments: Sequence[SegmentDefinition],
    window: tuple[float, float],
    box: tuple[int, int, int, int],
    size: int,
    pixel_spacing: tuple[float, float],
) -> Image.Image:
    """Render one slice's map, cropped to ``box``, with its contours, as a ``size`` square."""
    r0, r1, c0, c1 = box
    scale = size / max(r1 - r0, c1 - c0)
    crop = _grey(pixels[r0:r1, c0:c1], window)
    width, height = round((c1 - c0) * scale), round((r1 - r0) * scale)
    base = Image.fromarray(crop, mode="L").resize((width, height), Image.Resampling.BILINEAR)
    tile = Image.new("RGB", (size, size), (0, 0, 0))
    tile.paste(base.convert("RGB"), ((size - width) // 2, (size - height) // 2))
    offset = np.array([(size - height) / 2, (size - width) / 2])

    def to_xy(contour: npt.NDArray[np.float64]) -> list[tuple[float, float]]:
        points = (contour - [r0, c0] + 0.5) * scale + offset
        return [(float(p[1]), float(p[0])) for p in points]

    core = slice_result.analysed_region
    overlay_colour = core_colour(segments)
    if slice_result.probabilities:
        paste_uncertainty(tile, slice_result.probabilities, box, (width, height),
                          uncertainty_colour(segments, overlay_colour))
    if core is not None and core.any():
        overlay = np.zeros((size, size), dtype=np.uint8)
        core_crop = Image.fromarray(core[r0:r1, c0:c1].astype(np.uint8) * 255, mode="L")
        core_crop = core_crop.resize((width, height), Image.Resampling.NEAREST)
        overlay_image = Image.fromarray(overlay, mode="L")
        overlay_image.paste(core_crop, ((size - width) // 2, (size - height) // 2))
        alpha = overlay_image.point(lambda v: int(v * CORE_ALPHA))
        tile.paste(Image.new("RGB", (size, size), overlay_colour), (0, 0), alpha)
    draw = ImageDraw.Draw(tile)
    if core is not None and core.any():
        for contour in _contours(core):
            draw.line(to_xy(contour), fill=overlay_colour, width=1)
    for definition in segments:
        mask = definition.mask(slice_result.labels)
        for contour in _contours(mask):
            draw.line(
                to_xy(contour), fill=definition.colour_rgb, width=CONTOUR_WIDTH, joint="curve"
            )
    # Scale bar, bottom right.
    bar = SCALE_BAR_MM / pixel_spacing[1] * scale
    if bar < size / 2:
        x1, y = size - 14, size - 14
        label = f"{SCALE_BAR_MM:.0f} mm"
        small = font(SMALL_SIZE)
        width_text = small.getlength(label)
        left = min(x1 - bar, x1 - bar / 2 - width_text / 2) - 6
        shade = Image.new("L", tile.size, 0)
        ImageDraw.Draw(shade).rounded_rectangle(
            [left, y - SMALL_SIZE - 10, size - 6, size - 6], radius=4, fill=150
        )
        tile.paste(Image.new("RGB", tile.size, (0, 0, 0)), (0, 0), shade)
        draw.line([(x1 - bar, y), (x1, y)], fill=TEXT, width=3)
        draw.text((x1 - bar / 2, y - 4), label, fill=TEXT, font=small, anchor="md")
    return tile


def uncertainty_colour(
    segments: Sequence[SegmentDefinition], core: tuple[int, int, int]
) -> tuple[int, int, int]:
    """The first candidate colour distinct from every segment colour and the core shading
    (else the farthest)."""
    taken = np.asarray([*(d.colour_rgb for d in segments), core], dtype=np.float64)

    def distance(candidate: tuple[int, int, int]) -> float:
        return float(np.min(np.linalg.norm(taken - np.asarray(candidate), axis=1)))

    for candidate in UNCERTAINTY_COLOURS:
        if distance(candidate) >= MIN_UNCERTAINTY_COLOUR_DISTANCE:
            return candidate
    return max(UNCERTAINTY_COLOURS, key=distance)


def paste_uncertainty(
    tile: Image.Image,
    probabilities: Mapping[Label, npt.NDArray[np.float32]],
    box: tuple[int, int, int, int],
    shown: tuple[int, int],
    colour: tuple[int, int, int],
) -> None:
    """Shade, on a tile, the pixels where the segmenter was unsure.

    Pixels whose binary entropy reaches :data:`~plugins.lib.uncertainty.UNCERTAIN_ENTROPY_BITS`
    (probability between about 0.11 and 0.89, any region) are covered with diagonal stripes
    of ``colour`` whose opacity grows with the entropy, so that the shading stays distinct
    from the filled analysed region and the contours drawn over it.

    Parameters
    ----------
    tile
        The square tile, modified in place; the crop is centred in it.
    probabilities
        The slice's per-pixel probabilities by region.
    box
        The (row0, row1, col0, col1) crop of the source image the tile shows.
    shown
        (width, height) of the crop on the tile.
    colour
        Shading colour.
    """
    entropy = uncertainty_image(probabilities)
    if entropy is None:
        return
    r0, r1, c0, c1 = box
    crop = np.where(entropy >= UNCERTAIN_ENTROPY_BITS, entropy, 0.0)[r0:r1, c0:c1]
    scaled = Image.fromarray((crop * 255.0).astype(np.uint8), mode="L").resize(
        shown, Image.Resampling.BILINEAR
    )
    strength = np.asarray(scaled, dtype=np.float32) / 255.0
    yy, xx = np.mgrid[: strength.shape[0], : strength.shape[1]]
    stripes = ((xx + yy) // UNCERTAINTY_STRIPE_PX) % 2 == 0
    alpha = strength * np.where(stripes, UNCERTAINTY_ALPHA, UNCERTAINTY_ALPHA / 3)
    size = tile.size[0]
    mask = Image.new("L", tile.size, 0)
    mask.paste(
        Image.fromarray((alpha * 255.0).astype(np.uint8), mode="L"),
        ((size - shown[0]) // 2, (size - shown[1]) // 2),
    )
    tile.paste(Image.new("RGB", tile.size, colour), (0, 0), mask)


def uncertainty_caption(slice_result: SliceResult) -> str | None:
    """The caption line giving a slice's uncertain area, if the segmenter gave probabilities."""
    ratio = uncertain_area_ratio(slice_result.probabilities, slice_result.labels)
    if ratio is None:
        return None
    return f"uncertain pixels: {100 * ratio:.0f} % of the myocardial area"


def render_segment_bullseye(result: AnalysisResult) -> Image.Image | None:
    """The AHA bullseye of ``result.extra["aha"]`` (per-segment means), if the result has one."""
    block = result.extra.get("aha")
    if not isinstance(block, Mapping):
        return None
    segments = block.get("segments") or {}
    values: dict[int, float | None] = {
        int(number): (item.get("mean") if isinstance(item, Mapping) else None)
        for number, item in segments.items()
    }
    finite = [v for v in values.values() if v is not None]
    if not finite:
        return None
    low, high = block.get("display_range") or (min(finite), max(finite))
    if high <= low:
        low, high = low - 1.0, high + 1.0
    array = render_bullseye(
        values,
        title=f"{block.get('quantity', '')} per AHA segment".strip(),
        unit=str(block.get("unit", "")),
        vmin=float(low),
        vmax=float(high),
        size_px=BULLSEYE_SIZE,
    )
    return Image.fromarray(array)
