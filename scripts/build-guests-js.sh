#!/usr/bin/env bash
# Builds every JavaScript guest: the example plugins (examples/js/*.js) and the test guests
# (tests/guests-js/*.js), each with scripts/build-js-plugin.sh into target/wasm/js/<name>.wasm.
# A component newer than its source, the SDK, the WIT, the build scripts and the tools' lock is
# kept (componentize-js takes most of a minute per plugin). Prints the path of each .wasm file,
# one a line, on stdout (progress and errors go to stderr). Needs the pinned componentize-js
# that scripts/setup.sh installs: without it, this fails.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${WAZOO_WASM_TARGET_DIR:-target/wasm}/js
inputs=(guest-js/wazoo.js wit/plugin.wit scripts/build-js-plugin.sh scripts/build-guests-js.sh
  guest-js/tools/package-lock.json)

# Whether $1 exists and is newer than each of the rest.
fresh() {
  local out=$1
  shift
  [ -f "$out" ] || return 1
  for f in "$@"; do
    [ "$out" -nt "$f" ] || return 1
  done
}

for src in examples/js/*.js tests/guests-js/*.js; do
  name=$(basename "$src" .js)
  wasm="$OUT/$name.wasm"
  if ! fresh "$wasm" "$src" "${inputs[@]}"; then
    echo "build-guests-js: building $src" >&2
    bash scripts/build-js-plugin.sh "$src" "$wasm" >/dev/null
  fi
  echo "$wasm"
done
