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
