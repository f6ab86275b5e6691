"""Sample caches on disk shared by the network trainers, and the generator fingerprint.

Phantom rendering is much slower than a training step, so every trainer renders its samples
once into chunk files (``{prefix}_XXXX.npz``: one array per sample field and a ``meta`` table
of one row per sample) and trains from them.  :func:`generator_fingerprint` identifies the
phantom generator version the samples came from; it goes into the provenance record.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = ["PHANTOMS_DIR", "Sample", "cached_items", "file_fingerprint", "generator_fingerprint",
           "read_chunks", "write_chunks"]

PHANTOMS_DIR: Final = Path(__file__).resolve().parents[1] / "phantoms"
"""Sources of :mod:`models.phantoms`."""

Sample = tuple[dict[str, npt.NDArray[np.generic]], tuple[float, ...]]
"""One cached sample: its arrays by field name and its row of the ``meta`` table."""
T = TypeVar("T")


def generator_fingerprint(files: Sequence[str], root: Path = PHANTOMS_DIR) -> str:
    """SHA-256 over the names and contents of generator source files (the generator version)."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


def file_fingerprint(name: str, root: Path = PHANTOMS_DIR) -> str:
    """SHA-256 of the contents of one generator source file."""
    return hashlib.sha256((root / name).read_bytes()).hexdigest()


def write_chunks(
    directory: Path,
    n_subjects: int,
    subjects_per_chunk: int,
    render: Callable[[int], Iterable[Sample]],
    *,
    prefix: str = "chunk",
    what: str = "cache",
    chunks: Sequence[int] | None = None,
) -> None:
    """Render subjects ``0 .. n_subjects - 1`` into chunk files (existing chunks are kept).

    Parameters
    ----------
    directory
        Output directory; one ``{prefix}_XXXX.npz`` per ``subjects_per_chunk`` subjects.
    n_subjects
        Number of subjects.
    subjects_per_chunk
        Subjects per chunk file.
    render
        The samples of subject ``k`` (its index, not its seed).
    prefix
        File name prefix of the chunks.
    what
        Name of the cache in the log.
    chunks
        Only these chunk numbers (e.g. to render in two processes); all if ``None``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    n_chunks = math.ceil(n_subjects / subjects_per_chunk)
    for chunk in range(n_chunks) if chunks is None else chunks:
        path = directory / f"{prefix}_{chunk:04d}.npz"
        if path.exists():
            continue
        started = time.perf_counter()
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        meta: list[tuple[float, ...]] = []
        first = chunk * subjects_per_chunk
        for k in range(first, min(first + subjects_per_chunk, n_subjects)):
            for fields, row in render(k):
                i = len(meta)
                for name, values in fields.items():
                    arrays[f"{name}_{i}"] = values
                meta.append(row)
        arrays["meta"] = np.asarray(meta, dtype=np.float64)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        tmp.rename(path)
        logger.info("%s chunk %d/%d: %d samples in %.0f s", what, chunk + 1, n_chunks,
                    len(meta), time.perf_counter() - started)


def read_chunks(
    directory: Path,
    make: Callable[[Mapping[str, Any], int, npt.NDArray[np.float64]], T],
    *,
    prefix: str = "chunk",
    max_chunks: int | None = None,
    max_items: int | None = None,
) -> list[T]:
    """The samples of the chunk files in ``directory`` (sorted by chunk name).

    Parameters
    ----------
    directory
        Cache directory.
    make
        Item from the chunk's arrays, the sample index and its ``meta`` row.
    prefix
        File name prefix of the chunks.
    max_chunks, max_items
        Read at most this many chunks or items; all if ``None``.
    """
    paths = sorted(directory.glob(f"{prefix}_[0-9][0-9][0-9][0-9].npz"))
    if max_chunks is not None:
        paths = paths[:max_chunks]
    items: list[T] = []
    for path in paths:
        with np.load(path) as data:
            for i, row in enumerate(data["meta"]):
                if max_items is not None and len(items) >= max_items:
                    return items
                items.append(make(data, i, row))
    return items


def cached_items(
    directory: Path,
    n_subjects: int,
    subjects_per_chunk: int,
    generate: Callable[[Path, int], None],
    load: Callable[[Path, int], list[T]],
    samples_per_subject: int | None = None,
) -> list[T]:
    """The training items of ``n_subjects`` subjects, rendered into ``directory`` if absent.

    Parameters
    ----------
    directory
        Cache directory.
    n_subjects, subjects_per_chunk
        Subjects to train on and subjects per chunk file.
    generate
        The cache writer (``generate(directory, n_subjects)``).
    load
        The cache reader (``load(directory, n_chunks)``).
    samples_per_subject
        If given, the number of items is checked against it.

    Raises
    ------
    RuntimeError
        If the cache holds another number of items than expected (a stale cache).
    """
    generate(directory, n_subjects)
    items = load(directory, math.ceil(n_subjects / subjects_per_chunk))
    if samples_per_subject is not None and len(items) != n_subjects * samples_per_subject:
        raise RuntimeError(f"The cache {directory} holds {len(items)} samples, expected "
                           f"{n_subjects * samples_per_subject}")
    return items
