"""Native T2-map analysis plugin (myocardial oedema): myocardial T2 per slice, globally and
per AHA segment, with quality control.  See :mod:`plugins.t2map.analysis`."""

from __future__ import annotations

from plugins.t2map.analysis import ALGORITHM_NAME, NAME, T2, VERSION, QCCode, analyse

__all__ = ["ALGORITHM_NAME", "NAME", "T2", "VERSION", "QCCode", "analyse"]
