"""Cardiac geometry shared by the analysis plugins: the AHA 16-segment model.

:mod:`plugins.lib.cardiac.insertion` finds the LV centre and the RV insertion points;
:mod:`plugins.lib.cardiac.aha` maps the myocardium to AHA segments, computes per-segment
statistics and transmurality, and assigns slice levels; :mod:`plugins.lib.cardiac.bullseye`
renders per-segment values as a 16-segment polar plot.
"""
