#!/usr/bin/env bash
# Runs every wazoo test: formatting and lints, unit tests, and the integration tests against real
# ZooKeeper servers (standalone and three-server ensembles) that the harness starts on free
# loopback ports. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
