"""Trained 2-D U-Net segmentation of native short-axis T1 maps.

:mod:`models.t1seg.data` makes training samples from the T1-map phantoms,
:mod:`models.t1seg.train` trains the network (``python -m models.t1seg.train``),
:mod:`models.t1seg.evaluate` reports accuracy on held-out phantoms
(``python -m models.t1seg.evaluate``) and :mod:`models.t1seg.segmenter` provides
:class:`~models.t1seg.segmenter.UNetT1Segmenter`, which implements
:class:`plugins.t1map.segmenter.Segmenter`.
"""
