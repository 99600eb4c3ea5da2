#!/usr/bin/env bash
# Builds a Python plugin: scripts/build-py-plugin.sh SRC_DIR OUT.wasm [MODULE]
#
# MODULE (default `app`) is the plugin's module in SRC_DIR (SRC_DIR/app.py); it must define
# `WitWorld = wazoo_guest.export(MyPlugin)`. The pinned componentize-py (installed into
# target/venv-py when missing, see scripts/componentize-py.sh) builds it against the
# repository's wit/ (world `plugin` of wazoo:plugin@0.1.0), with SRC_DIR and the SDK in guest-py/
# on the Python path. The module is imported at build time and the interpreter's state after
# the import is what every instance starts from: do work at import, not in each `init`.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 SRC_DIR OUT.wasm [MODULE]" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
out=$2
module=${3:-app}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=componentize-py.sh
. "$root/scripts/componentize-py.sh"
ensure_componentize_py

if ! [ -f "$src/$module.py" ] && ! [ -f "$src/$module/__init__.py" ]; then
  echo "build-py-plugin: no module $module in $src" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
# componentize-py appends the site-packages of an active virtualenv to the path: none here.
env -u VIRTUAL_ENV "$COMPONENTIZE_PY" -q -d "$root/wit" -w plugin \
  componentize -p "$src" -p "$root/guest-py" "$module" -o "$out" >&2
echo "$out"
