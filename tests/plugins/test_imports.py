"""The analyses import nothing from ``models``: the node builds the networks and gives them in
the options (``plugins`` defines the contracts, ``models`` implements them, ``node`` wires
them)."""

from __future__ import annotations

from pathlib import Path

from tests.importutil import imported_modules, imports_of

PLUGINS = Path(__file__).parents[2] / "plugins"


def test_no_plugin_module_imports_models() -> None:
    assert imports_of(PLUGINS, "models") == []


def test_imports_inside_functions_and_by_name_are_found() -> None:
    source = (
        "import importlib\n"
        "from plugins.api import Label\n"
        "def f():\n"
        "    from models.lgeseg.segmenter import default_segmenter\n"
        "    import models.t1seg\n"
        "    return importlib.import_module('models.unet')\n"
        "from . import sibling\n"
    )
    assert imported_modules(source) == [
        (1, "importlib"), (2, "plugins.api"), (4, "models.lgeseg.segmenter"),
        (5, "models.t1seg"), (6, "models.unet"),
    ]
