#!/usr/bin/env bash
# Regenerates the regression traces of this directory (specs/trace-format.md): every seeded
# bug's counterexample at its witness configuration (`paxos-model bugs` lists the flags), and a
# few long random walks of correct configurations with crashes, loss and duplication.
# `paxos-conform replay specs/traces/*.json` must pass on them (CI runs it).
#
# Divergence traces that `paxos-conform check` or a random lockstep walk found and that were
# fixed are kept here too (named *-divergence-*.json): this script does not touch them. A
# failing walk writes its trace under the temp dir's paxos-walk-divergences/.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p paxos-model
model=target/release/paxos-model
out=specs/traces

rm -f "$out"/synod-walk-*.json "$out"/multi-walk-*.json
find "$out" -name '*.json' ! -name '*-divergence-*' -delete

# Seeded-bug counterexamples (shortest, by single-threaded BFS; accepted-keeps-old-value by
# seeded random search, its state space being over 20M states).
for bug in accept-below-promise ignore-promise-values promise-quorum-off-by-one default-value \
           learner-mixed-ballots; do
    $model export-traces synod --bug "$bug" --walks 0 --out "$out"
done
$model export-traces synod --bug forget-promise --crashes 1 --walks 0 --out "$out"
$model export-traces synod --bug accepted-keeps-old-value --proposers 3 --values 2 --walks 0 \
    --out "$out"
for bug in promise-merge-off-by-one noop-overwrites-accepted accept-below-promise \
           commit-without-majority apply-out-of-order reply-before-commit; do
    $model export-traces multi --bug "$bug" --walks 0 --out "$out"
done
$model export-traces multi --bug skip-phase-1-after-nack --clients 2 --walks 0 --out "$out"
$model export-traces multi --bug gap-fill-fabricates --clients 2 --walks 0 --out "$out"
$model export-traces multi --bug ignore-client-sequence --commands 1 --retries 1 --walks 0 \
    --out "$out"
for bug in next-slot-ignores-compaction promise-hides-compaction; do
    $model export-traces multi --bug "$bug" --clients 2 --compactions 1 --spread-clients \
        --walks 0 --out "$out"
done
$model export-traces multi --bug install-older-snapshot --rounds 1 --elections 0 \
    --compactions 4 --catch-ups 2 --walks 0 --out "$out"
$model export-traces multi --bug catch-up-sends-votes --commands 1 --slots 1 --rounds 1 \
    --elections 0 --catch-ups 1 --walks 0 --out "$out"
$model export-traces multi --bug compact-past-applied --clients 2 --rounds 1 --elections 0 \
    --compactions 2 --walks 0 --out "$out"
for bug in read-without-confirmation read-before-election-writes confirm-above-promise; do
    $model export-traces multi --bug "$bug" --commands 1 --slots 1 --window 1 --reads 1 \
        --walks 0 --out "$out"
done
# Two concurrent reads: DFS bounded at the bug's search depth (MultiBug::search_depth).
$model export-traces multi --bug read-joins-outstanding-round --commands 1 --slots 1 \
    --window 1 --reads 2 --walks 0 --out "$out"

# Leases: the initial leader's bootstrap grant holds throughout (no ticks needed).
for bug in lease-outlives-promise lease-grantor-campaigns; do
    $model export-traces multi --bug "$bug" --commands 1 --slots 1 --window 1 --reads 1 \
        --reader-at 0 --leases 3 --drift 1 --walks 0 --out "$out"
done
# A crash of the grantor: DFS bounded at the bug's search depth (MultiBug::search_depth).
$model export-traces multi --bug lease-forgotten-on-restart --commands 1 --slots 1 --window 1 \
    --reads 1 --reader-at 0 --leases 3 --drift 1 --crashes 1 --walks 0 --out "$out"
# Time: single-threaded search takes too long (MultiBug::search_is_costly); DFS with symmetry
# and two threads, bounded at depth 22, about a minute each. Only the property's trace is kept.
scratch=$(mktemp -d)
for bug in lease-beyond-drift lease-from-arrival; do
    $model check multi --bug "$bug" --commands 1 --slots 1 --window 1 --reads 1 --reader-at 0 \
        --leases 3 --drift 1 --ticks 3 --strategy dfs --threads 2 --depth 22 \
        --trace-dir "$scratch" > /dev/null || true
    cp "$scratch/multi-read-linearizability-$bug.json" "$out/"
done
rm -rf "$scratch"

# Random walks of the correct protocol, beyond the exhaustive bounds.
# The state is recorded every 10 steps (and at the last) to keep the files small.
$model export-traces synod --proposers 3 --rounds 3 --crashes 2 --lossy --duplicating \
    --walks 2 --seed 1 --depth 80 --state-every 10 --name synod-walk-p3-r3-crash2-lossy-dup \
    --out "$out"
$model export-traces multi --slots 4 --commands 4 --clients 2 --rounds 3 --elections 2 \
    --retries 1 --crashes 1 --lossy \
    --walks 2 --seed 1 --depth 100 --state-every 10 --name multi-walk-s4-crash1-lossy \
    --out "$out"
$model export-traces multi --replicas 5 --slots 4 --commands 4 --clients 2 --rounds 3 \
    --elections 2 --retries 1 --crashes 2 --lossy --duplicating \
    --walks 1 --seed 1 --depth 150 --state-every 10 --name multi-walk-r5-s4-crash2-lossy-dup \
    --out "$out"
$model export-traces multi --slots 4 --commands 4 --clients 2 --rounds 3 --elections 2 \
    --crashes 1 --lossy --compactions 8 --catch-ups 3 \
    --walks 1 --seed 1 --depth 150 --state-every 10 --name multi-walk-s4-crash1-lossy-compact \
    --out "$out"
$model export-traces multi --slots 4 --commands 4 --clients 2 --rounds 3 --elections 2 \
    --crashes 1 --lossy --reads 3 \
    --walks 1 --seed 1 --depth 150 --state-every 10 --name multi-walk-s4-crash1-lossy-reads \
    --out "$out"
