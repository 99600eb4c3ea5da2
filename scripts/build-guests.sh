#!/usr/bin/env bash
# Builds every wasm guest: the example plugins (examples/plugins) and the test guests
# (tests/guests), two separate cargo workspaces on the wazoo-guest SDK, for wasm32-wasip2 in
# release mode, into target/wasm/wasm32-wasip2/release/. That target produces components
# directly; each output is checked to be one (a component's header is `00 61 73 6d 0d 00 01 00`,
# a core module's `00 61 73 6d 01 00 00 00`). Prints the path of each .wasm file, one a line, on
# stdout (progress and errors go to stderr). Extra arguments go to both `cargo build` calls
# (e.g. --locked, --offline).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=wasm32-wasip2
TARGET_DIR=${WAZOO_WASM_TARGET_DIR:-target/wasm}
OUT="$TARGET_DIR/$TARGET/release"

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  echo "build-guests: adding the $TARGET Rust target" >&2
  rustup target add "$TARGET" >&2
fi

status=0
for ws in examples/plugins tests/guests; do
  echo "build-guests: building $ws" >&2
  cargo build --release --target "$TARGET" --manifest-path "$ws/Cargo.toml" \
    --target-dir "$TARGET_DIR" "$@" >&2

  # The workspace's cdylib members, as cargo names their outputs (hyphens become underscores).
  members=$(sed -n '/^members *= *\[/,/\]/p' "$ws/Cargo.toml" | grep -o '"[^"]*"' | tr -d '"')
  for m in $members; do
    wasm="$OUT/${m//-/_}.wasm"
    if ! [ -f "$wasm" ]; then
      echo "build-guests: $wasm was not produced" >&2
      status=1
      continue
    fi
    header=$(od -An -tx1 -N8 "$wasm" | tr -d ' \n')
    case "$header" in
      0061736d0d000100) echo "$wasm" ;;
      0061736d01000000)
        echo "build-guests: $wasm is a core module, not a component" >&2
        status=1
        ;;
      *)
        echo "build-guests: $wasm is not WebAssembly (header $header)" >&2
        status=1
        ;;
    esac
  done
done

# ---- Python guests (examples/python, tests/guests-py): componentize-py, into target/wasm/python;
# their paths follow on stdout ----
scripts/build-guests-py.sh || status=1

exit "$status"
