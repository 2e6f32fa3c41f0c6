#!/usr/bin/env bash
# Runs the model-checking ladder recorded in specs/results.md and prints one markdown row per
# configuration: unique states, generated states, depth, wall time, states/second, peak memory.
# Usage: bench/ladder.sh [TIMEOUT_SECONDS [PATTERN]]
#   each row stops at the timeout and says so; PATTERN keeps only rows containing it (e.g. multi)
set -u
limit=${1:-300}
pattern=${2:-}
cd "$(dirname "$0")/.."
[[ -z "${PAXOS_MODEL_BIN:-}" ]] && cargo build --release -q -p paxos-model
bin=${PAXOS_MODEL_BIN:-target/release/paxos-model}
rows=(
  "synod --proposers 1 --rounds 1"
  "synod --proposers 1 --rounds 2"
  "synod --proposers 1 --rounds 3"
  "synod --proposers 1 --rounds 2 --lossy"
  "synod --proposers 1 --rounds 2 --duplicating"
  "synod --proposers 1 --rounds 2 --crashes 1"
  "synod --proposers 2 --rounds 1 --no-symmetry"
  "synod --proposers 2 --rounds 1"
  "synod --proposers 2 --rounds 1 --lossy"
  "synod --proposers 2 --rounds 1 --duplicating"
  "synod --proposers 2 --rounds 1 --crashes 1"
  "synod --proposers 2 --rounds 2"
  "synod --proposers 2 --rounds 3"
  "synod --proposers 1 --acceptors 5 --rounds 1"
  "synod --proposers 1 --acceptors 5 --rounds 2"
  "multi --rounds 1 --elections 0 --clients 2"
  "multi --commands 1"
  "multi --commands 1 --retries 1"
  "multi --commands 1 --retries 1 --no-symmetry"
  "multi --commands 1 --lossy"
  "multi --commands 1 --duplicating"
  "multi --commands 1 --crashes 1"
  "multi --commands 1 --rounds 3 --elections 2"
  "multi"
  "multi --no-symmetry"
  "multi --strategy bfs"
  "multi --clients 2"
  "multi --slots 3 --commands 3"
  "multi --replicas 5 --commands 1"
  "lamport --acceptors 3 --values 2 --max-ballot 1"
  "lamport --acceptors 3 --values 2 --max-ballot 2"
  "lamport --acceptors 3 --values 2 --max-ballot 3"
)
echo "| command | unique | generated | depth | time (s) | states/s | peak RSS (MB) | complete |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for row in "${rows[@]}"; do
  [[ -n "$pattern" && "$row" != *"$pattern"* ]] && continue
  out=$(mktemp)
  # shellcheck disable=SC2086
  /usr/bin/time -f "%M" -o "$out.mem" "$bin" check $row --json --timeout "$limit" --trace-dir /tmp/ladder-traces >"$out" 2>/dev/null
  python3 - "$out" "$out.mem" "$row" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
rss_mb = int(open(sys.argv[2]).read().split()[-1]) / 1024
print(f"| `paxos-model check {sys.argv[3]}` | {report['unique_states']:,} | {report['states']:,} | "
      f"{report['max_depth']} | {report['elapsed_seconds']:.2f} | {report['states_per_second']:,.0f} | "
      f"{rss_mb:,.0f} | {'yes' if report['complete'] else 'no (' + report['stop_reason'] + ')'} |")
PY
  rm -f "$out" "$out.mem"
done
