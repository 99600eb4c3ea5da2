#!/usr/bin/env bash
# The MSRV build. The workspace's rust-version ([workspace.package] in Cargo.toml) must be no
# lower than the rust-version of any locked dependency (or it promises a toolchain they refuse),
# and it must be the toolchain that builds here: the machine has that one toolchain and fetches
# no other, so the MSRV build is this build, checked to be one. Then builds the client-only
# library (wazoo --no-default-features) and the workspace with it.
set -euo pipefail
cd "$(dirname "$0")/.."

ours="$(sed -n '/^\[workspace\.package\]/,/^\[/s/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml)"
if [ -z "$ours" ]; then
    echo "msrv: no rust-version in [workspace.package] of Cargo.toml" >&2
    exit 1
fi
# 1.95 and 1.95.0 are the same promise.
norm() { if [[ "$1" =~ ^[0-9]+\.[0-9]+$ ]]; then echo "$1.0"; else echo "$1"; fi; }

# Every package cargo metadata knows (the lock file's, ours included) declares one or none.
metadata="$(cargo metadata --format-version 1 --locked)"
highest="$(grep -oE '"rust_version":"[0-9.]+"' <<<"$metadata" | cut -d'"' -f4 |
    while read -r v; do norm "$v"; done | sort -V | tail -n 1)"
if [ -z "$highest" ]; then
    echo "msrv: cargo metadata named no rust_version at all" >&2
    exit 1
fi
if [ "$(norm "$ours")" != "$highest" ]; then
    echo "msrv: the workspace's rust-version is $ours, lower than a locked dependency's ($highest)" >&2
    if command -v jq >/dev/null; then
        jq -r --arg v "${highest%.0}" '.packages[] | select(.rust_version == $v or
            .rust_version == ($v + ".0")) | "msrv:   \(.name) \(.version) needs \(.rust_version)"' \
            <<<"$metadata" >&2
    fi
    exit 1
fi
toolchain="$(rustc --version | awk '{print $2}')"
if [ "$(norm "$ours" | cut -d. -f1,2)" != "$(cut -d. -f1,2 <<<"$toolchain")" ]; then
    echo "msrv: rust-version is $ours but the toolchain is $toolchain: this build is not the MSRV build" >&2
    exit 1
fi
echo "msrv: rust-version $ours, the highest a locked dependency declares, built with $toolchain"
cargo build -p wazoo --no-default-features --locked
cargo build --workspace --locked
