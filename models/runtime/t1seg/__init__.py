"""Trained 2-D U-Net segmentation of native short-axis T1 maps at run time.

:mod:`models.runtime.t1seg.segmenter` provides
:class:`~models.runtime.t1seg.segmenter.UNetT1Segmenter`, which implements
:class:`plugins.t1map.segmenter.Segmenter`.  Training is :mod:`models.training.t1seg`,
evaluation :mod:`models.evaluation.t1seg`.
"""
