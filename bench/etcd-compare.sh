#!/usr/bin/env bash
# The service against etcd, side by side, for specs/results.md ("The service against etcd"):
# a fresh 3-replica `paxos-node cluster` and a fresh 3-member etcd cluster per point, both on
# loopback with their data directories under one temporary directory (same disk, fsync on:
# our WAL's group commit, etcd's default), both driven by the same load generator
# (`paxos-node bench`, `--system etcd` for etcd's JSON gateway): 1, 16, 64 and 256 closed-loop
# clients, 100-byte values, writes only and 90% reads (ours with each read policy: read-index,
# log, lease; READ_POLICIES to choose). Also measures one fsync on this disk and
# one loopback TCP round trip, writes specs/etcd-compare.csv and the SVG plots, and prints the
# tables.
#
#   bench/etcd-compare.sh [SECONDS_PER_POINT]     (default 10)
#
# Installs etcd (Debian packages etcd-server, etcd-client) if it is missing. Every etcd request
# goes to the etcd leader, so etcd never pays a forward; ours follow redirects to our leader.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
clients_list=${CLIENTS:-"1 16 64 256"}
mixes=${MIXES:-"0 0.9"}
read_policies=${READ_POLICIES:-"read-index log lease"}

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "== installing etcd (etcd-server, etcd-client)"
  if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get install -y etcd-server etcd-client >/dev/null
fi
etcd --version | head -1

cargo build --release -p paxos-impl --bin paxos-node -p paxos-bench --bin bench-plot
bin=target/release/paxos-node
work=$(mktemp -d)
csv=$work/results.csv
etcd_ports=(23790 23791 23792)
etcd_peer_ports=(23800 23801 23802)
etcd_pids=()
peer_port=17400
client_port=18400
# shellcheck source=bench/paxos-cluster.sh
. bench/paxos-cluster.sh

etcd_endpoints() {
  local out=() i
  for i in 0 1 2; do out+=("127.0.0.1:${etcd_ports[$i]}"); done
  (IFS=,; echo "${out[*]}")
}

start_etcd() {
  rm -rf "$work/etcd"
  local initial=() i
  for i in 0 1 2; do initial+=("e$i=http://127.0.0.1:${etcd_peer_ports[$i]}"); done
  initial=$(IFS=,; echo "${initial[*]}")
  etcd_pids=()
  for i in 0 1 2; do
    etcd --name "e$i" --data-dir "$work/etcd/e$i" \
      --listen-client-urls "http://127.0.0.1:${etcd_ports[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${etcd_ports[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${etcd_peer_ports[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${etcd_peer_ports[$i]}" \
      --initial-cluster "$initial" --initial-cluster-state new \
      --initial-cluster-token paxos-bench --logger zap --log-level error \
      >"$work/etcd-$i.out" 2>&1 &
    etcd_pids+=($!)
  done
  for _ in $(seq 100); do
    if etcdctl --endpoints "$(etcd_endpoints)" endpoint health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "etcd did not start" >&2; cat "$work"/etcd-*.out >&2; exit 1
}

stop_etcd() {
  local pid
  for pid in "${etcd_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${etcd_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  etcd_pids=()
}

# The etcd endpoints, the leader first (`endpoint status`: the fifth field is "is leader").
etcd_leader_first() {
  local status leader others
  status=$(etcdctl --endpoints "$(etcd_endpoints)" endpoint status)
  leader=$(echo "$status" | awk -F', ' '$5 == "true" {print $1}')
  others=$(echo "$status" | awk -F', ' '$5 != "true" {print $1}' | paste -sd, -)
  [ -n "$leader" ] || { echo "no etcd leader: $status" >&2; exit 1; }
  echo "$leader,$others"
}

trap 'stop_cluster; stop_etcd; rm -rf "$work"' EXIT

echo "== one fsync on this disk: 500 appends of 256 bytes to a file in $work, each followed by fdatasync (what a WAL commit does)"
read -r fsync_us fsync_mean_us < <(python3 - "$work/fsync-probe" <<'EOF'
import os, statistics, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
times = []
for _ in range(500):
    t0 = time.perf_counter()
    os.write(fd, b"x" * 256)
    os.fdatasync(fd)
    times.append(time.perf_counter() - t0)
print(f"{statistics.median(times) * 1e6:.0f} {statistics.mean(times) * 1e6:.0f}")
os.close(fd)
os.unlink(sys.argv[1])
EOF
)
echo "one append + fdatasync: median ${fsync_us} µs, mean ${fsync_mean_us} µs"

echo "== one loopback TCP round trip (1-byte ping-pong, 20000 times)"
rtt_us=$(python3 - <<'EOF'
import socket, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def echo():
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (data := conn.recv(1)):
        conn.sendall(data)
threading.Thread(target=echo, daemon=True).start()
c = socket.create_connection(srv.getsockname())
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
n = 20000
t0 = time.perf_counter()
for _ in range(n):
    c.sendall(b"x"); c.recv(1)
print(f"{(time.perf_counter() - t0) / n * 1e6:.1f}")
EOF
)
echo "one loopback round trip: ${rtt_us} µs"
printf 'fsync_median_us,%s\nfsync_mean_us,%s\nloopback_rtt_us,%s\n' "$fsync_us" "$fsync_mean_us" \
  "$rtt_us" >"$work/probes.csv"

for mix in $mixes; do
  # Writes only: the read policy plays no part. With reads: each policy.
  policies=$read_policies
  [ "$mix" = 0 ] && policies=read-index
  for clients in $clients_list; do
    for policy in $policies; do
      start_cluster "$policy"
      echo "== paxos ($policy reads): $bin bench --endpoints $ep --clients $clients --duration $secs --value-size 100 --read-ratio $mix"
      "$bin" bench --endpoints $ep --clients "$clients" --duration "$secs" --value-size 100 \
        --read-ratio "$mix" --csv "$csv" 2>/dev/null
      stop_cluster
    done
    start_etcd
    etcd_ep=$(etcd_leader_first)
    echo "== etcd: $bin bench --system etcd --endpoints $etcd_ep --clients $clients --duration $secs --value-size 100 --read-ratio $mix"
    "$bin" bench --system etcd --endpoints "$etcd_ep" --clients "$clients" --duration "$secs" \
      --value-size 100 --read-ratio "$mix" --csv "$csv" 2>/dev/null
    stop_etcd
  done
done

cp "$csv" specs/etcd-compare.csv
cp "$work/probes.csv" specs/etcd-compare-probes.csv
target/release/bench-plot --csv specs/etcd-compare.csv --probes specs/etcd-compare-probes.csv \
  --out specs
