"""Training of the networks and site models (never imported at run time).

The shared framework: :mod:`models.training.cache` (chunked sample cache on disk and the
generator fingerprint), :mod:`models.training.augment` (random warps, bias fields, batches),
:mod:`models.training.loop` (losses, schedule, the training loop with checkpoint selection
on validation and a wall-clock stop), :mod:`models.training.record` (seeding, the
provenance record written next to the weights) and :mod:`models.training.cli` (the common
command-line options).  Per network: :mod:`models.training.t1seg`,
:mod:`models.training.lgeseg`; site models: :mod:`models.training.classify`,
:mod:`models.training.radscore`.
"""
