#!/usr/bin/env bash
# Installs what wazoo's tests and demo need, if missing: ZooKeeper 3.8 from Debian's package
# (with its Java runtime), the wasm32-wasip2 Rust target, and the pinned componentize-py for
# Python plugins. Idempotent; safe to run every time.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

if [ -z "${WAZOO_ZK_CLASSPATH:-}" ] && [ -z "${WAZOO_ZK_JARS:-}" ] && ! [ -f /usr/share/java/zookeeper.jar ]; then
  echo "setup: installing Debian's zookeeper package" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq zookeeper >/dev/null
fi
if ! command -v java >/dev/null; then
  echo "setup: installing a Java runtime" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq default-jre-headless >/dev/null
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 Rust target" >&2
  rustup target add wasm32-wasip2
fi
# Kazoo, for the recipes' interop tests (tests/tests/recipes.rs drives tests/kazoo/peer.py with
# Debian's /usr/bin/python3, or WAZOO_PYTHON).
if ! "${WAZOO_PYTHON:-/usr/bin/python3}" -c 'import kazoo' 2>/dev/null; then
  echo "setup: installing Debian's python3-kazoo" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-kazoo >/dev/null
fi
echo "setup: Kazoo $("${WAZOO_PYTHON:-/usr/bin/python3}" -c 'import kazoo.version as v; print(v.__version__)' 2>/dev/null || echo '(version unknown)') for the interop tests" >&2

# ---- Python plugins: the pinned componentize-py in target/venv-py (scripts/componentize-py.sh) ----
# shellcheck source=componentize-py.sh
. "$(dirname "$0")/componentize-py.sh"
ensure_componentize_py

# ---- JavaScript plugins: the componentize-js that guest-js/tools pins, in target/js-tools ----
# Installed with `npm ci` from the committed lock when missing or when the lock changed (the
# install keeps the lock's SHA-256 beside it).
JS_ROOT=$(cd "$(dirname "$0")/.." && pwd)
JS_TOOLS="$JS_ROOT/target/js-tools"
JS_LOCK_SUM=$(sha256sum "$JS_ROOT/guest-js/tools/package-lock.json" | cut -d' ' -f1)
if ! [ -x "$JS_TOOLS/node_modules/.bin/componentize-js" ] ||
  [ "$(cat "$JS_TOOLS/.lock-sha256" 2>/dev/null)" != "$JS_LOCK_SUM" ]; then
  if ! command -v npm >/dev/null; then
    echo "setup: npm is missing: install Node.js 20 or newer (with npm) for JavaScript plugins" >&2
    exit 1
  fi
  echo "setup: installing the pinned componentize-js (guest-js/tools) into $JS_TOOLS with npm ci" >&2
  rm -rf "$JS_TOOLS"
  mkdir -p "$JS_TOOLS"
  cp "$JS_ROOT/guest-js/tools/package.json" "$JS_ROOT/guest-js/tools/package-lock.json" "$JS_TOOLS/"
  (cd "$JS_TOOLS" && npm ci --no-audit --no-fund --loglevel=error) >&2
  echo "$JS_LOCK_SUM" >"$JS_TOOLS/.lock-sha256"
fi
