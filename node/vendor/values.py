"""Real-world values: how a vendor's stored pixel values become physical values.

The loader (:mod:`node.inputs.loader`) applies, in this order of preference:

1. **Real World Value Mapping Sequence (0040,9096)** (PS3.3 C.7.6.16.2.11), per frame in
   enhanced objects: the item whose Measurement Units Code Sequence is milliseconds, else
   the first.  Philips writes it on parametric maps with the map's unit.
2. **Rescale Slope / Intercept (0028,1053 / 1052)**, or the Pixel Value Transformation
   functional group of enhanced objects (PS3.3 C.7.6.16.2.9).
3. The stored values.

Philips adds a private **MR Scale Slope (2005,100E)** and **Scale Intercept (2005,100D)**.
The dcm2niix Philips notes (rordenlab/dcm2niix Philips/README.md, "Intensity scaling")
define three values: the stored value SV, the displayed value DV = SV x RS + RI, and the
"floating point" value FP = DV / (RS x SS).  FP is the scanner's internal signal scale,
comparable between scans of one examination, not a physical unit: a T1 map in ms is DV (the
rescale) or the RWVM value.  The node therefore never applies SS to maps; for signal images
(whose unit is arbitrary) it is reported, so that a fit across series with different scales
can be flagged.
"""

from __future__ import annotations

from typing import Final

from node.vendor.access import HeaderView, private_float

__all__ = ["PHILIPS_SCALE_SLOPE", "philips_floating_point_factor", "philips_scale_slope"]

PHILIPS_SCALE_SLOPE: Final = (0x2005, 0x100E)
PHILIPS_SCALE_INTERCEPT: Final = (0x2005, 0x100D)


def philips_scale_slope(image: HeaderView) -> float | None:
    """The Philips private MR scale slope (2005,100E), ``None`` if absent or zero."""
    value = private_float(image.private(*PHILIPS_SCALE_SLOPE))
    return value if value else None


def philips_floating_point_factor(image: HeaderView) -> float | None:
    """Factor from the displayed value (rescaled) to Philips' floating-point value.

    FP = DV / (RS x SS) (dcm2niix Philips/README.md); ``None`` without a scale slope.
    """
    scale = philips_scale_slope(image)
    rescale = private_float(image.get("RescaleSlope")) or 1.0
    if scale is None:
        return None
    return 1.0 / (rescale * scale)
