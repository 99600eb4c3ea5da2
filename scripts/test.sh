#!/usr/bin/env bash
# Runs every wazoo test: formatting and lints, unit tests, and the integration tests against real
# ZooKeeper servers (standalone and three-server ensembles) that the harness starts on free
# loopback ports. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# rust-version against the locked dependencies and the toolchain, then the MSRV build (the
# client-only library and the workspace; the tests below reuse it).
scripts/msrv.sh
# The client-only library (default-features = false): lint-clean, and without wasmtime.
cargo clippy -p wazoo --no-default-features --all-targets --locked -- -D warnings
client_tree="$(cargo tree -p wazoo --no-default-features -e normal --locked)"
if grep -iE 'wasmtime|cranelift' <<<"$client_tree"; then
    echo "test.sh: wazoo --no-default-features depends on wasmtime or cranelift (above)" >&2
    exit 1
fi
# Every publishable crate packages and builds from its package (publish = false ones are
# skipped); the verification is also the default build without test-support, which must not warn.
package_log="$(mktemp)"
trap 'rm -f "$package_log"' EXIT
cargo publish --workspace --dry-run --locked --allow-dirty 2>&1 | tee "$package_log"
if grep -E '^warning: `[^`]+` \([^)]*\) generated [0-9]+ warnings?' "$package_log"; then
    echo "test.sh: a crate warns when built from its package (above)" >&2
    exit 1
fi
cargo test --workspace --locked "$@"
