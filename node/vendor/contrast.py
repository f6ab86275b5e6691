"""Whether a series was acquired before or after gadolinium.

Evidence, strongest first:

* ContrastBolusAgent (0018,0010) filled in with an agent name (PS3.3 C.7.6.4 Contrast/Bolus
  module: present when contrast was given).  Values such as "NONE", "no", "-" or an empty
  value are not an agent.  Some sites fill it for the whole examination, so a native series
  acquired before the injection may carry it; a name that says "native" / "pre" then wins.
* ContrastBolusVolume (0018,1041) or ContrastBolusStartTime (0018,1042) filled in.
* The series name: "post", "+C", "Gd", "gado", "N min" (minutes after injection), "ECV"
  versus "native", "pre", "nativ".
"""

from __future__ import annotations

import re
from typing import Final

from node.vendor.access import HeaderView
from plugins.api import ContrastPhase

__all__ = ["contrast_phase"]

_NO_AGENT: Final = re.compile(r"^\s*(none|no|nil|n/?a|native|0|-+|\.)?\s*$", re.IGNORECASE)
_POST_NAME: Final = re.compile(
    r"(?<![a-z0-9])post(?!erior)|(?<![a-z0-9])(pc|gd|ce|gad|gado|gadolinium|enhanced)"
    r"(?![a-z0-9])|\+\s*c(?![a-z0-9])|gado|contrast[ _-]?enh|(?<![a-z0-9])\d+\s*min(s|ute|utes)?"
    r"(?![a-z0-9])",
    re.IGNORECASE,
)
_NATIVE_NAME: Final = re.compile(r"(?<![a-z0-9])(native|nativ|pre|precontrast|pre[ _-]?con)"
                                 r"(?![a-z0-9])", re.IGNORECASE)


def contrast_phase(image: HeaderView) -> tuple[ContrastPhase, str]:
    """The contrast phase and the evidence for it."""
    name = " ".join(
        str(image.get(k) or "") for k in ("SeriesDescription", "ProtocolName")
    ).strip()
    native_name = bool(name and _NATIVE_NAME.search(name))
    post_name = bool(name and _POST_NAME.search(name))
    agent = image.get("ContrastBolusAgent")
    if native_name and not post_name:
        return ContrastPhase.NATIVE, f"named native/pre-contrast ('{name}')"
    if post_name:
        return ContrastPhase.POST_CONTRAST, f"named post-contrast ('{name}')"
    if agent is not None and not _NO_AGENT.match(str(agent)):
        return ContrastPhase.POST_CONTRAST, "ContrastBolusAgent filled in"
    for keyword in ("ContrastBolusVolume", "ContrastBolusStartTime"):
        value = image.get(keyword)
        if value not in (None, "", 0, "0"):
            return ContrastPhase.POST_CONTRAST, f"{keyword} filled in"
    return ContrastPhase.UNKNOWN, "no contrast information in the header"
