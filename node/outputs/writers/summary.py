"""Summary image writer: a rendered RGB page (Secondary Capture) for any viewer.

The page shows each analysed slice's map with the contours of every segment and the analysed
core region, that slice's values and QC flags, the series-level values, every QC flag, the
algorithm with its version and weights hash, and the disclaimer.  All text is burned in.

The page's layout is here; its text (fonts, colours, value lines, wrapping) is
:mod:`node.outputs.writers.page_text`'s, its images (slice tiles, display window, bullseye)
:mod:`node.outputs.writers.tiles`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageDraw

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
from node.outputs.writers.page_text import (
    BACKGROUND,
    DISCLAIMER_COLOUR,
    GAP,
    INDENT,
    MARGIN,
    MUTED,
    PANEL,
    SEVERITY_COLOURS,
    SMALL_SIZE,
    TEXT,
    TEXT_SIZE,
    TITLE_SIZE,
    Line,
    draw_lines,
    font,
    format_number,
    lines_height,
    measurement_lines,
    readable,
    with_unit,
    wrap_lines,
)
from node.outputs.writers.tiles import (
    crop_box,
    display_window,
    render_segment_bullseye,
    render_tile,
    uncertainty_caption,
)
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
from plugins.lib.uncertainty import UNCERTAIN_ENTROPY_BITS

# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------


def _flag_line(flag: QCFlag, result: AnalysisResult, size: int = TEXT_SIZE) -> Line:
    where = ""
    if flag.frame_index is not None:
        where = f"{frame_description(result, flag.frame_index)}: "
    return Line(
        f"{flag.severity.value.upper()}  {where}{flag.message} ({flag.code})",
        SEVERITY_COLOURS[flag.severity],
        size,
    )


def _region_lines(
    measurements: Sequence[Measurement], definitions: Mapping[Label, SegmentDefinition]
) -> list[Line]:
    lines = []
    regions = list(dict.fromkeys(m.region for m in measurements))
    for region in regions:
        definition = definitions.get(region)
        name = definition.name if definition else region.name.replace("_", " ").lower()
        colour = definition.colour_rgb if definition else TEXT
        lines.append(Line(name, readable(colour), bold=True))
        for text in measurement_lines([m for m in measurements if m.region == region]):
            lines.append(Line(text, indent=INDENT))
    return lines


def _finding_lines(result: AnalysisResult) -> list[Line]:
    """The study-level findings (e.g. the infarct call): summary, then evidence, small."""
    lines = []
    for finding in result.findings:
        lines.append(Line(finding.summary, TEXT, TEXT_SIZE, True))
        lines += [Line(text, MUTED, SMALL_SIZE, indent=INDENT) for text in finding.evidence]
        lines += [Line(text, indent=INDENT) for text in measurement_lines(finding.measurements)]
    return lines


def _explanation_lines(result: AnalysisResult) -> list[Line]:
    """"Why this number": each model-based value's largest contributions."""
    items = model_explanations(result)
    if not items:
        return []
    return [Line("Why this number", TEXT, TEXT_SIZE, True),
            *(Line(item.text(), TEXT, SMALL_SIZE, indent=INDENT) for item in items)]


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
        lines = [Line(f"{s.level}  (frame {s.frame_index + 1})", TEXT, TEXT_SIZE + 2, True)]
        lines += _region_lines(s.measurements, definitions)
        if (uncertain := uncertainty_caption(s)) is not None:
            lines.append(Line(uncertain, MUTED, SMALL_SIZE))
        lines += [
            _flag_line(f, result, SMALL_SIZE)
            for f in result.qc_flags
            if f.frame_index == s.frame_index
        ]
        captions.append(wrap_lines(lines, text_width))
    rows_of_slices = [slices[i : i + columns] for i in range(0, len(slices), columns)]
    caption_rows = [captions[i : i + columns] for i in range(0, len(captions), columns)]

    name = display_name(result)
    provenance = result.provenance
    title = Line(f"cmr-node {name} analysis", TEXT, TITLE_SIZE, True)
    subtitle_parts = [str(series.header.get("SeriesDescription") or "")]
    if series.field_strength_t is not None:
        subtitle_parts.append(f"{series.field_strength_t:g} T")
    subtitle_parts.append(f"{len(result.slices)} of {len(series.frames)} frames analysed")
    subtitle = Line("  ·  ".join(p for p in subtitle_parts if p), MUTED)
    header = [title, subtitle, Line(SHORT_DISCLAIMER, DISCLAIMER_COLOUR, SMALL_SIZE, True)]
    if result.has_failure:
        header.append(
            Line(
                "QC FAILURE: values flagged below should not be used",
                SEVERITY_COLOURS[Severity.FAILURE],
                TEXT_SIZE,
                True,
            )
        )
    if not slices:
        header.append(Line("No slice was analysed.", SEVERITY_COLOURS[Severity.WARNING]))

    summary_lines = [Line("All slices", TEXT, TEXT_SIZE + 2, True)]
    whole_regions = [m for m in result.measurements if m.site is None]  # sites: bullseye
    summary_lines += _region_lines(whole_regions, definitions) or [
        Line("no series-level values", MUTED)
    ]
    summary_lines += _finding_lines(result) + _explanation_lines(result)
    qc_lines = [Line("Quality control", TEXT, TEXT_SIZE + 2, True)]
    qc_lines += [_flag_line(f, result) for f in result.qc_flags] or [Line("no flags", MUTED)]
    contoured = [d.name for d in result.segments if d.label in _used(result)]
    legend = []
    if contoured:
        shaded = any(s.analysed_region is not None for s in slices)
        legend.append(
            Line(
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
            Line(
                "Striped shading: pixels where the network was unsure (probability between"
                f" 0.11 and 0.89, entropy >= {UNCERTAIN_ENTROPY_BITS:g} bit); denser = closer"
                " to 0.5.",
                MUTED,
                SMALL_SIZE,
            )
        )
    footer = [
        Line(
            f"Algorithm {provenance.algorithm_name} {provenance.algorithm_version}; "
            f"{weights_text(provenance)}.",
            MUTED,
            SMALL_SIZE,
        ),
        Line(f"Method: {provenance.method}", MUTED, SMALL_SIZE),
        *([Line(f"Reference range: {reference}", TEXT, SMALL_SIZE)]
          if (reference := reference_range_text(result)) else []),
        Line(DISCLAIMER, DISCLAIMER_COLOUR, TEXT_SIZE, True),
    ]
    half = (full_width - GAP) / 2
    summary_lines = wrap_lines(summary_lines, half)
    qc_lines = wrap_lines(qc_lines, half)
    legend = wrap_lines(legend, full_width)
    footer = wrap_lines(footer, full_width)

    bullseye = render_segment_bullseye(result)
    bullseye_height = bullseye.height + GAP if bullseye is not None else 0
    header_height = lines_height(header) + GAP
    tiles_height = sum(tile + 12 + max(lines_height(c) for c in row) + GAP for row in caption_rows)
    panel_height = max(lines_height(summary_lines), lines_height(qc_lines)) + 2 * 16
    height = (
        MARGIN
        + header_height
        + lines_height(legend)
        + 8
        + tiles_height
        + panel_height
        + GAP
        + bullseye_height
        + lines_height(footer)
        + MARGIN
    )
    height += height % 2
    page = Image.new("RGB", (page_width, height), BACKGROUND)
    draw = ImageDraw.Draw(page)

    y = float(MARGIN)
    y = draw_lines(draw, header, MARGIN, y)
    _draw_colour_bar(draw, window, series, page_width - MARGIN - 260, MARGIN + 8, 260)
    y += GAP
    y = draw_lines(draw, legend, MARGIN, y) + 8
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
            draw_lines(draw, caption, x, y + tile + 12)
        y += tile + 12 + max(lines_height(c) for c in caption_row) + GAP
    draw.rounded_rectangle(
        [MARGIN - 8, y - 8, page_width - MARGIN + 8, y + panel_height - 8], radius=8, fill=PANEL
    )
    draw_lines(draw, summary_lines, MARGIN + 8, y + 8)
    draw_lines(draw, qc_lines, MARGIN + half + GAP, y + 8)
    y += panel_height + GAP
    if bullseye is not None:
        page.paste(bullseye, (MARGIN, int(y)))
        y += bullseye_height
    draw_lines(draw, footer, MARGIN, y)
    return page


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
    draw.text((x, y + 20), with_unit(format_number(window[0]), units), fill=MUTED, font=small)
    draw.text(
        (x + width, y + 20),
        with_unit(format_number(window[1]), units),
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
