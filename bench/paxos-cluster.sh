# Sourced by the bench scripts: a fresh 3-replica `paxos-node cluster` on loopback, started
# and stopped the same way everywhere. The caller sets `bin` (the paxos-node binary), `work` (a
# temporary directory), `peer_port` and `client_port` (the first of three consecutive ports
# each); `ep` is the cluster's client endpoints. `cluster_args` (an array, optional) is passed
# to `paxos-node cluster` as well (say, `--step-logs`).
# shellcheck shell=bash

cluster_args=("${cluster_args[@]}")
ep="127.0.0.1:$client_port,127.0.0.1:$((client_port + 1)),127.0.0.1:$((client_port + 2))"
cluster_pid=

# Starts the cluster with empty data directories and waits up to 10 s for a leader; the
# optional argument is its read policy (none: the binary's default, so that binaries from
# before read policies existed still start, as bench/ab-service.sh needs).
start_cluster() {
  rm -rf "$work/cluster"
  local policy=()
  [ -n "${1:-}" ] && policy=(--read-policy "$1")
  "$bin" cluster --nodes 3 --data-dir "$work/cluster" --peer-port "$peer_port" \
    --client-port "$client_port" "${policy[@]}" "${cluster_args[@]}" >"$work/cluster.out" 2>&1 &
  cluster_pid=$!
  for _ in $(seq 100); do
    "$bin" status --endpoints "$ep" 2>/dev/null | grep -q '"role":"leading"' && return 0
    sleep 0.1
  done
  echo "the paxos cluster did not start" >&2
  cat "$work/cluster.out" >&2
  exit 1
}

# Stops it (Ctrl-C to `paxos-node cluster`, which stops its replicas); a no-op when stopped.
stop_cluster() {
  [ -n "$cluster_pid" ] || return 0
  kill -INT "$cluster_pid" 2>/dev/null || true
  wait "$cluster_pid" 2>/dev/null || true
  cluster_pid=
}
