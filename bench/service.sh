#!/usr/bin/env bash
# Service benchmark for specs/results.md: a fresh 3-node loopback cluster (fsync on) per row,
# `paxos-node bench` with 100-byte values at 1, 16 and 64 clients, then a failover run: load from
# 16 clients, kill -9 of the leader, and the time until a new write is acknowledged.
#
#   bench/service.sh [SECONDS_PER_ROW]      (default 20; needs a release build of paxos-node)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
bin=target/release/paxos-node
[ -x "$bin" ] || cargo build --release -p paxos-impl --bin paxos-node
work=$(mktemp -d)
peer_port=17300
client_port=18300
# shellcheck source=bench/paxos-cluster.sh
. bench/paxos-cluster.sh
trap 'stop_cluster; rm -rf "$work"' EXIT

for clients in 1 16 64; do
  start_cluster
  echo "== $bin bench --endpoints $ep --clients $clients --duration $secs --value-size 100"
  "$bin" bench --endpoints $ep --clients "$clients" --duration "$secs" --value-size 100 2>/dev/null
  stop_cluster
done

echo "== failover: 16 clients of load, kill -9 of the leader, time to the next acknowledged write"
start_cluster
"$bin" bench --endpoints $ep --clients 16 --duration 12 --value-size 100 >"$work/failover-bench.out" 2>&1 &
bench_pid=$!
sleep 4
leader_pid=$("$bin" status --endpoints $ep 2>/dev/null | grep '"role":"leading"' \
  | sed -E 's/.*"pid":([0-9]+).*/\1/')
t0=$(date +%s.%N)
kill -9 "$leader_pid"
"$bin" put failover-probe done --endpoints $ep --timeout-ms 30000 >/dev/null
t1=$(date +%s.%N)
echo "kill -9 of leader pid $leader_pid; next write acknowledged after $(awk "BEGIN{printf \"%.3f\", $t1 - $t0}") s"
wait "$bench_pid" || true
cat "$work/failover-bench.out"
stop_cluster
