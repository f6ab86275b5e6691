#!/usr/bin/env bash
# Install cmr-node's systemd units on this machine: the cmr-node system user, /etc/cmr-node
# (site settings), /var/lib/cmr-node and /var/lib/cmr-node-orthanc (data), the units
# cmr-node.service and cmr-node-orthanc.service, then `systemctl daemon-reload`.
# Idempotent: a second run changes nothing. Starts nothing unless --start is given.
#
#   deploy/systemd/install.sh [--prefix DIR] [--config FILE] [--enable node|orthanc]...
#                             [--start node|orthanc]... [--root DIR] [--dry-run]
#
#   --prefix DIR     checkout with its .venv (deploy/setup.sh), default /opt/cmr-node; it must
#                    be readable by the cmr-node user (not under /root or /home)
#   --config FILE    site settings to install as /etc/cmr-node/site.toml when there is none
#                    yet (default deploy/examples/site.toml); an existing file is never replaced
#   --enable NAME    enable a unit at boot (node: cmr-node.service, orthanc: cmr-node-orthanc)
#   --start NAME     enable and start it now
#   --root DIR       install the files under DIR instead of / (image or package building);
#                    no user is created and systemctl is not called
#   --dry-run        print what would be done, change nothing
set -euo pipefail

readonly SERVICE_USER=cmr-node
readonly UNITS=(cmr-node.service cmr-node-orthanc.service cmr-node-worker@.service)
readonly UNIT_PREFIX_IN_FILES=/opt/cmr-node
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

prefix=/opt/cmr-node
config="$repo/deploy/examples/site.toml"
root=""
dry_run=0
enable=()
start=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
die() { echo "install: error: $*" >&2; exit 2; }
say() { echo "install: $*"; }

unit_for() {
  case "$1" in
    node) echo cmr-node.service ;;
    orthanc) echo cmr-node-orthanc.service ;;
    *) die "unknown unit '$1' (node or orthanc)" ;;
  esac
}

while (($#)); do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
    --config) config="${2:?--config needs a file}"; shift 2 ;;
    --root) root="${2:?--root needs a folder}"; shift 2 ;;
    --enable) enable+=("$(unit_for "${2:?--enable needs node or orthanc}")"); shift 2 ;;
    --start) start+=("$(unit_for "${2:?--start needs node or orthanc}")"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (--help lists them)" ;;
  esac
done

# Run a command, or only print it with --dry-run.
run() {
  if ((dry_run)); then
    echo "would run: $*"
  else
    "$@"
  fi
}

prefix="${prefix%/}"
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path: $prefix" ;; esac
case "$prefix" in
  *[[:space:]\#\&\\]*) die "--prefix must not contain spaces, '#', '&' or '\\': $prefix" ;;
esac
[ -f "$config" ] || die "no site configuration at $config"
if [ -n "$root" ]; then
  ((${#enable[@]} + ${#start[@]} == 0)) || die "--enable/--start cannot be used with --root"
  mkdir -p "$root"
  root="$(cd "$root" && pwd)"
elif ((!dry_run)) && [ "$(id -u)" -ne 0 ]; then
  die "run as root (or use --dry-run / --root DIR)"
fi

cli="$prefix/.venv/bin/cmr-node"
if [ ! -x "$cli" ]; then
  msg="no $cli: clone the project to $prefix and run $prefix/deploy/setup.sh first"
  if [ -n "$root" ] || ((dry_run)); then say "warning: $msg"; else die "$msg"; fi
fi

# 1. The service user (system account, no login, home in its data folder).
if [ -n "$root" ]; then
  say "--root: not creating user $SERVICE_USER"
elif getent passwd "$SERVICE_USER" >/dev/null; then
  say "user $SERVICE_USER exists"
else
  say "creating system user $SERVICE_USER"
  run useradd --system --user-group --home-dir /var/lib/cmr-node --no-create-home \
    --shell /usr/sbin/nologin --comment "cmr-node DICOM node" "$SERVICE_USER"
fi

# 2. Folders: settings readable by the service, data owned by it.
owner() { [ -n "$root" ] || run chown "$@"; }
make_dir() {  # make_dir PATH MODE OWNER:GROUP
  local path="$root$1"
  if [ ! -d "$path" ]; then
    say "creating $path"
    run install -d -m "$2" "$path"
  fi
  owner "$3" "$path"
}
make_dir /etc/cmr-node 0750 "root:$SERVICE_USER"
make_dir /var/lib/cmr-node 0750 "$SERVICE_USER:$SERVICE_USER"
make_dir /var/lib/cmr-node-orthanc 0750 "$SERVICE_USER:$SERVICE_USER"

site="$root/etc/cmr-node/site.toml"
if [ -e "$site" ]; then
  say "keeping existing $site"
else
  say "installing $config as $site"
  run install -m 0640 "$config" "$site"
  owner "root:$SERVICE_USER" "$site"
fi

# 3. Units, with /opt/cmr-node replaced by the prefix; replaced only when they differ.
unit_dir="$root/etc/systemd/system"
[ -d "$unit_dir" ] || run install -d -m 0755 "$unit_dir"
changed=0
for unit in "${UNITS[@]}"; do
  rendered="$(sed "s#$UNIT_PREFIX_IN_FILES#$prefix#g" "$here/$unit")"
  target="$unit_dir/$unit"
  if [ -f "$target" ] && [ "$(cat "$target")" == "$rendered" ]; then
    say "$target is up to date"
    continue
  fi
  say "installing $target"
  changed=1
  if ((dry_run)); then
    echo "would write: $target"
  else
    printf '%s\n' "$rendered" >"$target.tmp"
    chmod 0644 "$target.tmp"
    mv -f "$target.tmp" "$target"
  fi
done

# 4. Checks that save a failed first start.
if [ -x "$cli" ] && [ -r "$site" ]; then
  data_dir="$("$prefix/.venv/bin/python" - "$site" <<'EOF'
import sys
from pathlib import Path

from node.settings import SettingsError, load_settings

try:
    print(load_settings(Path(sys.argv[1])).data_dir)
except SettingsError as exc:
    print(f"invalid: {exc}")
EOF
)" || data_dir="invalid: cannot run $prefix/.venv/bin/python"
  case "$data_dir" in
    invalid:*) say "warning: $site: ${data_dir#invalid: }" ;;
    /var/lib/cmr-node) say "$site loads; data in $data_dir" ;;
    *) say "warning: $site puts node.data_dir at $data_dir; cmr-node.service may write only" \
         "/var/lib/cmr-node (set node.data_dir or add ReadWritePaths= in a drop-in)" ;;
  esac
fi
if [ -z "$root" ] && ((!dry_run)) && [ -x "$cli" ] \
    && ! runuser -u "$SERVICE_USER" -- test -x "$cli"; then
  say "warning: user $SERVICE_USER cannot run $cli: move the checkout (e.g. to /opt/cmr-node)"
fi

# 5. systemd.
if [ -n "$root" ]; then
  say "--root: files installed under $root; run 'systemctl daemon-reload' on the target"
  exit 0
fi
if ((changed)); then
  run systemctl daemon-reload
fi
for unit in "${enable[@]}"; do
  run systemctl enable "$unit"
done
for unit in "${start[@]}"; do
  run systemctl enable --now "$unit"
done
if ((${#start[@]} == 0)); then
  say "nothing started; start with: systemctl enable --now cmr-node.service" \
      "(or cmr-node-orthanc.service)"
fi
