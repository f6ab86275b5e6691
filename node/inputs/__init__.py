"""What an analysis reads: its series in physical values, companion series, clinical covariates.

:mod:`.loader` turns the stored instances of a series into a :class:`plugins.api.LoadedSeries`
(:mod:`.selection` chooses the images of each slice position); :mod:`.companions` finds the other
series of a study that an analysis needs, :mod:`.covariates` the clinical data of a study.  It
may import ``vendor``, ``catalog`` and ``plugins``; ``analyses`` and ``jobs`` build on it.
"""
