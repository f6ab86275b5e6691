"""Libraries the analyses share; none of them is an analysis, and none imports one.

:mod:`plugins.lib.cardiac`
    The AHA 16-segment model: geometry, per-segment regions and the bullseye plot.
:mod:`plugins.lib.radiomics`
    T1-map radiomic features, applying a rad-score model, the published LVRR models.
:mod:`plugins.lib.codes`
    The coded concepts the analyses report and the writers put into SEG and SR.

The analyses (``plugins.t1map``, ``plugins.lge``, ...) import these; these import only
:mod:`plugins.api` and each other.
"""
