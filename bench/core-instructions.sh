#!/usr/bin/env bash
# Instructions per committed command of the protocol core and of OmniPaxos, counted by
# callgrind: unlike commits/s, the count does not move with the load of a shared machine, so
# two builds compare in one run. Per window, the marginal count: the whole process at
# 2×COMMANDS minus at COMMANDS, divided by COMMANDS (start-up and warm-up cancel out). With
# several core-bench binaries (say, before and after a change) each gets its own row for ours;
# OmniPaxos is counted with the first. Installs valgrind from Debian if missing.
#
#   bench/core-instructions.sh [CORE_BENCH_BIN...]      (default: target/release/core-bench)
#   COMMANDS=20000 WINDOWS="1 64 1024" bench/core-instructions.sh /tmp/old/core-bench target/release/core-bench
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind > /dev/null; then
  apt-get update -qq && apt-get install -y -qq valgrind > /dev/null
fi
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  cargo build --release -q -p paxos-bench --bin core-bench
  bins=(target/release/core-bench)
fi
commands=${COMMANDS:-20000}
windows=${WINDOWS:-1 64 1024}
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_command() { # BIN SYSTEM WINDOW
  local args=(--warmup 1000 --reps 1 --only "$2" --windows "$3")
  local one two
  one=$(count "$1" --commands "$commands" "${args[@]}")
  two=$(count "$1" --commands $((2 * commands)) "${args[@]}")
  echo $(((two - one) / commands))
}
echo "| window | system | binary | instructions per command |"
echo "|---:|---|---|---:|"
for window in $windows; do
  for bin in "${bins[@]}"; do
    echo "| $window | ours | $bin | $(per_command "$bin" ours "$window") |"
  done
  echo "| $window | omnipaxos | ${bins[0]} | $(per_command "${bins[0]}" omnipaxos "$window") |"
done
