"""Plugin options with the segmentation networks the node gives each analysis.

A plugin builds no network: the node adds them to its options (:mod:`node.analyses`,
``networks`` of each descriptor).  Tests that call a plugin's ``analyse`` with the trained
networks get them the node's way from :func:`node_options`; tests that check the analysis
alone give their own segmenter (known labels, the classical segmenter).
"""

from __future__ import annotations

from typing import Any

from node.analyses import with_networks


def node_options(analysis: str, **options: Any) -> dict[str, Any]:
    """``options`` with the networks of ``analysis`` added as the node adds them."""
    return with_networks(analysis, options)
