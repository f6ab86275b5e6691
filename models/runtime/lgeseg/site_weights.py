"""The two-stage LGE segmenter the node's settings select: committed or site weights.

``[analysis.lge] segmenter = "two-stage"`` selects :class:`TwoStageLgeSegmenter`;
``segmenter_weights = "/path/site_segment.pt"`` replaces its segmenter stage by weights
fine-tuned at the site (:mod:`models.training.lgeseg.finetune`).  :func:`verify_weights` is what the
settings check at load; :func:`two_stage_segmenter` loads once per process and weights file.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from models.runtime.lgeseg.two_stage import TwoStageLgeSegmenter, cached_default
from models.runtime.segmentation import ModelUnavailableError, sha256_of

__all__ = ["two_stage_segmenter", "verify_weights"]


def verify_weights(path: Path) -> dict[str, Any]:
    """The provenance record beside ``path`` (same name, ``.json``), if its SHA-256 matches.

    Raises
    ------
    ModelUnavailableError
        If the weights or their record are missing or unreadable, or the file's SHA-256 is
        not the record's ``weights_sha256``.
    """
    record_path = path.with_suffix(".json")
    if not path.is_file():
        raise ModelUnavailableError(f"weights file {path} does not exist")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"provenance record {record_path} is missing or unreadable: {exc}") from exc
    if not isinstance(record, dict):
        raise ModelUnavailableError(f"provenance record {record_path} is not a JSON object")
    actual = sha256_of(path)
    if record.get("weights_sha256") != actual:
        raise ModelUnavailableError(
            f"SHA-256 of {path.name} is {actual}, its provenance record says "
            f"{record.get('weights_sha256')}")
    return record


@functools.lru_cache(maxsize=4)
def two_stage_segmenter(segmenter_weights: str | None = None) -> TwoStageLgeSegmenter:
    """The two-stage segmenter with the committed or the given segmenter weights.

    Raises
    ------
    ModelUnavailableError
        If the weights are missing, altered, or not a 6-class LGE segmenter.
    """
    if not segmenter_weights:
        return cached_default()
    path = Path(segmenter_weights)
    verify_weights(path)
    return TwoStageLgeSegmenter(segmenter=path)
