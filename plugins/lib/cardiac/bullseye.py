"""Bullseye (polar map) of per-segment values in the AHA 16-segment layout.

Layout as in Cerqueira et al., Circulation 2002;105:539 (figure of the 17-segment model,
without the apex cap): basal segments 1-6 on the outer ring, mid 7-12 on the middle ring,
apical 13-16 in the centre; anterior at the top, septum on the left, lateral on the right,
numbered counter-clockwise with segment 1 (basal anterior) centred at 12 o'clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

__all__ = ["COLOUR_MAPS", "render_bullseye", "segment_at"]

FontType = ImageFont.FreeTypeFont | ImageFont.ImageFont
ColourMap = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.uint8]]

BACKGROUND: Final = (16, 18, 22)
TEXT: Final = (230, 232, 236)
MUTED: Final = (150, 156, 168)
BORDER: Final = (16, 18, 22)
MISSING_FILL: Final = (78, 82, 90)
MISSING_HATCH: Final = (112, 117, 128)
FLAG_COLOUR: Final = (255, 170, 40)
MISSING_TEXT: Final = "–"

RING_EDGES: Final = (0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0)
"""Radii of the apical, mid and basal rings as fractions of the bullseye radius."""
_SUPERSAMPLE: Final = 3

_VIRIDIS: Final = (
    (68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142),
    (31, 158, 137), (53, 183, 121), (110, 206, 88), (253, 231, 37),
)
_INFERNO: Final = (
    (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
    (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164),
)


def _table_map(anchors: tuple[tuple[int, int, int], ...]) -> ColourMap:
    table = np.asarray(anchors, dtype=np.float64)
    stops = np.linspace(0.0, 1.0, len(anchors))

    def colour(x: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
        channels = [np.interp(x, stops, table[:, c]) for c in range(3)]
        return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)

    return colour


COLOUR_MAPS: Final[Mapping[str, ColourMap]] = {
    "viridis": _table_map(_VIRIDIS),
    "inferno": _table_map(_INFERNO),
}
"""Perceptually uniform colour maps (anchors of matplotlib's viridis and inferno)."""


@lru_cache(maxsize=16)
def _font(size: int, bold: bool = False) -> FontType:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(name, size)
    except OSError:
        logger.debug("DejaVu Sans not found; using Pillow's default font")
        return ImageFont.load_default(size=size)


def _segment_geometry(segment: int) -> tuple[float, float, float, float]:
    """(inner radius fraction, outer radius fraction, centre angle deg, half width deg).

    Angles are mathematical (counter-clockwise from 3 o'clock, y up).
    """
    if 1 <= segment <= 12:
        ring = 2 if segment <= 6 else 1
        k = (segment - 1) % 6
        return RING_EDGES[ring], RING_EDGES[ring + 1], 90.0 + 60.0 * k, 30.0
    if 13 <= segment <= 16:
        return RING_EDGES[0], RING_EDGES[1], 90.0 + 90.0 * (segment - 13), 45.0
    raise ValueError(f"AHA segment numbers are 1-16, got {segment}")


def segment_at(x: float, y: float, centre: tuple[float, float], radius: float) -> int:
    """AHA segment drawn at image point (x, y) of a bullseye, 0 outside it."""
    dx, dy = x - centre[0], centre[1] - y
    r = math.hypot(dx, dy) / radius
    if r >= 1.0:
        return 0
    angle = math.degrees(math.atan2(dy, dx)) % 360.0
    if r < RING_EDGES[1]:
        return 13 + int(((angle - 45.0) % 360.0) // 90.0)
    first = 1 if r >= RING_EDGES[2] else 7
    return first + int(((angle - 60.0) % 360.0) // 60.0)


@lru_cache(maxsize=8)
def _segment_raster(size: int, radius: float) -> npt.NDArray[np.int8]:
    """Segment number of every pixel of a ``size`` square bullseye of ``radius`` pixels
    (read-only: one array per geometry serves every rendering)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xx - size / 2.0, size / 2.0 - yy
    r = np.hypot(dx, dy) / radius
    angle = np.degrees(np.arctan2(dy, dx)) % 360.0
    apical = 13 + (((angle - 45.0) % 360.0) // 90.0)
    ring = np.where(r >= RING_EDGES[2], 1, 7) + (((angle - 60.0) % 360.0) // 60.0)
    out = np.where(r < RING_EDGES[1], apical, ring)
    raster = np.where(r < 1.0, out, 0).astype(np.int8)
    raster.flags.writeable = False
    return raster


def _text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _format(value: float, value_format: str) -> str:
    return value_format.format(value)


def render_bullseye(
    values: Mapping[int, float | None],
    *,
    title: str,
    unit: str,
    vmin: float,
    vmax: float,
    cmap: str | ColourMap = "viridis",
    size_px: int = 360,
    flags: Mapping[int, str] | None = None,
    value_format: str = "{:.0f}",
) -> npt.NDArray[np.uint8]:
    """Render per-segment values as an AHA 16-segment bullseye with a colour bar.

    Parameters
    ----------
    values
        AHA segment number (1-16) to value; missing segments and ``None`` or NaN values are
        drawn hatched grey with a dash.
    title
        Text above the plot.
    unit
        Unit shown above the colour bar (e.g. ``"ms"``, ``"%"``).
    vmin, vmax
        Values mapped to the ends of the colour map (values outside are clipped).
    cmap
        A name in :data:`COLOUR_MAPS` or a function from [0, 1] to uint8 RGB.
    size_px
        Width and height of the image in pixels (at least 160).
    flags
        Optional short marker per segment (e.g. ``"!"`` for a QC warning), written under
        the value and outlined in amber.
    value_format
        :meth:`str.format` pattern of the values.

    Returns
    -------
    numpy.ndarray
        uint8 RGB image of shape (size_px, size_px, 3).

    Raises
    ------
    ValueError
        For an unknown colour map, ``vmax <= vmin``, a too small size or a segment number
        outside 1-16.
    """
    if isinstance(cmap, str):
        try:
            colour_map = COLOUR_MAPS[cmap]
        except KeyError as exc:
            raise ValueError(
                f"Unknown colour map {cmap!r}; expected one of {', '.join(COLOUR_MAPS)}"
            ) from exc
    else:
        colour_map = cmap
    if not vmax > vmin:
        raise ValueError(f"vmax ({vmax}) must exceed vmin ({vmin})")
    if size_px < 160:
        raise ValueError(f"A bullseye needs at least 160 pixels, got {size_px}")
    for number in (*values, *(flags or {})):
        _segment_geometry(int(number))
    flags = flags or {}

    title_size = max(12, round(size_px * 0.05))
    label_size = max(9, round(size_px * 0.033))
    number_size = max(8, round(size_px * 0.027))
    margin = max(6, round(size_px * 0.025))
    bar_width = max(10, round(size_px * 0.045))
    bar_text = _font(label_size).getlength(
        max(_format(vmin, value_format), _format(vmax, value_format), unit, key=len)
    )
    top = margin + round(title_size * 1.4)
    plot_w = size_px - 3 * margin - bar_width - round(bar_text) - 6
    diameter = min(plot_w, size_px - top - margin)
    radius = diameter / 2.0
    origin = (margin, top + (size_px - top - margin - diameter) // 2)

    fills: dict[int, tuple[int, int, int] | None] = {}
    for number in range(1, 17):
        value = values.get(number)
        if value is None or not math.isfinite(float(value)):
            fills[number] = None
        else:
            x = (float(value) - vmin) / (vmax - vmin)
            rgb = colour_map(np.asarray([x]))[0]
            fills[number] = (int(rgb[0]), int(rgb[1]), int(rgb[2]))

    # Segment colours, supersampled for smooth edges.
    big = diameter * _SUPERSAMPLE
    raster = _segment_raster(big, big / 2.0)
    palette = np.zeros((17, 3), dtype=np.uint8)
    palette[0] = BACKGROUND
    for number, fill in fills.items():
        palette[number] = fill if fill is not None else MISSING_FILL
    disc = palette[raster]
    yy, xx = np.mgrid[0:big, 0:big]
    hatch = ((xx + yy) // _SUPERSAMPLE) % 7 < 2
    missing = np.isin(raster, [n for n, f in fills.items() if f is None])
    disc[missing & hatch] = MISSING_HATCH
    disc_image = Image.fromarray(disc).resize((diameter, diameter), Image.Resampling.BOX)

    image = Image.new("RGB", (size_px, size_px), BACKGROUND)
    image.paste(disc_image, origin)
    draw = ImageDraw.Draw(image)
    cx, cy = origin[0] + radius, origin[1] + radius
    line = max(1, round(size_px / 180))
    for edge in RING_EDGES[1:]:
        r = radius * edge
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=BORDER, width=line)
    for k in range(6):
        a = math.radians(60.0 + 60.0 * k)
        r0 = radius * RING_EDGES[1]
        draw.line(
            [(cx + r0 * math.cos(a), cy - r0 * math.sin(a)),
             (cx + radius * math.cos(a), cy - radius * math.sin(a))],
            fill=BORDER, width=line,
        )
    for k in range(4):
        a = math.radians(45.0 + 90.0 * k)
        r1 = radius * RING_EDGES[1]
        draw.line([(cx, cy), (cx + r1 * math.cos(a), cy - r1 * math.sin(a))],
                  fill=BORDER, width=line)

    value_font = _font(label_size, bold=True)
    number_font = _font(number_size)
    for number in range(1, 17):
        inner, outer, centre_deg, half = _segment_geometry(number)
        r_mid = radius * (0.5 * (inner + outer) if inner > 0 else 0.55 * outer)
        a = math.radians(centre_deg)
        tx, ty = cx + r_mid * math.cos(a), cy - r_mid * math.sin(a)
        fill = fills[number]
        colour = _text_colour(fill if fill is not None else MISSING_FILL)
        value = values.get(number)
        text = MISSING_TEXT if fill is None or value is None else _format(value, value_format)
        flag = flags.get(number)
        lines = [(str(number), number_font), (text, value_font)]
        if flag:
            lines.append((flag, value_font))
        heights = [f.size if isinstance(f, ImageFont.FreeTypeFont) else 10 for _, f in lines]
        total = sum(heights) + 2 * (len(lines) - 1)
        y = ty - total / 2.0
        for index, ((string, typeface), height) in enumerate(
            zip(lines, heights, strict=True)
        ):
            ink = FLAG_COLOUR if index == 2 else colour
            draw.text((tx, y + height / 2.0), string, fill=ink, font=typeface, anchor="mm")
            y += height + 2
        if flag:
            start, end = -(centre_deg + half), -(centre_deg - half)
            r_out = radius * outer - line
            draw.arc([cx - r_out, cy - r_out, cx + r_out, cy + r_out], start, end,
                     fill=FLAG_COLOUR, width=max(2, line * 2))

    title_font = _font(title_size, bold=True)
    draw.text((margin, margin), title, fill=TEXT, font=title_font)

    # Colour bar.
    bar_x = origin[0] + diameter + 2 * margin
    bar_top = origin[1] + label_size + 6
    bar_bottom = origin[1] + diameter - label_size // 2
    height = max(bar_bottom - bar_top, 10)
    ramp = colour_map(np.linspace(1.0, 0.0, height))
    bar = np.repeat(ramp[:, None, :], bar_width, axis=1)
    image.paste(Image.fromarray(bar), (bar_x, bar_top))
    draw.rectangle([bar_x - 1, bar_top - 1, bar_x + bar_width, bar_top + height],
                   outline=MUTED)
    label_font = _font(label_size)
    draw.text((bar_x, bar_top - 4), unit, fill=TEXT, font=label_font, anchor="ld")
    draw.text((bar_x + bar_width + 4, bar_top), _format(vmax, value_format), fill=TEXT,
              font=label_font, anchor="lm")
    draw.text((bar_x + bar_width + 4, bar_top + height), _format(vmin, value_format),
              fill=TEXT, font=label_font, anchor="lm")
    return np.asarray(image, dtype=np.uint8).copy()
