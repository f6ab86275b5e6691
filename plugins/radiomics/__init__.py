"""Native T1-map radiomics: features, rad-score models and LV reverse-remodelling prediction.

:mod:`~plugins.radiomics.features`
    The 869 published pyradiomics features of the mid-ventricular T1 map, with IBSI
    preprocessing (resampling, N4, μ ± 3σ clipping, bin width 5).
:mod:`~plugins.radiomics.model`
    Rad-score model files (trained by the site; none is shipped) and scoring.
:mod:`~plugins.radiomics.lvrr`
    The five published logistic models of LV reverse remodelling.
:mod:`~plugins.radiomics.training`
    LASSO training with cross-validation, bootstrap optimism correction, DeLong test.
:mod:`~plugins.radiomics.cli`
    ``cmr-node radiomics train|export|lvrr``.

The submodules import pyradiomics and scikit-learn only when used.
"""
