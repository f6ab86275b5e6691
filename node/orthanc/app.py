"""The node as an Orthanc plugin: what :func:`register` wires into Orthanc.

``orthanc/plugin.py`` (the script Orthanc runs) calls :func:`register` with the ``orthanc``
module.  This module only wires: it reads the node's settings from Orthanc's configuration,
builds the :class:`~node.orthanc.node.OrthancNode`, registers its change callback (new
instances are counted, stable series handed over, start and stop), the REST
routes of :mod:`node.orthanc.rest` and the Explorer extension, and sends the node's log
records to Orthanc's log.  The node and its routes know nothing of each other's wiring, so
imports run one way: this module -> :mod:`.rest` -> :mod:`.node`.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from node import __version__
from node.orthanc.node import OrthancNode
from node.orthanc.rest import RestRoutes, explorer_extension
from node.settings import Settings, load_settings

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_SECTION", "LOG_FILE", "Registration", "register", "settings_from_orthanc"]

#: Key of the node's section in Orthanc's configuration file.
CONFIG_SECTION = "CmrNode"
#: The node's own log file, under ``<data_dir>/logs`` (Orthanc shows info lines only with
#: ``--verbose``).
LOG_FILE = "cmr-node.log"


class _OrthancLogHandler(logging.Handler):
    """Python log records into Orthanc's log."""

    def __init__(self, api: Any) -> None:
        super().__init__()
        self._api = api

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self._api.LogError(text)
            elif record.levelno >= logging.WARNING:
                self._api.LogWarning(text)
            else:
                self._api.LogInfo(text)
        except Exception:  # logging must never raise into Orthanc
            self.handleError(record)


def settings_from_orthanc(config: Mapping[str, Any]) -> Settings:
    """The node's settings named by Orthanc's configuration (``CmrNode`` section).

    ``CmrNode.Config`` is the node's TOML file (else ``CMR_NODE_CONFIG`` or the defaults);
    ``CmrNode.DataDirectory``, when set, overrides its ``data_dir``.
    """
    section = dict(config.get(CONFIG_SECTION) or {})
    path = section.get("Config")
    settings = load_settings(Path(path) if path else None)
    data_dir = section.get("DataDirectory")
    if data_dir:
        settings = replace(settings, data_dir=Path(data_dir).resolve())
    return settings


@dataclass
class Registration:
    """What :func:`register` set up inside Orthanc."""

    node: OrthancNode
    on_change: Callable[[int, int, str], None]
    routes: RestRoutes


def _configure_logging(api: Any, settings: Settings) -> None:
    """Node log records into Orthanc's log and into ``<data_dir>/logs/cmr-node.log``."""
    root = logging.getLogger()
    if not any(isinstance(h, _OrthancLogHandler) for h in root.handlers):
        handler = _OrthancLogHandler(api)
        handler.setFormatter(logging.Formatter("cmr-node %(name)s: %(message)s"))
        root.addHandler(handler)
    if not any(isinstance(h, logging.handlers.RotatingFileHandler) for h in root.handlers):
        log_dir = settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_dir / LOG_FILE, maxBytes=10_000_000, backupCount=5
        )
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
        )
        root.addHandler(file_handler)
    root.setLevel(getattr(logging, settings.log_level, logging.INFO))
    for noisy in ("pynetdicom", "apscheduler", "highdicom", "radiomics"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def register(
    api: Any, config: Mapping[str, Any] | None = None, *, configure_logging: bool = True
) -> Registration:
    """Set up the node inside Orthanc: change callback, REST routes and Explorer extension.

    Parameters
    ----------
    api
        The ``orthanc`` module.
    config
        Orthanc's configuration (default: ``api.GetConfiguration()``).
    configure_logging
        Send the node's log records to Orthanc's log and to the node's log file.

    Returns
    -------
    Registration
        The node, the change callback and the REST routes registered with Orthanc.
    """
    if config is None:
        config = json.loads(api.GetConfiguration())
    settings = settings_from_orthanc(config)
    if configure_logging:
        _configure_logging(api, settings)
    node = OrthancNode(api, settings)
    routes = RestRoutes(node)
    routes.register(api)
    api.ExtendOrthancExplorer(explorer_extension())
    change = api.ChangeType

    def on_change(change_type: int, _level: int, resource_id: str) -> None:
        try:
            if change_type == change.NEW_INSTANCE:
                node.instance_stored(resource_id)
            elif change_type == change.STABLE_SERIES:
                node.series_stable(resource_id)
            elif change_type == change.ORTHANC_STARTED:
                node.start()
            elif change_type == change.ORTHANC_STOPPED:
                stopped = node.stop()
                if stopped:  # a thread still busy keeps its database connection
                    node.close()
        except Exception:  # never raise into Orthanc's thread
            logger.exception("handling Orthanc change %s of %s failed", change_type, resource_id)

    api.RegisterOnChangeCallback(on_change)
    logger.info("cmr-node %s registered in Orthanc (data in %s)", __version__, settings.data_dir)
    return Registration(node, on_change, routes)
