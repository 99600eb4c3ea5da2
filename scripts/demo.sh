#!/usr/bin/env bash
# The main job: builds wazoo, starts a private ZooKeeper on a free loopback port in a temp dir
# (unless WAZOO_HOSTS names one), runs the tour (state listener, DataWatch, ChildrenWatch, a
# persistent recursive watch and completion callbacks, with visible activity), and stops
# everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p wazoo --example tour

hosts="${WAZOO_HOSTS:-}"
if [ -z "$hosts" ]; then
  jars="${WAZOO_ZK_JARS:-/usr/share/java}"
  cp="${WAZOO_ZK_CLASSPATH:-$jars/zookeeper.jar:$jars/zookeeper-jute.jar:$jars/slf4j-api.jar:$jars/slf4j-simple.jar:$jars/metrics-core.jar:$jars/snappy-java.jar}"
  dir=$(mktemp -d /tmp/wazoo-demo-XXXXXX)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))
  mkdir -p "$dir/data"
  cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
CFG
  echo "demo: starting a private ZooKeeper on 127.0.0.1:$port in $dir"
  java -Xms64m -Xmx256m -XX:+UseSerialGC -Dzookeeper.admin.enableServer=false -cp "$cp" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >"$dir/zookeeper.log" 2>&1 &
  zk_pid=$!
  trap 'kill $zk_pid 2>/dev/null; wait $zk_pid 2>/dev/null; rm -rf "$dir"; echo "demo: ZooKeeper stopped"' EXIT
  for _ in $(seq 1 150); do
    if [ "$(exec 3<>/dev/tcp/127.0.0.1/$port && printf ruok >&3 && cat <&3)" = imok ] 2>/dev/null; then break; fi
    sleep 0.2
  done
  hosts="127.0.0.1:$port"
fi
echo "demo: Ctrl-C to stop"
target/release/examples/tour "$hosts"
