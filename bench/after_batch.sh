#!/usr/bin/env bash
# Continuous propagation after the source has taken a batch load: two `spl serve` (SQLite,
# durable commits) on loopback, B paired with A in continuous mode; A takes 4 s of
# 1,000-record batches (4 clients) and a BENCH_SEED_RECORDS-record thread that B catches up;
# then BENCH_PROP_RECORDS records 20 ms apart on a new thread, each timed from A's
# acknowledgement to B's watch event. Prints the generator's JSON line.
#
#   bench/after_batch.sh
#
# Environment knobs (defaults in brackets): BENCH_SEED_RECORDS [20000]  BENCH_PROP_RECORDS [200]
#   BENCH_WORKERS [2]  BENCH_SKIP_BUILD [0]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SEED_RECORDS="${BENCH_SEED_RECORDS:-20000}"
PROP_RECORDS="${BENCH_PROP_RECORDS:-200}"
WORKERS="${BENCH_WORKERS:-2}"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

prepare_run after-batch
B_DID_EARLY=$("$SPL" --home "$WORK/B" init | tr -d '[:space:]')
start_steward A --port 0 --auto-approve-did "$B_DID_EARLY"
start_steward B --port 0
splb() { "$SPL" --home "$WORK/B" --endpoint "$B_URL" --token "$B_TOKEN" "$@"; }
splb --json federation pair "$A_URL" >/dev/null
splb federation set-mode "$A_DID" --mode continuous >/dev/null
SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" batch --url "$A_URL" --clients 4 --batch 1000 \
  --duration-secs 4 >/dev/null
SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" seed --url "$A_URL" --thread th_seed \
  --records "$SEED_RECORDS" --clients 32 >/dev/null
splb --json sync th_seed from "$A_DID" >/dev/null
splb --json sync th_prop from "$A_DID" >/dev/null
sleep 1
SPL_BENCH_SOURCE_TOKEN="$A_TOKEN" SPL_BENCH_SINK_TOKEN="$B_TOKEN" "${BENCH[@]}" propagation \
  --source-url "$A_URL" --sink-url "$B_URL" --thread th_prop --records "$PROP_RECORDS" \
  --interval-ms 20 --from-ack
