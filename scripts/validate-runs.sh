#!/usr/bin/env bash
# Trace validation of many real runs: for 3 and 5 replicas, RUNS chaos runs (every fault kind,
# step logs on), each checked for linearizability by the chaos harness and transition by
# transition against the model by `paxos-conform validate`. Runs snapshot often (two in three
# of the small ones), so that compaction, snapshot messages and installs are validated too.
# Prints one line per run and the totals; exit 1 if any run failed.
#
#   scripts/validate-runs.sh [RUNS] [FIRST_SEED]      # default 10 runs per size, seeds from 1000
#
# WORKLOAD=small (the default) runs 6 s with 2 clients of 2 operations on one key in a log of 4
# slots, snapshotting after every applied slot, every other run with the clients acting
# together: short runs that reach every rule quickly.
# WORKLOAD=full runs the chaos harness's own workload (6 clients, 4 keys, as many operations
# as the run allows, no slot limit) for DURATION seconds (default 30), snapshotting every 500
# applied slots: tens of thousands of operations per run, validated against the model's
# unbounded representation. CI runs one full run of each size.
#
# SEGMENT_MIB=N rotates each replica's step log every N MiB (`--step-log-segment-mib`): every
# file after a replica's first begins with a checkpoint, which validation checks.
# DROP_FIRST=K (with SEGMENT_MIB) validates each run a second time without each replica's
# first K files (as `serve --step-log-keep` would have deleted them, for a replica with more):
# those replicas are validated from their first remaining checkpoint.
# READ_POLICY=lease runs the replicas with leases (default: the read index),
# CLOCK_DRIFT_PPM=N runs the initial leader's clock N ppm off the host's, and READER_OPS=N
# has the read-only client issue N reads (default 20; reads are no commands, so the model
# does not bound their number).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
seed=${2:-1000}
policy=(--read-policy "${READ_POLICY:-read-index}")
reader_ops=(--reader-ops "${READER_OPS:-20}")
drift=()
segments=()
[ -n "${SEGMENT_MIB:-}" ] && segments=(--step-log-segment-mib "$SEGMENT_MIB")
[ -n "${CLOCK_DRIFT_PPM:-}" ] && drift=(--clock-drift-ppm="$CLOCK_DRIFT_PPM")
case "${WORKLOAD:-small}" in
  small) workload=(--clients 2 --keys 1 --ops-per-client 2 --slot-limit 4 --window 2
                   --duration-secs 6 --hold-ms 800)
         interval=1 every=3 ;;
  full) workload=(--duration-secs "${DURATION:-30}")
        # The harness's own clients read as well; a reader client, and clients acting
        # together, need a bounded workload.
        reader_ops=()
        interval=500 every=0 ;;
  *) echo "WORKLOAD must be small or full (got ${WORKLOAD})" >&2; exit 2 ;;
esac
cargo build --release --quiet -p paxos-impl --bin paxos-node
cargo build --release --quiet -p paxos-conformance --bin paxos-conform
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failed=0
for nodes in 3 5; do
  for _ in $(seq 1 "$runs"); do
    seed=$((seed + 1))
    dir="$out/n$nodes-s$seed"
    mkdir -p "$dir"
    chaos_code=0
    # Every other run, the clients act together, so that the leader proposes runs of slots.
    together=()
    [ "$every" -ne 0 ] && [ $((seed % 2)) -eq 0 ] && together=(--together)
    snapshots=(--snapshot-interval-slots "$interval")
    [ "$every" -ne 0 ] && [ $((seed % every)) -eq 0 ] && snapshots=()
    ran_from=$(date +%s%N)
    target/release/paxos-node chaos --nodes "$nodes" --seed "$seed" "${workload[@]}" \
      "${together[@]}" "${snapshots[@]}" "${policy[@]}" "${reader_ops[@]}" "${drift[@]}" \
      --step-logs "${segments[@]}" --data-dir "$dir/cluster" --report "$dir/chaos.json" >"$dir.chaos.log" 2>&1 \
      || chaos_code=$?
    validate_code=0
    started=$(date +%s%N)
    target/release/paxos-conform validate --json "$dir/cluster" >"$dir/validation.json" \
      2>"$dir.validate.log" || validate_code=$?
    # Wall times in ms: the run's (the harness's whole command, history check included) is
    # the anchor validation's is compared with.
    echo "$(( ($(date +%s%N) - started) / 1000000 )) $(( (started - ran_from) / 1000000 ))" \
      >"$dir/validate-ms"
    if [ -n "${DROP_FIRST:-}" ]; then
      mkdir -p "$dir/windowed"
      python3 - "$dir/cluster" "$dir/windowed" "$DROP_FIRST" <<'PY'
import pathlib, sys
cluster, windowed, drop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
by_replica = {}
for log in sorted(cluster.glob("*.steps.jsonl")):
    by_replica.setdefault(log.name.split(".")[0], []).append(log)
for logs in by_replica.values():
    for log in (logs[drop:] if len(logs) > drop else logs):
        (windowed / log.name).symlink_to(log.resolve())
PY
      target/release/paxos-conform validate --json "$dir/windowed" \
        >"$dir/validation-windowed.json" 2>>"$dir.validate.log" || validate_code=$?
    fi
    if [ "$chaos_code" -ne 0 ] || [ "$validate_code" -ne 0 ]; then
      failed=1
      echo "FAILED: $nodes replicas, seed $seed (chaos exit $chaos_code, validate exit $validate_code)"
      cat "$dir.validate.log" "$dir/validation.json" "$dir/validation-windowed.json" 2>/dev/null \
        | head -40
      trap - EXIT
      echo "kept in $out"
    fi
  done
done
python3 - "$out" <<'PY'
import json, pathlib, sys
totals = {}
for nodes in (3, 5):
    t = totals.setdefault(nodes, dict(runs=0, ops=0, faults=0, leader_changes=0, transitions=0,
                                      starts=0, received=0, lost=0, rejections=0, linearizable=0,
                                      on_runs=0, taken=0, installed=0, snapshot_steps=0,
                                      reads=0, lease_reads=0, ratios=[]))
    for d in sorted(pathlib.Path(sys.argv[1]).glob(f"n{nodes}-s*")):
        if not d.is_dir():
            continue
        try:
            c = json.loads((d / "chaos.json").read_text())
            v = json.loads((d / "validation.json").read_text())
        except (OSError, ValueError):
            continue
        t["runs"] += 1
        t["ops"] += c["operations"]["total"]
        t["reads"] += c["operations"]["reads"]
        t["lease_reads"] += c.get("lease_reads", 0)
        t["faults"] += sum(c["faults"].values())
        t["leader_changes"] += c["leader_changes"]
        t["linearizable"] += c["linearizable"] is True
        t["transitions"] += v["transitions"]
        t["starts"] += v["starts"]
        t["received"] += v["messages_received"]
        t["lost"] += v["records_lost_in_crashes"]
        t["rejections"] += v["rejections_total"]
        t["on_runs"] += v["runs"]
        t["taken"] += c.get("snapshots_taken", 0)
        t["installed"] += c.get("snapshots_installed", 0)
        kinds = v["by_kind"]
        try:
            validate_ms, run_ms = map(int, (d / "validate-ms").read_text().split())
            timing = (f"validated in {validate_ms / 1000:.1f} s, "
                      f"{run_ms / validate_ms:.1f}x faster than the run's {run_ms / 1000:.1f} s")
            t["ratios"].append(run_ms / validate_ms)
        except (OSError, ValueError, ZeroDivisionError):
            timing = "validation time unknown"
        t["snapshot_steps"] += kinds.get("compact", 0) + kinds.get("snapshot", 0)
        print(f"{nodes} replicas seed {d.name.split('-s')[1]}: {c['operations']['total']} ops, "
              f"{sum(c['faults'].values())} faults {dict(c['faults'])}, "
              f"{c['leader_changes']} leader changes, linearizable {c['linearizable']}; "
              f"{v['transitions']} transitions ({v['starts']} starts, {v['runs']} on runs), "
              f"{c.get('snapshots_taken', 0)} snapshots taken, "
              f"{c.get('snapshots_installed', 0)} installed, {c.get('lease_reads', 0)} lease reads; "
              f"{v.get('checkpoints', 0)} checkpoints; "
              f"{v['rejections_total']} rejections; {timing}")
        windowed = d / "validation-windowed.json"
        if windowed.exists():
            try:
                w = json.loads(windowed.read_text())
            except ValueError:
                # The validator stopped with an error (printed above, with the run's seed).
                print("  without each replica's first files: no report (validation failed)")
                t["rejections"] += 1
                continue
            t["rejections"] += w["rejections_total"]
            print(f"  without each replica's first files: {w['transitions']} transitions, "
                  f"{w.get('windows', 0)} replicas from a checkpoint, "
                  f"{w.get('received_before_windows', 0)} receipts taken as sent before, "
                  f"{w['rejections_total']} rejections")
print()
print("| replicas | runs | operations | reads (under a lease) | faults | leader changes | linearizable | transitions validated | of them on runs of slots or requests | starts | messages checked sent | records lost in crashes | snapshots taken / installed | compact and snapshot steps validated | rejections | validation faster than the run |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for nodes, t in totals.items():
    print(f"| {nodes} | {t['runs']} | {t['ops']} | {t['reads']} ({t['lease_reads']}) | {t['faults']} | {t['leader_changes']} | "
          f"{t['linearizable']}/{t['runs']} | {t['transitions']} | {t['on_runs']} | {t['starts']} | {t['received']} | "
          f"{t['lost']} | {t['taken']} / {t['installed']} | {t['snapshot_steps']} | "
          f"{t['rejections']} | "
          + (f"{min(t['ratios']):.1f}-{max(t['ratios']):.1f}x |" if t['ratios'] else "? |"))
PY
exit "$failed"
