#!/usr/bin/env bash
# Builds every JavaScript guest: the example plugins (examples/js/*.js) and the test guests
# (tests/guests-js/*.js), each with scripts/build-js-plugin.sh into target/wasm/js/<name>.wasm.
# A component is kept while the SHA-256 of its inputs (its source, the SDK, the WIT, the build
# script and the tools' lock) matches the one recorded beside it in <name>.wasm.inputs: a
# build takes most of a minute and is not reproducible, so a needless one would also cost the
# host a recompile (content, not mtimes, since a checkout or rebase touches every file).
# Prints the path of each .wasm file, one a line, on stdout (progress and errors go to
# stderr). Needs the pinned componentize-js that scripts/setup.sh installs: without it, this
# fails.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${WAZOO_WASM_TARGET_DIR:-target/wasm}/js
inputs=(guest-js/wazoo.js wit/plugin.wit scripts/build-js-plugin.sh guest-js/tools/package-lock.json)

for src in examples/js/*.js tests/guests-js/*.js; do
  name=$(basename "$src" .js)
  wasm="$OUT/$name.wasm"
  sum=$(cat "$src" "${inputs[@]}" | sha256sum | cut -d' ' -f1)
  if ! [ -f "$wasm" ] || [ "$(cat "$wasm.inputs" 2>/dev/null)" != "$sum" ]; then
    echo "build-guests-js: building $src" >&2
    bash scripts/build-js-plugin.sh "$src" "$wasm" >/dev/null
    echo "$sum" >"$wasm.inputs"
  fi
  echo "$wasm"
done
