"""Training of the T1-map U-Net: phantom data and augmentation (:mod:`.data`), four-chamber
views (:mod:`.long_axis`) and the trainer (``python -m models.training.t1seg.train``)."""
