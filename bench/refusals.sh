#!/usr/bin/env bash
# What recording refusals costs (protocol.md §13.3): a flood of refused requests (`POST
# /v1/records` with a bearer nobody issued, each answered 401) against `spl serve`, and how many
# `th_audit_security` records it left, against the bound each tenant has (10 a second, bursts of
# 50). Prints a Markdown table to stdout.
#
#   bench/refusals.sh
#
# Environment knobs (defaults in brackets): BENCH_CLIENTS [32]  BENCH_FLOOD_SECS [10]
#   BENCH_WORKERS [2]  BENCH_SKIP_BUILD [0]
#   BENCH_GENERATOR [<target>/release/syncropel-bench]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLIENTS="${BENCH_CLIENTS:-32}"
FLOOD_SECS="${BENCH_FLOOD_SECS:-10}"
WORKERS="${BENCH_WORKERS:-2}"

log() { printf '[refusals] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release -p spl -p syncropel-bench
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SPL="$TARGET_DIR/release/spl"
BENCH=("${BENCH_GENERATOR:-$TARGET_DIR/release/syncropel-bench}" --workers "$WORKERS")

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-refusals.XXXXXX")"
SERVER_PID=""
cleanup() {
  [[ -n "$SERVER_PID" ]] && kill -TERM "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
H="$WORK/home"
"$SPL" --home "$H" init >/dev/null
TOKEN=$("$SPL" --home "$H" service-account create --bootstrap --name bench --scopes admin \
  --with-token | tr -d '[:space:]')
"$SPL" --home "$H" serve --port 0 >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  [[ -s "$H/steward.json" ]] && grep -q '"url"' "$H/steward.json" && break
  sleep 0.1
done
URL=$(jget "$(tr -d '\n' <"$H/steward.json")" url)
"${BENCH[@]}" wait-ready --url "$URL" --timeout-secs 30 >/dev/null

count_records() {
  "$SPL" --home "$H" --endpoint "$URL" --token "$TOKEN" --json records list \
    --thread th_audit_security --limit 1000 --all |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]))'
}

log "flood: $CLIENTS clients, ${FLOOD_SECS}s (+1s warm-up)"
START=$(now_ns)
FLOOD_JSON=$("${BENCH[@]}" refused --url "$URL" --clients "$CLIENTS" \
  --duration-secs "$FLOOD_SECS" --warmup-secs 1)
END=$(now_ns)
log "flood: $FLOOD_JSON"
RECORDS=$(count_records)
WALL=$(awk -v s="$START" -v e="$END" 'BEGIN { printf "%.2f", (e - s) / 1e9 }')
BOUND=$(awk -v w="$WALL" 'BEGIN { printf "%d", 50 + 10 * w + 1 }')
RATE=$(jget "$FLOOD_JSON" refusals_per_sec)

echo "| Flood | Refused requests/s | Refusals recorded | Records/s | Bound (50 + 10/s over ${WALL} s) |"
echo "|---|---|---|---|---|"
echo "| $CLIENTS clients, ${FLOOD_SECS} s | $RATE | $RECORDS | $(awk -v r="$RECORDS" -v w="$WALL" 'BEGIN { printf "%.1f", r / w }') | $BOUND |"
