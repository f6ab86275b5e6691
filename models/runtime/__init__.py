"""Runtime inference of the trained networks: what the analyses load at run time.

Nothing here imports :mod:`models.training`, :mod:`models.evaluation` or
:mod:`models.phantoms` (``tests/models/test_lifecycles.py`` checks it): the U-Net
(:mod:`models.runtime.unet`), the shared grid, weight-loading and post-processing pieces
(:mod:`models.runtime.segmentation`), and the segmenters of :mod:`models.runtime.t1seg` and
:mod:`models.runtime.lgeseg`.
"""
