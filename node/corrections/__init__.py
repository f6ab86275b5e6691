"""Reader corrections of the node's segmentations: intake, agreement, export for fine-tuning.

A SEG that a reader corrected and stored back is recognised and matched (:mod:`.intake`), its
agreement with the node's own segmentation measured (:mod:`.agreement`), and the corrected cases
exported for site fine-tuning (:mod:`.export`; its command is :mod:`node.cli.corrections`).
It may import ``inputs``, ``catalog``, :mod:`node.settings` and ``plugins``.
"""
