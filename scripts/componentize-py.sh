# Sourced by scripts/setup.sh and scripts/build-py-plugin.sh: the pinned componentize-py (PyPI)
# that builds Python plugins, in a venv inside the repository's ignored target dir, so a clean
# clone builds it and every checkout uses the same version.
#
# 0.25.1 is the newest release (checked with `pip index versions componentize-py`); its
# components target WASI 0.2 and the component model without async, which the host's wasmtime
# 48 (concurrency support off) links against wit/plugin.wit's `plugin` world.
COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_PY_VENV=${WAZOO_PY_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/venv-py}
COMPONENTIZE_PY="$COMPONENTIZE_PY_VENV/bin/componentize-py"

# Installs the pinned componentize-py when it is missing or another version; quiet otherwise.
ensure_componentize_py() {
  local have
  have=$("$COMPONENTIZE_PY" --version 2>/dev/null || true)
  if [ "$have" = "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
    return 0
  fi
  if ! command -v python3 >/dev/null; then
    echo "setup: python3 is missing; install it (Debian: apt-get install python3 python3-venv)" >&2
    return 1
  fi
  echo "setup: installing componentize-py $COMPONENTIZE_PY_VERSION into $COMPONENTIZE_PY_VENV${have:+ (found $have)}" >&2
  if ! [ -x "$COMPONENTIZE_PY_VENV/bin/pip" ]; then
    python3 -m venv "$COMPONENTIZE_PY_VENV" >&2 || {
      echo "setup: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
      return 1
    }
  fi
  "$COMPONENTIZE_PY_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
  "$COMPONENTIZE_PY" --version >&2
}
