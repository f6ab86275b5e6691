"""Text on the rendered summary page: fonts, colours and sizes, numbers with their units,
one line per measured quantity, wrapping, and lines of text drawn on a page."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import ImageDraw, ImageFont

from plugins.api import Measurement, Severity

logger = logging.getLogger(__name__)

FontType = ImageFont.FreeTypeFont | ImageFont.ImageFont

FONT_FILES = ("DejaVuSans.ttf",)
BOLD_FONT_FILES = ("DejaVuSans-Bold.ttf",)

BACKGROUND = (16, 18, 22)
PANEL = (30, 33, 40)
TEXT = (230, 232, 236)
MUTED = (150, 156, 168)
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


def with_unit(text: str, unit: str) -> str:
    """``text`` followed by the printed unit, if it has one."""
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
            parts.append(with_unit(text, unit))
        for m in items:
            if id(m) in used:
                continue
            label = m.derivation.meaning.lower() if m.derivation else ""
            if m.value is None:
                value = f"n/a ({m.reason})" if m.reason else "n/a"
            else:
                value = with_unit(format_number(m.value), unit)
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


@dataclass
class Line:
    """One line of text of a page, with its colour, size, weight and indent."""

    text: str
    colour: tuple[int, int, int] = TEXT
    size: int = TEXT_SIZE
    bold: bool = False
    indent: int = 0


def line_height(line: Line) -> int:
    """Height of a line on the page (pixels)."""
    return round(line.size * 1.35)


def wrap_lines(lines: Sequence[Line], width: float) -> list[Line]:
    """``lines`` wrapped to ``width`` pixels."""
    wrapped = []
    for line in lines:
        typeface = font(line.size, bold=line.bold)
        for part in wrap(line.text, typeface, width - line.indent) or [""]:
            wrapped.append(Line(part, line.colour, line.size, line.bold, line.indent))
    return wrapped


def draw_lines(draw: ImageDraw.ImageDraw, lines: Sequence[Line], x: float, y: float) -> float:
    """Draw ``lines`` from (x, y) down; returns the y below them."""
    for line in lines:
        typeface = font(line.size, bold=line.bold)
        draw.text((x + line.indent, y), line.text, fill=line.colour, font=typeface)
        y += line_height(line)
    return y


def lines_height(lines: Sequence[Line]) -> int:
    """Height of ``lines`` on the page (pixels)."""
    return sum(line_height(line) for line in lines)


def readable(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Return a segment colour, lightened if it would read poorly on the dark background."""
    luminance = 0.2126 * colour[0] + 0.7152 * colour[1] + 0.0722 * colour[2]
    if luminance >= MIN_TEXT_LUMINANCE:
        return colour
    red, green, blue = (round(c + (255 - c) * LIGHTEN_FRACTION) for c in colour)
    return red, green, blue
