"""Durable files: atomic writes that survive a crash at any instant."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_UID_RE = re.compile(r"^[0-9.]{1,64}$")


def safe_uid(uid: str) -> str:
    """A UID usable as a file name; non-conforming UIDs are rejected.

    Raises
    ------
    ValueError
        When ``uid`` is not made of digits and dots (at most 64 characters).
    """
    uid = uid.strip().rstrip("\x00")
    if not _UID_RE.match(uid) or ".." in uid or uid.startswith("."):
        raise ValueError(f"not a valid DICOM UID: {uid!r}")
    return uid


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (after a rename) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees either nothing or all of it.

    The bytes go to a temporary file in the same folder, are fsynced, and the file is renamed
    over ``path``; the folder is fsynced so the rename itself survives power loss.

    Raises
    ------
    OSError
        On any failure (e.g. ``ENOSPC``); no partial file is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def make_dirs_durable(directory: Path) -> None:
    """Create ``directory`` and its missing parents so that they survive power loss.

    Each folder created here has the entry naming it flushed (fsync of its parent, after
    the folder is made); folders that already exist cost one ``stat``.
    """
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # made by another association meanwhile
            continue
        fsync_dir(folder.parent)


def write_new_or_replace(path: Path, data: bytes) -> None:
    """Durably write ``data`` at ``path``: directly if the file is new, atomically if not.

    A new file is created with ``O_EXCL`` under its final name and fsynced: one journal
    commit, as Orthanc's storage area does with ``SyncStorageArea`` (its default; Orthanc
    never fsyncs a folder).  The folder is not fsynced for a new file in a folder that
    already exists: on a journalling file system the file's fsync commits the journal
    transaction that holds its folder entry (ext4 and XFS commit transactions in order; ext4
    without a journal syncs the parent of a new file itself, Linux commit 14ece1028b3e,
    "ext4: Make fsync sync new parent directories in no-journal mode").  Folders created for
    the file are flushed by :func:`make_dirs_durable`.  A crash mid-write can leave a
    partial file there, but nothing refers to it: the catalog records a path only after
    this returns, and a later write of the same path goes through :func:`write_atomic`.
    An existing file (a re-sent instance) is replaced atomically (temporary file, rename,
    folder fsync), so the acknowledged version stays intact until the new one is complete.
    """
    make_dirs_durable(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        write_atomic(path, data)
        return
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


def instance_path(spool_dir: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """Where a received instance is stored."""
    return spool_dir / safe_uid(study_uid) / safe_uid(series_uid) / f"{safe_uid(sop_uid)}.dcm"


def free_space_mb(path: Path) -> float:
    """Free space on the file system holding ``path``, in MiB."""
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free / (1024 * 1024)


class FreeSpaceGauge:
    """Free space of the file system holding a folder, for a check on every write.

    The file system is asked at most every ``refresh_s`` seconds; in between, the bytes
    written through :meth:`consumed` are subtracted from the last reading, so the figure
    never overstates what this process left free (other writers are seen at the next
    reading).  Thread-safe.

    Parameters
    ----------
    path
        A folder on the file system (created if missing).
    refresh_s
        Longest time between two readings.
    """

    def __init__(self, path: Path, refresh_s: float = 1.0) -> None:
        self._path = path
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._free_bytes = 0.0

    def free_mb(self) -> float:
        """Free space in MiB (a fresh reading when the last is older than ``refresh_s``)."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= self._refresh_s:
                self._read()
            return self._free_bytes / (1024 * 1024)

    def below(self, limit_mb: float) -> bool:
        """Whether the free space is below ``limit_mb``, judged on a fresh reading.

        The last reading (less what was written since) answers when it is above the limit;
        a refusal is never decided on a reading older than this call.
        """
        if self.free_mb() >= limit_mb:
            return False
        with self._lock:
            self._read()
            return self._free_bytes / (1024 * 1024) < limit_mb

    def _read(self) -> None:
        self._free_bytes = free_space_mb(self._path) * 1024 * 1024
        self._read_at = time.monotonic()

    def consumed(self, size_bytes: int) -> None:
        """Account for ``size_bytes`` just written to the file system."""
        with self._lock:
            self._free_bytes -= size_bytes
