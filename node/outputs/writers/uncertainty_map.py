"""DICOM Parametric Map of the segmenter's per-pixel uncertainty, for viewers without
FRACTIONAL SEG support.

OHIF 3.13 refuses FRACTIONAL segmentations: its SEG loader (``@cornerstonejs/adapters``,
``Segmentation_4X``) throws "Fractional segmentations are not yet supported" for any stored
value other than 0 and MaximumFractionalValue (OHIF issue #1346, open since 2020).  It does
display Parametric Maps (``@ohif/extension-cornerstone-dicom-pmap``, OHIF 3.9, issue #4105):
as a colour overlay on the volume of the series the map references, reading the stored
values (the Real World Value Mapping is not applied) and multiplying them by 100 for a
0-100 window.  The map is therefore written as 32-bit float pixels holding the uncertainty
itself, in [0, 1], with one frame per source image (zero on frames not analysed) so that it
fills the referenced volume.

The uncertainty of a pixel is the largest binary entropy (bits) of its region probabilities
(:func:`plugins.lib.uncertainty.uncertainty_image`).  No standard concept for segmentation
uncertainty exists in CID 7180; the quantity is a private code, as the ECV map's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.coding import Code as PydicomCode

from node.outputs.uids import DerivedObjectIdentity
from node.outputs.writers import WriterError, WriterSettings
from node.outputs.writers.parametric_map import parametric_map
from plugins.api import AnalysisResult, LoadedSeries
from plugins.lib.uncertainty import uncertainty_image

logger = logging.getLogger(__name__)

__all__ = ["QUANTITY_UNCERTAINTY", "build_uncertainty_map"]

QUANTITY_UNCERTAINTY: Final = PydicomCode(
    "seg-entropy", "99CMRNODE", "Segmentation uncertainty (binary entropy)"
)
"""No standard concept exists in CID 7180; private, as the ECV map's quantity."""
UCUM_BIT: Final = PydicomCode("bit", "UCUM", "bit")
CONTENT_LABEL: Final = "UNCERTAINTY"
WINDOW: Final = (0.5, 1.0)
"""(centre, width) of the display window: the whole 0-1 bit range."""


def build_uncertainty_map(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    identity: DerivedObjectIdentity,
) -> hd.pm.ParametricMap | None:
    """Build the uncertainty Parametric Map of ``result`` on its source images.

    Parameters
    ----------
    result
        The analysis result; its slices' ``probabilities`` give the uncertainty.
    series
        The analysed series.
    sources
        The source instances' datasets.
    settings
        Identity of the node.
    identity
        UIDs, number and description of the map's series.

    Returns
    -------
    highdicom.pm.ParametricMap or None
        ``None`` when no slice has probabilities, or the series is not one single-frame
        image per position (a multi-frame source is not written: OHIF could not overlay it).

    Raises
    ------
    WriterError
        If the sources do not fit the series or highdicom rejects the inputs.
    """
    by_frame = {
        s.frame_index: image
        for s in result.slices
        if (image := uncertainty_image(s.probabilities)) is not None
    }
    if not by_frame:
        return None
    frames = series.frames
    positions = {tuple(round(v, 3) for v in f.image_position) for f in frames}
    if any(f.frame_number is not None for f in frames) or len(positions) != len(frames):
        logger.info(
            "Series %s: no uncertainty map (not one single-frame image per position)",
            series.series_instance_uid,
        )
        return None
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    missing = [f.sop_instance_uid for f in frames if f.sop_instance_uid not in by_uid]
    if missing:
        raise WriterError(f"Source instances {missing} of the uncertainty map are not given.")
    # highdicom keeps the planes in the order given; descending along the normal as the
    # other Parametric Maps of the node (node.outputs.writers.parametric_map).
    order = sorted(range(len(frames)), key=lambda k: -frames[k].slice_location)
    shape = frames[0].pixels.shape
    stored = np.stack([
        by_frame.get(k, np.zeros(shape, dtype=np.float32)).astype(np.float32) for k in order
    ])
    pm = parametric_map(
        [frames[k] for k in order],
        [by_uid[frames[k].sop_instance_uid] for k in order],
        stored,
        mapping=hd.pm.RealWorldValueMapping(
            lut_label="UNCERTAINTY",
            lut_explanation="binary entropy of the segmenter's probability (bits)",
            unit=UCUM_BIT,
            value_range=(0.0, 1.0),
            slope=1.0,
            intercept=0.0,
            quantity_definition=QUANTITY_UNCERTAINTY,
        ),
        window=WINDOW,
        identity=identity,
        settings=settings,
        content_label=CONTENT_LABEL,
    )
    logger.debug("uncertainty map %s: %d frames", identity.sop_instance_uid, len(order))
    return pm
