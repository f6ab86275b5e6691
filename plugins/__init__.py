"""Analysis plugins and the registry the node uses to find them by name.

Each plugin is a subpackage (``plugins.t1map``, ...) exposing ``NAME``, ``VERSION`` and a pure
``analyse(series, options) -> AnalysisResult`` (see :class:`plugins.api.AnalysisPlugin`).
Plugins are imported only when asked for, so the node does not pay for plugins it never runs.
A plugin builds no segmentation network: the networks it uses are given in its options
(:func:`plugins.api.injected`; the node builds them, :mod:`node.analyses`).
"""

from __future__ import annotations

import importlib
import logging
from typing import cast

from plugins.api import AnalysisPlugin

logger = logging.getLogger(__name__)

__all__ = ["PLUGIN_NAMES", "UnknownPluginError", "get_plugin"]

_PLUGIN_MODULES: dict[str, str] = {
    "ecv": "plugins.ecv",
    "lge": "plugins.lge",
    "molli": "plugins.molli",
    "t1map": "plugins.t1map",
    "t2map": "plugins.t2map",
}

PLUGIN_NAMES: tuple[str, ...] = tuple(sorted(_PLUGIN_MODULES))
"""Names of the analysis plugins the node can run."""


class UnknownPluginError(KeyError):
    """No analysis plugin has the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown analysis plugin"


def get_plugin(name: str) -> AnalysisPlugin:
    """The analysis plugin module registered under ``name``.

    Parameters
    ----------
    name
        Plugin name, one of :data:`PLUGIN_NAMES` (e.g. ``"t1map"``).

    Returns
    -------
    plugins.api.AnalysisPlugin
        The plugin module (``NAME``, ``VERSION``, ``analyse``).

    Raises
    ------
    UnknownPluginError
        If no plugin has that name.
    """
    try:
        module_name = _PLUGIN_MODULES[name]
    except KeyError:
        raise UnknownPluginError(
            f"No analysis plugin named {name!r}; known: {', '.join(PLUGIN_NAMES)}"
        ) from None
    module = importlib.import_module(module_name)
    logger.debug("Loaded analysis plugin %s from %s", name, module_name)
    return cast(AnalysisPlugin, module)
