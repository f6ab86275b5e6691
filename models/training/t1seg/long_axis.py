"""Four-chamber long-axis training data for the T1-map U-Net.

Four-chamber phantom maps (:func:`models.phantoms.long_axis.make_t1map_long_axis`) are
rendered once per subject seed into their own cache (one view per subject, ~1 s each) and
joined to the short-axis cache of :mod:`models.training.t1seg.data` as :class:`CachedSlice` items of
level :data:`~models.phantoms.long_axis.VIEW_4CH`; augmentation and batching are shared.

Seed ranges never overlap the short-axis ones nor each other: training from
:data:`LONG_AXIS_TRAIN_SEED_START`, checkpoint selection from :data:`LONG_AXIS_VAL_SEED_START`,
held-out evaluation from :data:`LONG_AXIS_EVAL_SEED_START`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.phantoms.long_axis import VIEW_4CH, LongAxisSlice, make_t1map_long_axis
from models.training import cache
from models.training.t1seg.data import FIELD_STRENGTHS_T, CachedSlice

logger = logging.getLogger(__name__)

__all__ = [
    "LONG_AXIS_EVAL_SEED_START",
    "LONG_AXIS_GENERATOR_FILES",
    "LONG_AXIS_TRAIN_SEED_START",
    "LONG_AXIS_VAL_SEED_START",
    "generate_long_axis_cache",
    "load_long_axis_cache",
    "long_axis_generator_fingerprint",
    "long_axis_items",
    "phantom_long_axis",
]

LONG_AXIS_TRAIN_SEED_START: Final = 400_000
"""First subject seed of the four-chamber training cache."""
LONG_AXIS_VAL_SEED_START: Final = 840_000
"""First subject seed of the four-chamber checkpoint-selection set."""
LONG_AXIS_EVAL_SEED_START: Final = 940_000
"""First subject seed of the held-out four-chamber evaluation set."""
CHUNK_VIEWS: Final = 50
"""Views per cache file."""


LONG_AXIS_GENERATOR_FILES: Final = ("long_axis.py", "long_axis_rendering.py")
"""Sources of ``models.phantoms`` that add the four-chamber view to the short-axis generator."""


def long_axis_generator_fingerprint() -> str:
    """SHA-256 of the four-chamber generator's sources (on top of the short-axis generator's)."""
    return cache.generator_fingerprint(LONG_AXIS_GENERATOR_FILES)


def phantom_long_axis(seed: int) -> LongAxisSlice:
    """The four-chamber phantom map of the subject with this seed.

    The field strength alternates with the seed's parity (even 1.5 T, odd 3 T), as for the
    short-axis subjects; everything else is drawn from the seed.
    """
    rng = np.random.default_rng(seed)
    return make_t1map_long_axis(rng, field_strength_t=FIELD_STRENGTHS_T[seed % 2])


def long_axis_items(seeds: range) -> list[CachedSlice]:
    """Four-chamber phantoms of ``seeds`` as training items (rendered now, not cached)."""
    items = []
    for seed in seeds:
        view = phantom_long_axis(seed)
        items.append(CachedSlice(view.t1_ms, view.labels, view.pixel_spacing,
                                 view.field_strength_t, VIEW_4CH))
    return items


def generate_long_axis_cache(directory: Path, n_views: int,
                             seed_start: int = LONG_AXIS_TRAIN_SEED_START) -> None:
    """Render ``n_views`` four-chamber phantoms into ``directory`` (existing chunks are kept).

    Parameters
    ----------
    directory
        Output directory; one ``la_chunk_XXXX.npz`` per :data:`CHUNK_VIEWS` views.
    n_views
        Number of subjects (one view each).
    seed_start
        Seed of the first subject.
    """
    def render(k: int) -> Iterator[cache.Sample]:
        view = phantom_long_axis(seed_start + k)
        yield ({"t1": view.t1_ms.astype(np.float32), "labels": view.labels.astype(np.uint8)},
               (*view.pixel_spacing, view.field_strength_t))

    cache.write_chunks(directory, n_views, CHUNK_VIEWS, render, prefix="la_chunk",
                       what="4ch cache")


def load_long_axis_cache(directory: Path, max_views: int | None = None) -> list[CachedSlice]:
    """The four-chamber views cached in ``directory`` (at most ``max_views``)."""
    def make(data: Mapping[str, Any], i: int,
             row: npt.NDArray[np.float64]) -> CachedSlice:
        return CachedSlice(data[f"t1_{i}"], data[f"labels_{i}"], (float(row[0]), float(row[1])),
                           float(row[2]), VIEW_4CH)

    return cache.read_chunks(directory, make, prefix="la_chunk", max_items=max_views)


if __name__ == "__main__":
    from models.training.cli import render_cache

    render_cache("Render the four-chamber phantom cache.", generate_long_axis_cache, 750,
                 count="views")
