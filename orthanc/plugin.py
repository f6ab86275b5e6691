"""The script Orthanc runs (``PythonScript``): cmr-node as an Orthanc Python plugin.

Orthanc's embedded Python is Debian's libpython3.11, not the project's virtual environment:
the venv's site-packages and the repository are put first on ``sys.path`` before anything of
the node is imported. Their locations come from the ``CmrNode`` section of Orthanc's
configuration (``SitePackages``, ``Repository``, written by ``python -m node.orthanc.launch``);
without it, the repository holding this file and its ``.venv`` are used.

All logic lives in :mod:`node.orthanc.app` (the wiring) and :mod:`node.orthanc.node` (the
node), with the ``orthanc`` module passed in.
"""

import glob
import json
import os
import sys

import orthanc

_config = json.loads(orthanc.GetConfiguration())
_section = _config.get("CmrNode") or {}
_repository = _section.get("Repository") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))
)
_site = _section.get("SitePackages") or next(
    iter(sorted(glob.glob(os.path.join(_repository, ".venv", "lib", "python3*", "site-packages")))),
    None,
)
for _path in (_repository, _site):
    if _path and _path in sys.path:
        sys.path.remove(_path)
sys.path[:0] = [p for p in (_site, _repository) if p]

from node.orthanc.app import register  # noqa: E402  (needs the paths above)

registration = register(orthanc, _config)
