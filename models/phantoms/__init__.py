"""Synthetic cardiac MR phantoms: anatomy, native T1 maps, MOLLI source images, DICOM series.

The subject's anatomy is in :mod:`models.phantoms.anatomy` (structures, levels),
:mod:`models.phantoms.heart_geometry` (:class:`HeartCase`), :mod:`models.phantoms.heart_sampling`,
:mod:`models.phantoms.heart_rendering` and :mod:`models.phantoms.scar_rendering`.
The T1-map API (``make_t1map_slice``, ``make_t1map_stack``, ``PhantomSlice``,
``make_heart_case``) lives in :mod:`models.phantoms.t1map`, four-chamber long-axis maps
(``make_t1map_long_axis``) in :mod:`models.phantoms.long_axis`; DICOM series in
:mod:`models.phantoms.dicom_study` (vendors, study facts), :mod:`models.phantoms.dicom_build`
(shared instance building, writing), :mod:`models.phantoms.dicom_maps` (parametric maps),
:mod:`models.phantoms.dicom_lge` (LGE, cine, TI scout) and
:mod:`models.phantoms.dicom_noncardiac`; the command line in ``python -m models.phantoms``.
"""

from models.phantoms.anatomy import Phenotype, Structure
from models.phantoms.heart_geometry import HeartCase
from models.phantoms.heart_rendering import render_slice
from models.phantoms.long_axis import LongAxisSlice, make_t1map_long_axis
from models.phantoms.molli_source import make_molli_source
from models.phantoms.t1map import PhantomSlice, make_heart_case, make_t1map_slice, make_t1map_stack
from models.phantoms.tissues import Tissue

__all__ = [
    "HeartCase",
    "LongAxisSlice",
    "PhantomSlice",
    "Phenotype",
    "Structure",
    "Tissue",
    "make_heart_case",
    "make_molli_source",
    "make_t1map_long_axis",
    "make_t1map_slice",
    "make_t1map_stack",
    "render_slice",
]
