#!/usr/bin/env bash
# Continuous-mode propagation next to longpoll, in the same run (federation-protocol.md §5.1,
# §5.4): two `spl serve` (SQLite, durable commits) on loopback, B paired with A and pulling a
# thread from it; records emitted on A 20 ms apart, each timed until B's watch stream announces
# it stored. Alternating rounds switch B's pair between `polling` and `continuous`
# (`spl federation set-mode`), each round on a fresh thread. Prints a Markdown table to stdout.
#
#   bench/continuous.sh
#
# Environment knobs (defaults in brackets): BENCH_ROUNDS [3]  BENCH_PROP_RECORDS [500]
#   BENCH_PROP_INTERVAL_MS [20]  BENCH_WORKERS [2]  BENCH_SKIP_BUILD [0]
#   BENCH_GENERATOR [<target>/release/syncropel-bench]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${BENCH_ROUNDS:-3}"
RECORDS="${BENCH_PROP_RECORDS:-500}"
INTERVAL_MS="${BENCH_PROP_INTERVAL_MS:-20}"
WORKERS="${BENCH_WORKERS:-2}"
ACTOR="did:example:bench"

log() { printf '[continuous] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release -p spl -p syncropel-bench
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SPL="$TARGET_DIR/release/spl"
BENCH=("${BENCH_GENERATOR:-$TARGET_DIR/release/syncropel-bench}" --workers "$WORKERS")

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-continuous.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

B_HOME="$WORK/B"
B_DID_EARLY=$("$SPL" --home "$B_HOME" init | tr -d '[:space:]')
start_steward A --port 0 --auto-approve-did "$B_DID_EARLY"
start_steward B --port 0
splb() { "$SPL" --home "$B_HOME" --endpoint "$B_URL" --token "$B_TOKEN" "$@"; }
PAIR_JSON=$(splb --json federation pair "$A_URL" | tr -d '\n')
[[ "$(jget "$PAIR_JSON" state)" == active ]] || { echo "pairing failed: $PAIR_JSON" >&2; exit 1; }

# round MODE THREAD: one measured propagation; prints "p50_ms p99_ms missing".
round() {
  splb federation set-mode "$A_DID" --mode "$1" >/dev/null
  splb --json sync "$2" from "$A_DID" >/dev/null
  sleep 1
  local out
  out=$(SPL_BENCH_SOURCE_TOKEN="$A_TOKEN" SPL_BENCH_SINK_TOKEN="$B_TOKEN" "${BENCH[@]}" propagation \
    --source-url "$A_URL" --sink-url "$B_URL" --thread "$2" \
    --records "$RECORDS" --interval-ms "$INTERVAL_MS" --actor "$ACTOR")
  awk -v a="$(jget "$out" p50_us)" -v b="$(jget "$out" p99_us)" -v m="$(jget "$out" missing)" \
    'BEGIN { printf "%.2f %.2f %s\n", a / 1000, b / 1000, m }'
}

echo "| Round | Mode | p50 ms | p99 ms | missing |"
echo "|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  order=(polling continuous)
  (( r % 2 == 0 )) && order=(continuous polling)
  for mode in "${order[@]}"; do
    read -r p50 p99 missing < <(round "$mode" "th_prop_${mode}_$r")
    log "round $r $mode: p50 $p50 ms, p99 $p99 ms, missing $missing"
    echo "| $r | $mode | $p50 | $p99 | $missing |"
  done
done
