"""Audit trail of who sent what and where results went, and UID hashing for the ordinary log.

The audit log is an append-only file of JSON lines (``<data_dir>/logs/audit.jsonl``, mode
0600): associations accepted and refused (calling AE and address), instances refused, series
received (study and series UIDs, instance count, calling AEs), and every output delivered
(destination, SOP Instance UID, kind, input series).  It keeps full UIDs: it is the record an
administrator reconciles with PACS.  No patient names, IDs or birth dates are written to it or
to the ordinary log.

The ordinary log may hash UIDs (``[node] log_uids = "hashed"``): every DICOM UID in a log line
is replaced by ``uid:`` and the first 12 hex digits of its SHA-256, stable across lines, so a
support engineer can follow one series without seeing the identifiers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

__all__ = ["AuditLog", "UidHashingFilter", "ValueWithholdingFilter", "hash_uid",
           "withhold_values", "withhold_values_in_logs"]

QUOTED: Final = re.compile(r"'(?:[^'\n]|'(?![\s,;:)\]}]|$))*'|\"[^\"\n]*\"")
"""A quoted value inside a message (how pydicom and repr() show attribute values); a single
quote inside a value (``'O'Brien'``) does not end it unless a delimiter follows."""
WITHHELD: Final = "'…'"


def withhold_values(text: str) -> str:
    """``text`` with every quoted value replaced by ``'…'``.

    Attribute values are quoted where they appear in library messages and routing reasons
    (``Invalid value for VR PN: 'Doe^John'``); free text such as Image Comments or a
    description can hold patient information, so no quoted value reaches a log.
    """
    return QUOTED.sub(WITHHELD, text)


class ValueWithholdingFilter(logging.Filter):
    """Applies :func:`withhold_values` to a record's message (attach to a logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        withheld = withhold_values(message)
        if withheld != message:
            record.msg, record.args = withheld, None
        return True


def withhold_values_in_logs() -> None:
    """Keep quoted attribute values out of every log line from now on.

    The filter goes on the handlers of the root logger (every line the node writes) and on
    the loggers known to quote values: ``pydicom`` (an invalid value, quoted) and
    ``node.routing.router`` (which logs routing explanations with their values already
    withheld, :attr:`node.routing.RouteDecision.explanation_withheld`; the filter stays as a
    second guard).  pydicom also issues each
    invalid value as a :class:`UserWarning` printed to stderr; those are dropped (its
    logger line says the same).
    """
    targets: list[logging.Filterer] = [logging.getLogger("pydicom"),
                                       logging.getLogger("node.routing.router")]
    targets += logging.getLogger().handlers
    for target in targets:
        if not any(isinstance(f, ValueWithholdingFilter) for f in target.filters):
            target.addFilter(ValueWithholdingFilter())
    warnings.filterwarnings("ignore", message=r"Invalid value for VR", category=UserWarning)


UID_PATTERN: Final = re.compile(r"(?<![\d.])(?:[12]\.\d+(?:\.\d+){3,})(?![\d.])")
"""A DICOM UID (root 1.* or 2.*, at least five components) inside free text."""


def hash_uid(uid: str) -> str:
    """A short stable pseudonym of a UID."""
    return "uid:" + hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:12]


class UidHashingFilter(logging.Filter):
    """Replaces every DICOM UID of a log record's message by :func:`hash_uid`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hashed = UID_PATTERN.sub(lambda m: hash_uid(m.group(0)), message)
        if hashed != message:
            record.msg, record.args = hashed, None
        return True


class AuditLog:
    """Append-only JSON-lines audit file, safe for concurrent threads.

    Parameters
    ----------
    path
        The file; created with mode 0600 (its folder too).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def record(self, event: str, **fields: Any) -> None:
        """Append one event; failures are logged, never raised (auditing must not stop care)."""
        line = json.dumps({"at": round(time.time(), 3), "event": event, **fields},
                          default=str, sort_keys=True)
        try:
            with self._lock:
                self._file.write(line + "\n")
                self._file.flush()
        except (OSError, ValueError) as exc:
            logger.error("audit log %s not written: %s", self.path, exc)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()
