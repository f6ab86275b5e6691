"""Spool writes: which folders are flushed, and the free-space figure between readings."""

from __future__ import annotations

from pathlib import Path

import pytest

import node.catalog.spool as spool
from node.catalog.spool import FreeSpaceGauge, make_dirs_durable, write_new_or_replace


@pytest.fixture()
def flushed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Folders passed to fsync_dir (which still runs)."""
    seen: list[Path] = []
    original = spool.fsync_dir

    def record(directory: Path) -> None:
        seen.append(Path(directory))
        original(directory)

    monkeypatch.setattr(spool, "fsync_dir", record)
    return seen


def test_new_folders_have_their_entries_flushed_once(tmp_path: Path, flushed: list[Path]) -> None:
    target = tmp_path / "study" / "series"
    make_dirs_durable(target)
    assert target.is_dir()
    assert flushed == [tmp_path, tmp_path / "study"]
    flushed.clear()
    make_dirs_durable(target)  # already there: nothing to flush
    assert flushed == []


def test_new_file_in_existing_folder_flushes_no_folder(tmp_path: Path, flushed: list[Path]) -> None:
    first = tmp_path / "study" / "series" / "1.dcm"
    write_new_or_replace(first, b"a" * 1000)
    assert flushed == [tmp_path, tmp_path / "study"]  # the two folders made for it
    flushed.clear()
    second = first.with_name("2.dcm")
    write_new_or_replace(second, b"b" * 70000)
    assert second.read_bytes() == b"b" * 70000
    assert flushed == []


def test_replacing_a_file_is_atomic_and_flushes_its_folder(
    tmp_path: Path, flushed: list[Path]
) -> None:
    path = tmp_path / "series" / "1.dcm"
    write_new_or_replace(path, b"old")
    flushed.clear()
    write_new_or_replace(path, b"new content")
    assert path.read_bytes() == b"new content"
    assert flushed == [path.parent]  # the rename over the old file
    assert [p.name for p in path.parent.iterdir()] == ["1.dcm"]  # no temporary file left


def test_free_space_counts_what_was_written_until_the_next_reading(tmp_path: Path) -> None:
    gauge = FreeSpaceGauge(tmp_path, refresh_s=3600)
    first = gauge.free_mb()
    gauge.consumed(100 * 1024 * 1024)
    assert gauge.free_mb() == pytest.approx(first - 100)
    fresh = FreeSpaceGauge(tmp_path, refresh_s=0)
    fresh.free_mb()
    fresh.consumed(10**15)  # far more than any disk: a fresh reading forgets it
    assert fresh.free_mb() > 0


def test_a_refusal_is_decided_on_a_fresh_reading(tmp_path: Path) -> None:
    gauge = FreeSpaceGauge(tmp_path, refresh_s=3600)
    gauge.free_mb()
    gauge.consumed(10**15)  # the last reading, less what was written, says the disk is full
    assert gauge.free_mb() < 0
    assert not gauge.below(1)  # the file system says otherwise: not refused
    assert gauge.free_mb() > 0
