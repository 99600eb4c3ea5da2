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
# Every publishable crate packages (manifest, file list, the guest contract inside): a publish
# dry run without the verification build, which would compile wasmtime a second time with the
# package's own feature set (about 15 minutes on a fresh machine). What that build would catch
# beyond it, a warning in the default build without test-support, the lint of the library
# alone catches (`-p wazoo` resolves features for it alone, as its package would).
cargo publish --workspace --dry-run --no-verify --locked --allow-dirty
cargo clippy -p wazoo --lib --locked -- -D warnings
cargo test --workspace --locked "$@"
