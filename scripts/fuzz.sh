#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed time, one after the other (never in parallel: this
# machine has two cores), and prints each target's executions, speed and coverage.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     SECONDS per target, default 300; default: all targets
#
# Committed seeds are in fuzz/seeds/<target>/ (read only); what the fuzzer finds grows
# fuzz/corpus/<target>/ (ignored by git); crashes land in fuzz/artifacts/<target>/ and make the
# script exit non-zero. Full libFuzzer logs: fuzz/target/fuzz-logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-300}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(decode config allowlist)
fi

# cargo-fuzz needs a nightly toolchain (sanitizer flags); install what is missing, once.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly install cargo-fuzz --locked
fi

# Build every target once, first: a compile error shows before any time is spent, and every
# target then fuzzes the same snapshot of the tree (cargo fuzz run would rebuild whenever a file
# changed meanwhile, and count the build in no one's time).
cargo +nightly fuzz build 2>&1 | tail -n 3
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="target/$triple/release"
commit="$(git rev-parse --short HEAD)"
if ! git diff --quiet HEAD -- ../host ../cli ../fuzz; then
    commit="$commit+local changes"
fi
mkdir -p target/fuzz-logs
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="target/fuzz-logs/$t.log"
    extra=()
    if [ -f "dict/$t.dict" ]; then
        extra+=("-dict=dict/$t.dict")
    fi
    echo "== $t: ${secs}s ($(date -u +%FT%TZ), commit $commit)"
    status=0
    mkdir -p "artifacts/$t"
    "$bin_dir/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -timeout=10 \
        -print_final_stats=1 "${extra[@]}" "corpus/$t" "seeds/$t" >"$log" 2>&1 || status=$?
    # libFuzzer's last status line: "#N DONE cov: C ft: F corp: U/Sb ... exec/s: E ..."
    last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    cov="$(grep -oE 'cov: [0-9]+' <<<"$last" | cut -d' ' -f2 || true)"
    ft="$(grep -oE 'ft: [0-9]+' <<<"$last" | cut -d' ' -f2 || true)"
    corp="$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" | cut -d' ' -f2 || true)"
    files="$(find "corpus/$t" -type f | wc -l)"
    line="$t: runs=${runs:-?} exec/s=${speed:-?} cov=${cov:-?} ft=${ft:-?} corp=${corp:-?} corpus_files=$files status=$status"
    echo "$line"
    summary+=("$line")
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        grep -E 'ERROR|panicked|Test unit written' "$log" | head -n 10 || true
    fi
done

echo "== summary ($(date -u +%F), commit $commit, ${secs}s per target)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
