"""Summary image writer: a rendered RGB page (Secondary Capture) for any viewer.

The page shows each analysed slice's map with the contours of every segment and the analysed
core region, that slice's values and QC flags, the series-level values, every QC flag, the
algorithm with its version and weights hash, and the disclaimer.  All text is burned in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageDraw, ImageFont
from skimage import measure

from node.outputs.uids import DerivedObjectIdentity
from node.outputs.writers import (
    SHORT_DISCLAIMER,
    WriterError,
    WriterSettings,
    display_name,
    frame_description,
    reference_range_text,
    weights_text,
)
from node.outputs.writers.explain import model_explanations
from plugins.api import (
    DISCLAIMER,
    AnalysisResult,
    Label,
    LoadedSeries,
    Measurement,
    QCFlag,
    SegmentDefinition,
    Severity,
    SliceResult,
)
from plugins.lib.cardiac.bullseye import render_bullseye
from plugins.lib.uncertainty import (
    UNCERTAIN_ENTROPY_BITS,
    uncertain_area_ratio,
    uncertainty_image,
)

logger = logging.getLogger(__name__)

FontType = ImageFont.FreeTypeFont | ImageFont.ImageFont

FONT_FILES = ("DejaVuSans.ttf",)
BOLD_FONT_FILES = ("DejaVuSans-Bold.ttf",)

BACKGROUND = (16, 18, 22)
PANEL = (30, 33, 40)
TEXT = (230, 232, 236)
MUTED = (150, 156, 168)
CORE_COLOURS = ((0, 229, 255), (60, 255, 60), (255, 64, 255), (255, 214, 10))
"""Candidate colours of the analysed-region overlay, in order of preference."""
MIN_COLOUR_DISTANCE = 150.0
"""RGB distance from every segment colour that an overlay colour needs to be told apart."""
SEVERITY_COLOURS: dict[Severity, tuple[int, int, int]] = {
    Severity.INFO: (120, 180, 255),
    Severity.WARNING: (255, 170, 40),
    Severity.FAILURE: (255, 70, 70),
}
DISCLAIMER_COLOUR = (255, 200, 60)

MARGIN = 32
GAP = 24
TEXT_SIZE = 19
SMALL_SIZE = 16
TITLE_SIZE = 30
INDENT = 16
MIN_TEXT_LUMINANCE = 110.0
"""Coloured text darker than this (0–255 luma) is lightened to stay legible."""
LIGHTEN_FRACTION = 0.5
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


UNIT_SYMBOLS = {"mm2": "mm²", "cm2": "cm²", "mm3": "mm³", "cm3": "cm³", "ml": "mL", "1": ""}
MEAN_MEANINGS = {"mean"}
SD_MEANINGS = {"standard deviation", "sd"}


@lru_cache(maxsize=16)
def font(size: int, *, bold: bool = False) -> FontType:
    """Return a scalable font of ``size`` pixels (DejaVu Sans, else Pillow's built-in font)."""
    for name in BOLD_FONT_FILES if bold else FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    logger.debug("DejaVu Sans not found; using Pillow's default font")
    return ImageFont.load_default(size=size)


# --------------------------------------------------------------------------------------------
# Text of values
# --------------------------------------------------------------------------------------------


def format_number(value: float) -> str:
    """Format a value with a number of decimals that suits its magnitude."""
    magnitude = abs(value)
    if value == round(value) and magnitude < 1e9:
        return f"{value:.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def unit_symbol(unit_code: str) -> str:
    """Return how a UCUM unit is printed (annotations such as ``{pixels}`` lose their braces)."""
    if unit_code.startswith("{") and unit_code.endswith("}"):
        return unit_code[1:-1]
    return UNIT_SYMBOLS.get(unit_code, unit_code)


def _with_unit(text: str, unit: str) -> str:
    symbol = unit_symbol(unit)
    return f"{text} {symbol}" if symbol else text


def measurement_lines(measurements: Sequence[Measurement]) -> list[str]:
    """Return one line per measured quantity, e.g. ``"T1 1012 ± 38 ms"``.

    Measurements of the same concept and unit are joined: a mean and a standard deviation
    become ``mean ± SD``; other statistics follow with their name.  Missing values are shown
    as ``n/a`` with their reason.
    """
    grouped: dict[tuple[str, str], list[Measurement]] = {}
    for m in measurements:
        grouped.setdefault((m.name.meaning, m.unit.value), []).append(m)
    lines = []
    for (name, unit), items in grouped.items():
        by_derivation = {(m.derivation.meaning.lower() if m.derivation else ""): m for m in items}
        mean = next((by_derivation[k] for k in MEAN_MEANINGS if k in by_derivation), None)
        sd = next((by_derivation[k] for k in SD_MEANINGS if k in by_derivation), None)
        parts: list[str] = []
        used: set[int] = set()
        if mean is not None and mean.value is not None:
            text = format_number(mean.value)
            used.add(id(mean))
            if sd is not None and sd.value is not None:
                text += f" ± {format_number(sd.value)}"
                used.add(id(sd))
            parts.append(_with_unit(text, unit))
        for m in items:
            if id(m) in used:
                continue
            label = m.derivation.meaning.lower() if m.derivation else ""
            if m.value is None:
                value = f"n/a ({m.reason})" if m.reason else "n/a"
            else:
                value = _with_unit(format_number(m.value), unit)
            parts.append(f"{label} {value}".strip())
        lines.append(f"{name} {', '.join(parts)}")
    return lines


def wrap(text: str, typeface: FontType, width: float) -> list[str]:
    """Split ``text`` into lines no wider than ``width`` pixels (long words are kept whole)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and typeface.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------


@dataclass
class _Line:
    text: str
    colour: tuple[int, int, int] = TEXT
    size: int = TEXT_SIZE
    bold: bool = False
    indent: int = 0


def _line_height(line: _Line) -> int:
    return round(line.size * 1.35)


def _wrap_lines(lines: Sequence[_Line], width: float) -> list[_Line]:
    wrapped = []
    for line in lines:
        typeface = font(line.size, bold=line.bold)
        for part in wrap(line.text, typeface, width - line.indent) or [""]:
            wrapped.append(_Line(part, line.colour, line.size, line.bold, line.indent))
    return wrapped


def _draw_lines(draw: ImageDraw.ImageDraw, lines: Sequence[_Line], x: float, y: float) -> float:
    for line in lines:
        typeface = font(line.size, bold=line.bold)
        draw.text((x + line.indent, y), line.text, fill=line.colour, font=typeface)
        y += _line_height(line)
    return y


def _height(lines: Sequence[_Line]) -> int:
    return sum(_line_height(line) for line in lines)


def _flag_line(flag: QCFlag, result: AnalysisResult, size: int = TEXT_SIZE) -> _Line:
    where = ""
    if flag.frame_index is not None:
        where = f"{frame_description(result, flag.frame_index)}: "
    return _Line(
        f"{flag.severity.value.upper()}  {where}{flag.message} ({flag.code})",
        SEVERITY_COLOURS[flag.severity],
        size,
    )


def _region_lines(
    measurements: Sequence[Measurement], definitions: Mapping[Label, SegmentDefinition]
) -> list[_Line]:
    lines = []
    regions = list(dict.fromkeys(m.region for m in measurements))
    for region in regions:
        definition = definitions.get(region)
        name = definition.name if definition else region.name.replace("_", " ").lower()
        colour = definition.colour_rgb if definition else TEXT
        lines.append(_Line(name, _readable(colour), bold=True))
        for text in measurement_lines([m for m in measurements if m.region == region]):
            lines.append(_Line(text, indent=INDENT))
    return lines


def _finding_lines(result: AnalysisResult) -> list[_Line]:
    """The study-level findings (e.g. the infarct call): summary, then evidence, small."""
    lines = []
    for finding in result.findings:
        lines.append(_Line(finding.summary, TEXT, TEXT_SIZE, True))
        lines += [_Line(text, MUTED, SMALL_SIZE, indent=INDENT) for text in finding.evidence]
        lines += [_Line(text, indent=INDENT) for text in measurement_lines(finding.measurements)]
    return lines


def _explanation_lines(result: AnalysisResult) -> list[_Line]:
    """"Why this number": each model-based value's largest contributions."""
    items = model_explanations(result)
    if not items:
        return []
    return [_Line("Why this number", TEXT, TEXT_SIZE, True),
            *(_Line(item.text(), TEXT, SMALL_SIZE, indent=INDENT) for item in items)]


def _readable(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Return a segment colour, lightened if it would read poorly on the dark background."""
    luminance = 0.2126 * colour[0] + 0.7152 * colour[1] + 0.0722 * colour[2]
    if luminance >= MIN_TEXT_LUMINANCE:
        return colour
    red, green, blue = (round(c + (255 - c) * LIGHTEN_FRACTION) for c in colour)
    return red, green, blue


def _slice_order(result: AnalysisResult) -> list[SliceResult]:
    """Slices from base to apex when levels say so, else in series order."""
    rank = {"basal": 0, "mid": 1, "apical": 2}
    return (
        sorted(
            result.slices,
            key=lambda s: (rank.get(s.level, 1), s.frame_index),
        )
        if all(s.level in rank for s in result.slices)
        else sorted(result.slices, key=lambda s: s.frame_index)
    )


def render_summary(result: AnalysisResult, series: LoadedSeries) -> Image.Image:
    """Render the summary page of ``result`` as an RGB image."""
    slices = _slice_order(result)
    definitions = {d.label: d for d in result.segments}
    window = display_window(result, series)
    columns = 3 if len(slices) <= 9 else 4
    tile = 400 if columns == 3 else 300
    page_width = 2 * MARGIN + columns * tile + (columns - 1) * GAP
    text_width = tile
    full_width = page_width - 2 * MARGIN

    # Text under each tile.
    captions = []
    for s in slices:
        lines = [_Line(f"{s.level}  (frame {s.frame_index + 1})", TEXT, TEXT_SIZE + 2, True)]
        lines += _region_lines(s.measurements, definitions)
        if (uncertain := uncertainty_caption(s)) is not None:
            lines.append(_Line(uncertain, MUTED, SMALL_SIZE))
        lines += [
            _flag_line(f, result, SMALL_SIZE)
            for f in result.qc_flags
            if f.frame_index == s.frame_index
        ]
        captions.append(_wrap_lines(lines, text_width))
    rows_of_slices = [slices[i : i + columns] for i in range(0, len(slices), columns)]
    caption_rows = [captions[i : i + columns] for i in range(0, len(captions), columns)]

    name = display_name(result)
    provenance = result.provenance
    title = _Line(f"cmr-node {name} analysis", TEXT, TITLE_SIZE, True)
    subtitle_parts = [str(series.header.get("SeriesDescription") or "")]
    if series.field_strength_t is not None:
        subtitle_parts.append(f"{series.field_strength_t:g} T")
    subtitle_parts.append(f"{len(result.slices)} of {len(series.frames)} frames analysed")
    subtitle = _Line("  ·  ".join(p for p in subtitle_parts if p), MUTED)
    header = [title, subtitle, _Line(SHORT_DISCLAIMER, DISCLAIMER_COLOUR, SMALL_SIZE, True)]
    if result.has_failure:
        header.append(
            _Line(
                "QC FAILURE: values flagged below should not be used",
                SEVERITY_COLOURS[Severity.FAILURE],
                TEXT_SIZE,
                True,
            )
        )
    if not slices:
        header.append(_Line("No slice was analysed.", SEVERITY_COLOURS[Severity.WARNING]))

    summary_lines = [_Line("All slices", TEXT, TEXT_SIZE + 2, True)]
    whole_regions = [m for m in result.measurements if m.site is None]  # sites: bullseye
    summary_lines += _region_lines(whole_regions, definitions) or [
        _Line("no series-level values", MUTED)
    ]
    summary_lines += _finding_lines(result) + _explanation_lines(result)
    qc_lines = [_Line("Quality control", TEXT, TEXT_SIZE + 2, True)]
    qc_lines += [_flag_line(f, result) for f in result.qc_flags] or [_Line("no flags", MUTED)]
    contoured = [d.name for d in result.segments if d.label in _used(result)]
    legend = []
    if contoured:
        shaded = any(s.analysed_region is not None for s in slices)
        legend.append(
            _Line(
                "Contours: "
                + ", ".join(contoured)
                + (f"; shaded: {result.extra.get('shaded_region', 'region the statistics use')}"
                   if shaded else ""),
                MUTED,
                SMALL_SIZE,
            )
        )
    if any(s.probabilities for s in slices):
        legend.append(
            _Line(
                "Striped shading: pixels where the network was unsure (probability between"
                f" 0.11 and 0.89, entropy >= {UNCERTAIN_ENTROPY_BITS:g} bit); denser = closer"
                " to 0.5.",
                MUTED,
                SMALL_SIZE,
            )
        )
    footer = [
        _Line(
            f"Algorithm {provenance.algorithm_name} {provenance.algorithm_version}; "
            f"{weights_text(provenance)}.",
            MUTED,
            SMALL_SIZE,
        ),
        _Line(f"Method: {provenance.method}", MUTED, SMALL_SIZE),
        *([_Line(f"Reference range: {reference}", TEXT, SMALL_SIZE)]
          if (reference := reference_range_text(result)) else []),
        _Line(DISCLAIMER, DISCLAIMER_COLOUR, TEXT_SIZE, True),
    ]
    half = (full_width - GAP) / 2
    summary_lines = _wrap_lines(summary_lines, half)
    qc_lines = _wrap_lines(qc_lines, half)
    legend = _wrap_lines(legend, full_width)
    footer = _wrap_lines(footer, full_width)

    bullseye = render_segment_bullseye(result)
    bullseye_height = bullseye.height + GAP if bullseye is not None else 0
    header_height = _height(header) + GAP
    tiles_height = sum(tile + 12 + max(_height(c) for c in row) + GAP for row in caption_rows)
    panel_height = max(_height(summary_lines), _height(qc_lines)) + 2 * 16
    height = (
        MARGIN
        + header_height
        + _height(legend)
        + 8
        + tiles_height
        + panel_height
        + GAP
        + bullseye_height
        + _height(footer)
        + MARGIN
    )
    height += height % 2
    page = Image.new("RGB", (page_width, height), BACKGROUND)
    draw = ImageDraw.Draw(page)

    y = float(MARGIN)
    y = _draw_lines(draw, header, MARGIN, y)
    _draw_colour_bar(draw, window, series, page_width - MARGIN - 260, MARGIN + 8, 260)
    y += GAP
    y = _draw_lines(draw, legend, MARGIN, y) + 8
    for row, caption_row in zip(rows_of_slices, caption_rows, strict=True):
        for column, (s, caption) in enumerate(zip(row, caption_row, strict=True)):
            x = MARGIN + column * (tile + GAP)
            frame = series.frames[s.frame_index]
            image = render_tile(
                frame.pixels,
                s,
                result.segments,
                window,
                crop_box(result, frame.pixels.shape),
                tile,
                frame.pixel_spacing,
            )
            page.paste(image, (int(x), int(y)))
            _draw_lines(draw, caption, x, y + tile + 12)
        y += tile + 12 + max(_height(c) for c in caption_row) + GAP
    draw.rounded_rectangle(
        [MARGIN - 8, y - 8, page_width - MARGIN + 8, y + panel_height - 8], radius=8, fill=PANEL
    )
    _draw_lines(draw, summary_lines, MARGIN + 8, y + 8)
    _draw_lines(draw, qc_lines, MARGIN + half + GAP, y + 8)
    y += panel_height + GAP
    if bullseye is not None:
        page.paste(bullseye, (MARGIN, int(y)))
        y += bullseye_height
    _draw_lines(draw, footer, MARGIN, y)
    return page


BULLSEYE_SIZE = 360


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


def _used(result: AnalysisResult) -> set[int]:
    present: set[int] = set()
    for s in result.slices:
        present.update(int(v) for v in np.unique(s.labels))
    return present


def _draw_colour_bar(
    draw: ImageDraw.ImageDraw,
    window: tuple[float, float],
    series: LoadedSeries,
    x: float,
    y: float,
    width: float,
) -> None:
    units = series.frames[0].units if series.frames else ""
    for i in range(int(width)):
        grey = round(255 * i / max(width - 1, 1))
        draw.line([(x + i, y), (x + i, y + 14)], fill=(grey, grey, grey))
    small = font(SMALL_SIZE)
    draw.text((x, y + 20), _with_unit(format_number(window[0]), units), fill=MUTED, font=small)
    draw.text(
        (x + width, y + 20),
        _with_unit(format_number(window[1]), units),
        fill=MUTED,
        font=small,
        anchor="ra",
    )


def _patient_orientation(series: LoadedSeries) -> tuple[str, str]:
    """Dominant patient directions of the rows and columns of the source images."""
    if not series.frames:
        return "L", "P"
    cosines = np.asarray(series.frames[0].image_orientation, dtype=np.float64)

    def letter(vector: npt.NDArray[np.float64]) -> str:
        axis = int(np.argmax(np.abs(vector)))
        positive = vector[axis] >= 0
        return ("L", "P", "H")[axis] if positive else ("R", "A", "F")[axis]

    return letter(cosines[:3]), letter(cosines[3:])


def build_summary_image(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    identity: DerivedObjectIdentity,
) -> hd.sc.SCImage:
    """Build the summary page as an RGB Secondary Capture image with burned-in text.

    Parameters
    ----------
    result, series, sources
        The result, the analysed series and its source datasets (patient and study).
    settings
        Identity of the node.
    identity
        UIDs, number and description of the summary series.

    Returns
    -------
    highdicom.sc.SCImage
    """
    page = render_summary(result, series)
    pixels = np.asarray(page, dtype=np.uint8)
    try:
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=sources[0],
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=identity.series_instance_uid,
            series_number=identity.series_number,
            sop_instance_uid=identity.sop_instance_uid,
            instance_number=identity.instance_number,
            manufacturer=settings.manufacturer,
            patient_orientation=_patient_orientation(series),
            series_description=identity.series_description,
            manufacturer_model_name=settings.manufacturer_model_name,
            software_versions=settings.software_versions,
            device_serial_number=settings.device_serial_number,
            institution_name=settings.institution_name,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriterError(f"Cannot build the summary image: {exc}") from exc
    image.BurnedInAnnotation = "YES"
    body_part = sources[0].get("BodyPartExamined")
    if body_part:
        image.BodyPartExamined = body_part
    image.ImageComments = DISCLAIMER
    image.DerivationDescription = (
        f"Rendered by cmr-node {settings.software_versions} from the analysed frames and "
        f"{result.provenance.algorithm_name} {result.provenance.algorithm_version} results"
    )[:1024]
    return image
