#!/usr/bin/env bash
# Start Debian's Orthanc with the cmr-node plugin: renders <data>/orthanc.json for a data folder
# and runs Orthanc with TCP_NODELAY=1 and the project's virtual environment.
#   orthanc/run.sh --data ./orthanc-data [--config site.toml] [--http-port 8042] [--dicom-port 4242]
# See `orthanc/run.sh --help` for every option.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
exec "$repo/.venv/bin/python" -m node.orthanc.launch "$@"
