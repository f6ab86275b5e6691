"""Training of a site's rad-score model from its own cohort (none is shipped).

:mod:`models.training.radscore.train` reads a cohort table (``cmr-node radiomics export`` plus an
outcome column), trains the LASSO logistic rad-score with cross-validation and bootstrap
optimism correction, and writes the model file that
:func:`plugins.lib.radiomics.model.load_model` reads (``cmr-node radiomics train``).
"""
