#!/usr/bin/env bash
# A/B of two paxos-node binaries (say, before and after a change) on the same machine, run in
# alternation so that a busy neighbour hurts both alike: per round and client count, a fresh
# 3-replica loopback cluster of each binary (fsync on), `paxos-node bench` writes of 100-byte
# values for SECONDS. Prints one CSV line per run: round, clients, binary, ops/s, p50 and p99
# latency, and the protocol messages per peer frame at the leader.
#
#   bench/ab-service.sh OLD_BIN NEW_BIN [ROUNDS] [SECONDS] [CLIENTS...]
#   bench/ab-service.sh /tmp/old/paxos-node target/release/paxos-node 3 8 64 256
#
# OLD_CLUSTER_ARGS and NEW_CLUSTER_ARGS add arguments to each side's `paxos-node cluster`, so
# one binary can be compared with itself under two settings:
#   NEW_CLUSTER_ARGS=--step-logs bench/ab-service.sh target/release/paxos-node target/release/paxos-node 3 8 64
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,12p "$0"; exit 2; }
old=$1
new=$2
rounds=${3:-3}
secs=${4:-8}
counts=("${@:5}")
[ ${#counts[@]} -gt 0 ] || counts=(64 256)
work=$(mktemp -d)
peer_port=17400
client_port=18400
# shellcheck source=bench/paxos-cluster.sh
. bench/paxos-cluster.sh
trap 'stop_cluster; rm -rf "$work"' EXIT
echo "round,clients,binary,ops_per_s,p50_ms,p99_ms,leader_msgs_per_frame"
for round in $(seq 1 "$rounds"); do
  for clients in "${counts[@]}"; do
    for which in old new; do
      if [ "$which" = old ]; then bin=$old; else bin=$new; fi
      if [ "$which" = old ]; then extra=${OLD_CLUSTER_ARGS:-}; else extra=${NEW_CLUSTER_ARGS:-}; fi
      read -r -a cluster_args <<<"$extra"
      start_cluster
      "$bin" bench --endpoints "$ep" --clients "$clients" --duration "$secs" --value-size 100 \
        --csv "$work/run.csv" >/dev/null 2>&1
      stop_cluster
      python3 - "$work/run.csv" "$round" "$clients" "$which" <<'PY'
import csv, sys
path, round_, clients, which = sys.argv[1:]
row = list(csv.DictReader(open(path)))[-1]
print(f"{round_},{clients},{which},{row['throughput_ops']},{row['p50_ms']},{row['p99_ms']},"
      f"{row['leader_msgs_per_frame']}")
PY
      rm -f "$work/run.csv"
    done
  done
done
