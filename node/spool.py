"""Durable files: atomic writes that survive a crash at any instant."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
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


def write_new_or_replace(path: Path, data: bytes) -> None:
    """Durably write ``data`` at ``path``: directly if the file is new, atomically if not.

    A new file is created with ``O_EXCL`` under its final name and fsynced (one journal
    commit instead of two for temp file + rename). A crash mid-write can leave a partial
    file there, but nothing refers to it: the catalog records a path only after this
    returns, and a later write of the same path goes through :func:`write_atomic`.
    An existing file (a re-sent instance) is replaced atomically, so the acknowledged
    version stays intact until the new one is complete.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        write_atomic(path, data)
        return
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    fsync_dir(path.parent)


def instance_path(spool_dir: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """Where a received instance is stored."""
    return spool_dir / safe_uid(study_uid) / safe_uid(series_uid) / f"{safe_uid(sop_uid)}.dcm"


def free_space_mb(path: Path) -> float:
    """Free space on the file system holding ``path``, in MiB."""
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free / (1024 * 1024)
