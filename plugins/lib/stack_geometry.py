"""Where the slices of a parallel stack lie relative to each other, in pixels.

The slices of a short-axis stack share one orientation but each may have its own field of
view: :func:`in_plane_offsets` places each slice's pixel grid in the first slice's (row,
column) axes, from the frames' ImagePositionPatient, ImageOrientationPatient and
PixelSpacing.  The LGE analysis gives these offsets to a segmenter that localises the heart
per stack (``segment_stack``), so that a shifted field of view does not look like a moving
heart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["in_plane_offsets"]


def in_plane_offsets(
    positions: Sequence[Sequence[float]],
    orientations: Sequence[Sequence[float]],
    spacings: Sequence[tuple[float, float]],
) -> list[tuple[float, float]]:
    """Where each slice's first pixel lies in the first slice's (row, column) pixel axes.

    A pixel (r, c) of slice ``i`` is at (r, c) + offset ``i`` in the common frame (rotation
    between slices, which a short-axis stack does not have, is ignored).

    Parameters
    ----------
    positions
        ImagePositionPatient of each slice (mm).
    orientations
        ImageOrientationPatient of each slice (row direction cosines, then column).
    spacings
        PixelSpacing of each slice: (row spacing, column spacing) in mm.
    """
    if not positions:
        return []
    first = np.asarray(positions[0], dtype=np.float64)
    cosines = np.asarray(orientations[0], dtype=np.float64)
    along_row, along_column = cosines[:3], cosines[3:]
    row_mm, column_mm = spacings[0]
    offsets = []
    for position in positions:
        delta = np.asarray(position, dtype=np.float64) - first
        # Columns advance along the row direction, rows along the column direction.
        offsets.append((float(delta @ along_column) / row_mm,
                        float(delta @ along_row) / column_mm))
    return offsets
