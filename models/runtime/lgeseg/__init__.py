"""Trained LGE segmenters at run time (myocardium, blood pools, scar).

:mod:`models.runtime.lgeseg.segmenter` (the one-stage U-Net,
:func:`~models.runtime.lgeseg.segmenter.default_segmenter`),
:mod:`models.runtime.lgeseg.two_stage` (localiser + heart-crop segmenter),
:mod:`models.runtime.lgeseg.cascade` (the default: one-stage when sure, else two-stage),
:mod:`models.runtime.lgeseg.fusion_segmenter` (LGE + cine), with
:mod:`models.runtime.lgeseg.stack_locate` and :mod:`models.runtime.lgeseg.site_weights`.
All implement :class:`plugins.lge.segmenter.LgeSegmenter`.  Training is
:mod:`models.training.lgeseg`, evaluation :mod:`models.evaluation.lgeseg`.
"""
