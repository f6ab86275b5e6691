"""Native T1-map radiomics: features, rad-score models and LV reverse-remodelling prediction.

:mod:`~plugins.lib.radiomics.features`
    The 869 published pyradiomics features of the mid-ventricular T1 map, with IBSI
    preprocessing (resampling, N4, μ ± 3σ clipping, bin width 5).
:mod:`~plugins.lib.radiomics.model`
    Rad-score model files (trained by the site; none is shipped): format, reading, scoring.
:mod:`~plugins.lib.radiomics.lvrr`
    The five published logistic models of LV reverse remodelling.

Training a rad-score model is :mod:`models.training.radscore.train`; the ``cmr-node radiomics``
commands are :mod:`node.cli.radiomics`.  The submodules import pyradiomics and scikit-learn
only when used.
"""
