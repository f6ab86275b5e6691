#!/usr/bin/env bash
# Install everything cmr-node needs on Debian 12 with Python 3.11: Debian packages (dcmtk,
# dicom3tools, Orthanc with its Python and DICOMweb plugins, PostgreSQL (the shared job queue;
# the tests start private clusters of it), fonts, Chromium, shellcheck), the
# pinned OHIF viewer and playwright-core for the viewer tests (deploy/viewer/setup.sh, into
# build/viewer), and a virtual environment in .venv with the project and its pinned Python
# dependencies. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dcmtk dicom3tools orthanc orthanc-python orthanc-dicomweb postgresql fonts-dejavu-core chromium shellcheck)
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Keep the Debian Orthanc service from starting on install; the project starts its own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

deploy/viewer/setup.sh

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.cmr-node-installed
want="$(cat pyproject.toml deploy/constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  # The CPU build of torch first: an unpinned torch pulls a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -c deploy/constraints.txt -e '.[dev,radiomics]'
  echo "$want" > "$stamp"
fi
echo "setup: ready ($(.venv/bin/cmr-node --version))"
