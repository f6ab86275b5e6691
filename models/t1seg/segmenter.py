"""U-Net segmenter of native T1 maps (placeholder header, replaced below)."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

GRID_SIZE: Final = 160
GRID_SPACING_MM: Final = 1.5
T1_SCALE_MS: Final = 2000.0
N_CLASSES: Final = 4


def grid_affine(
    shape: tuple[int, ...],
    pixel_spacing: tuple[float, float],
    grid_size: int = GRID_SIZE,
    grid_spacing_mm: float = GRID_SPACING_MM,
    angle_rad: float = 0.0,
    flip: bool = False,
    shift_mm: tuple[float, float] = (0.0, 0.0),
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rows, cols = int(shape[0]), int(shape[1])
    centre = np.array([(rows - 1) / 2.0, (cols - 1) / 2.0])
    grid_centre = np.full(2, (grid_size - 1) / 2.0)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    rotation = np.array([[c, -s], [s, c]])
    flip_matrix = np.diag([1.0, -1.0]) if flip else np.eye(2)
    inv_spacing = np.diag([1.0 / pixel_spacing[0], 1.0 / pixel_spacing[1]])
    matrix = inv_spacing @ rotation @ flip_matrix * grid_spacing_mm
    offset = centre + inv_spacing @ np.asarray(shift_mm, dtype=np.float64) - matrix @ grid_centre
    return matrix, offset
