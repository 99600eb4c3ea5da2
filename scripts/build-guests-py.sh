#!/usr/bin/env bash
# Builds every Python guest: the example plugins (examples/python/*/) and the test guests
# (tests/guests-py/*/), each with scripts/build-py-plugin.sh (the pinned componentize-py, installed
# when missing) into target/wasm/python/NAME.wasm. Prints the path of each .wasm file, one a line,
# on stdout (progress and errors go to stderr).
#
# componentize-py's output differs from build to build (the interpreter's heap snapshot), and a
# new component costs the host a new compile (minutes in a debug build), so a guest is rebuilt
# only when its Python sources, the SDK's (guest-py/), wit/ or the pinned version changed: the
# hash of those is kept beside the component (NAME.wasm.key).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${WAZOO_WASM_TARGET_DIR:-target/wasm}/python
# shellcheck source=componentize-py.sh
. scripts/componentize-py.sh
ensure_componentize_py
mkdir -p "$OUT"
# One build at a time per output directory (test processes may start this concurrently).
exec 9>"$OUT/.lock"
flock 9

status=0
for src in examples/python/*/ tests/guests-py/*/; do
  src=${src%/}
  name=$(basename "$src")
  wasm="$OUT/$name.wasm"
  key=$(
    {
      echo "componentize-py $COMPONENTIZE_PY_VERSION"
      find "$src" guest-py -type f \( -name '*.py' -o -name '*.toml' \) -not -path '*/__pycache__/*' -print0 |
        sort -z | xargs -0 sha256sum
      find wit -type f -print0 | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1
  )
  if ! [ -f "$wasm" ] || [ "$(cat "$wasm.key" 2>/dev/null)" != "$key" ]; then
    echo "build-guests-py: building $src" >&2
    rm -f "$wasm.key"
    if ! scripts/build-py-plugin.sh "$src" "$wasm.tmp" >/dev/null; then
      echo "build-guests-py: building $src failed" >&2
      status=1
      continue
    fi
    mv "$wasm.tmp" "$wasm"
    echo "$key" >"$wasm.key"
  fi
  header=$(od -An -tx1 -N8 "$wasm" | tr -d ' \n')
  if [ "$header" = 0061736d0d000100 ]; then
    echo "$wasm"
  else
    echo "build-guests-py: $wasm is not a component (header $header)" >&2
    status=1
  fi
done
exit "$status"
