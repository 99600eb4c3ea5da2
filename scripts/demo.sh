#!/usr/bin/env bash
# The main job: builds the example plugins and the `wazoo` binary, runs
# `wazoo run examples/demo.toml` (five wasm plugins on a private ZooKeeper that it starts
# itself), and drives activity with the `wazoo` CLI every second or so, so the plugins' reactions
# show in the log: audit-log reports every change, config-mirror copies /config to /mirror,
# async-counter counts /counter up to 5, session-reporter keeps /reporters/demo, and the Python
# config validator writes /config/db.verdict (`ok` for JSON, the parse error otherwise). Ctrl-C stops
# everything: wazoo closes its session and stops its ZooKeeper.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-guests.sh >/dev/null
cargo build --release -p wazoo-cli --bin wazoo

wazoo=target/release/wazoo
tmp=$(mktemp -d /tmp/wazoo-demo-XXXXXX)
wazoo_pid=""

stop() {
  # Signal wazoo before anything else, and survive a closed output (e.g. a pipe into tee).
  trap - INT TERM EXIT
  trap '' PIPE
  if [ -n "$wazoo_pid" ] && kill -0 "$wazoo_pid" 2>/dev/null; then
    kill -TERM "$wazoo_pid" 2>/dev/null || true
    echo "demo: stopping wazoo" >&2 || true
    for _ in $(seq 1 200); do
      kill -0 "$wazoo_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$wazoo_pid" 2>/dev/null || true
    wait "$wazoo_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  echo "demo: stopped" >&2 || true
}
trap stop INT TERM EXIT

# wazoo runs in a process group of its own (job control on), so Ctrl-C reaches only this script,
# whose trap then sends wazoo one SIGTERM.
set -m
RUST_LOG="${RUST_LOG:-info}" "$wazoo" run examples/demo.toml >"$tmp/stdout" &
wazoo_pid=$!
set +m

# wazoo prints `wazoo: ZooKeeper at HOST:PORT`, the metrics address, then `wazoo: ready`.
for _ in $(seq 1 1200); do
  grep -q '^wazoo: ready' "$tmp/stdout" 2>/dev/null && break
  kill -0 "$wazoo_pid" 2>/dev/null || { echo "demo: wazoo run exited early" >&2; exit 1; }
  sleep 0.1
done
grep -q '^wazoo: ready' "$tmp/stdout" || { echo "demo: wazoo run did not get ready in 120 s" >&2; exit 1; }
WAZOO_HOSTS=$(sed -n 's/^wazoo: ZooKeeper at //p' "$tmp/stdout")
export WAZOO_HOSTS
metrics=$(sed -n 's|^wazoo: metrics at http://\([^/]*\)/metrics|\1|p' "$tmp/stdout")
echo "demo: wazoo is running against ZooKeeper at $WAZOO_HOSTS; metrics at http://$metrics/metrics" >&2
echo "demo: try in another terminal: WAZOO_HOSTS=$WAZOO_HOSTS $wazoo watch / --recursive" >&2
echo "demo: Ctrl-C to stop" >&2

say() { printf '\033[1mdemo: %s\033[0m\n' "$*" >&2; }
cli() { "$wazoo" "$@" >/dev/null || true; }

# Plugin counters from the metrics endpoint (bash's /dev/tcp, no curl needed).
show_metrics() {
  local host=${metrics%:*} port=${metrics##*:}
  exec 3<>"/dev/tcp/$host/$port" || return 0
  printf 'GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$metrics" >&3
  grep -E '^wazoo_plugin_calls_total' <&3 | sed 's/^/demo:   /' >&2 || true
  exec 3<&-
}

cli create /config --makepath
cli create /workers --makepath
i=0
while kill -0 "$wazoo_pid" 2>/dev/null; do
  i=$((i + 1))
  case $((i % 6)) in
    1)
      # Every other round the value is JSON, and the Python validator's verdict says so.
      if [ $((i % 12)) = 1 ]; then value="{\"db\": \"v$i\"}"; else value="v$i"; fi
      say "set /config/db = $value (config-mirror copies it to /mirror/db; audit-log reports it; the Python validator judges it)"
      "$wazoo" set /config/db "$value" >/dev/null 2>&1 || cli create /config/db "$value"
      ;;
    2)
      say "create /workers/job-$i (audit-log sees the children of /workers change)"
      cli create "/workers/job-$i" "job $i"
      ;;
    3)
      say "set /counter = 0 (async-counter counts it up to 5 through the completion lane)"
      "$wazoo" set /counter 0 >/dev/null 2>&1 || cli create /counter 0
      ;;
    4)
      say "/mirror/db holds: $("$wazoo" get /mirror/db 2>/dev/null || echo '(nothing yet)'); /counter holds: $("$wazoo" get /counter 2>/dev/null || true)"
      say "/config/db.verdict (Python) holds: $("$wazoo" get /config/db.verdict 2>/dev/null || echo '(nothing yet)')"
      ;;
    5)
      if "$wazoo" stat /flag >/dev/null 2>&1; then
        say "delete /flag (audit-log's exists binding reports the deletion)"
        cli delete /flag
      else
        say "create /flag (audit-log's exists binding reports the creation)"
        cli create /flag up
      fi
      ;;
    0)
      say "delete /workers/job-$((i - 4)) and /config/db (the mirror follows); plugin calls so far:"
      cli delete "/workers/job-$((i - 4))"
      cli delete /config/db
      show_metrics
      ;;
  esac
  sleep 1.5
done
echo "demo: wazoo exited" >&2
