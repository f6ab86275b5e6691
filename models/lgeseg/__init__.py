"""Trained 2-D U-Net segmentation of short-axis LGE images (myocardium, blood pools, scar).

:mod:`models.lgeseg.data` makes training samples from the LGE phantoms,
:mod:`models.lgeseg.train` trains the network (``python -m models.lgeseg.train``),
:mod:`models.lgeseg.evaluate` reports accuracy on held-out phantom stacks
(``python -m models.lgeseg.evaluate``) and :mod:`models.lgeseg.segmenter` provides
:class:`~models.lgeseg.segmenter.UNetLgeSegmenter`, which implements
:class:`plugins.lge.segmenter.LgeSegmenter`, and
:func:`~models.lgeseg.segmenter.default_segmenter`.
"""
