#!/usr/bin/env bash
# Builds a JavaScript plugin into a wazoo component: scripts/build-js-plugin.sh SRC.js OUT.wasm
#
# SRC.js is one ES module whose default export is the plugin (see guest-js/wazoo.d.ts); it
# imports the SDK as "wazoo". componentize-js takes one module and resolves imports as files
# of the directory it maps into the component, so the build stages three files in a fresh
# directory: the SDK as wazoo.js (a bare "wazoo" resolves to it there), SRC.js as plugin.js,
# and an entry main.js that exports the world's functions bound to the plugin. The pinned
# componentize-js (scripts/setup.sh installs it in target/js-tools; WAZOO_JS_TOOLS names
# another install) builds main.js against wit/ with the HTTP features off: the host grants no
# sockets, and clocks, randomness and stdio (console output to the host's log) remain.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 SRC.js OUT.wasm" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${WAZOO_JS_TOOLS:-$ROOT/target/js-tools}
CJS="$TOOLS/node_modules/.bin/componentize-js"
if ! [ -x "$CJS" ]; then
  echo "build-js-plugin: componentize-js is not installed in $TOOLS: run scripts/setup.sh" >&2
  exit 1
fi

SRC=$(realpath "$1")
OUT=$(realpath -m "$2")
if ! [ -f "$SRC" ]; then
  echo "build-js-plugin: no such file: $1" >&2
  exit 1
fi
mkdir -p "$(dirname "$OUT")"

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/wazoo-js-build.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
cp "$ROOT/guest-js/wazoo.js" "$STAGE/wazoo.js"
cp "$SRC" "$STAGE/plugin.js"
cat >"$STAGE/main.js" <<'EOF'
import plugin from "./plugin.js";
import { bindPlugin } from "wazoo";

export const { init, onSession, onWatch, onCompletion } = bindPlugin(plugin);
EOF

# componentize-js maps its working directory into the component when the source lies in it.
(cd "$STAGE" && "$CJS" main.js --wit "$ROOT/wit" --world-name plugin \
  --disable http fetch-event --out "$OUT.tmp") >&2
header=$(od -An -tx1 -N8 "$OUT.tmp" | tr -d ' \n')
if [ "$header" != 0061736d0d000100 ]; then
  echo "build-js-plugin: $OUT.tmp is not a component (header $header)" >&2
  exit 1
fi
mv "$OUT.tmp" "$OUT"
echo "$OUT"
