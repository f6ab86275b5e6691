#!/usr/bin/env bash
# Install what the real-viewer test (tests/viewer) needs, on Debian 12:
#   - Debian's chromium, and nodejs/npm if no node is installed;
#   - into build/viewer/ (git-ignored): the prebuilt OHIF viewer from the pinned npm package
#     @ohif/app (its dist/ folder, without the 136 MB ONNX runtime in dist/ort) and the pinned
#     playwright-core that drives Chromium.
# Idempotent: a second run only checks. Run as root or with sudo available.
# Environment: CMR_NODE_VIEWER_DIR overrides the install folder (default build/viewer).
set -euo pipefail
cd "$(dirname "$0")/../.."

OHIF_PACKAGE="@ohif/app"
OHIF_VERSION="3.13.2"
# npm's integrity of the package tarball (sha512, base64), checked after download.
OHIF_INTEGRITY="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
VIEWER_DIR="${CMR_NODE_VIEWER_DIR:-build/viewer}"
OHIF_DIR="$VIEWER_DIR/ohif"
OHIF_STAMP="$OHIF_DIR/.cmr-node-ohif-version"

log() { echo "viewer-setup: $*"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed" \
  || missing+=(chromium)
# Keep a node that is already there (for example nodesource's, which bundles npm and
# conflicts with Debian's npm package); otherwise take Debian's.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" fonts-dejavu-core
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "viewer-setup: node $(node --version) is too old; playwright-core needs node >= 18" >&2
  exit 1
fi

mkdir -p "$VIEWER_DIR"
NPM=(npm --no-audit --no-fund --loglevel=error --prefix "$VIEWER_DIR")

# OHIF: the prebuilt static app of the npm package.
if [ ! -f "$OHIF_STAMP" ] || [ "$(cat "$OHIF_STAMP")" != "$OHIF_VERSION" ] \
    || [ ! -f "$OHIF_DIR/index.html" ]; then
  log "downloading $OHIF_PACKAGE@$OHIF_VERSION"
  work="$(mktemp -d "$VIEWER_DIR/.ohif-XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent --loglevel=error "$OHIF_PACKAGE@$OHIF_VERSION" >/dev/null)
  tarball="$(ls "$work"/*.tgz)"
  got="$(node -e 'const fs = require("fs"), c = require("crypto");
    process.stdout.write("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tarball")"
  if [ "$got" != "$OHIF_INTEGRITY" ]; then
    echo "viewer-setup: $OHIF_PACKAGE@$OHIF_VERSION has integrity $got, expected $OHIF_INTEGRITY" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$work" package/dist package/LICENSE
  rm -rf "$work/package/dist/ort"
  cp "$work/package/LICENSE" "$work/package/dist/LICENSE.ohif"
  rm -rf "$OHIF_DIR"
  mv "$work/package/dist" "$OHIF_DIR"
  echo "$OHIF_VERSION" > "$OHIF_STAMP"
  rm -rf "$work"
  trap - EXIT
fi

# playwright-core, pinned in deploy/viewer/package.json (it downloads no browser).
if ! cmp -s deploy/viewer/package.json "$VIEWER_DIR/package.json" \
    || [ ! -f "$VIEWER_DIR/node_modules/playwright-core/package.json" ]; then
  log "installing playwright-core"
  cp deploy/viewer/package.json "$VIEWER_DIR/package.json"
  "${NPM[@]}" install --omit=dev --ignore-scripts >/dev/null
fi

playwright_version="$(node -p 'require(require("path").resolve(process.argv[1])).version' \
  "$VIEWER_DIR/node_modules/playwright-core/package.json")"
chromium_version="$(/usr/bin/chromium --version 2>/dev/null || echo unknown)"
log "ready: OHIF $(cat "$OHIF_STAMP") in $OHIF_DIR, playwright-core $playwright_version," \
  "node $(node --version), $chromium_version"
