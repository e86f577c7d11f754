#!/usr/bin/env bash
# What a member's bearer costs (protocol.md §11.11): a bearer minted under a grant has its grant
# chain checked on every request. Single-record POSTs at 32 clients against one `spl serve`,
# alternating rounds between a plain admin token and a member's bearer (a membership invite
# redeemed), reporting records/s and the server's CPU microseconds per record for each. Prints a
# Markdown table to stdout.
#
#   bench/membership.sh
#
# Environment knobs (defaults in brackets): BENCH_ROUNDS [3]  BENCH_CLIENTS [32]
#   BENCH_SECS [10]  BENCH_WORKERS [2]  BENCH_SKIP_BUILD [0]
#   BENCH_GENERATOR [<target>/release/syncropel-bench]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${BENCH_ROUNDS:-3}"
CLIENTS="${BENCH_CLIENTS:-32}"
SECS="${BENCH_SECS:-10}"
WORKERS="${BENCH_WORKERS:-2}"

log() { printf '[membership] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release -p spl -p syncropel-bench
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SPL="$TARGET_DIR/release/spl"
BENCH=("${BENCH_GENERATOR:-$TARGET_DIR/release/syncropel-bench}" --workers "$WORKERS")

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-membership.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
start_steward S --port 0
URL="$S_URL"; ADMIN="$S_TOKEN"; SERVER_PID="$S_PID"

INVITE=$("$SPL" --home "$WORK/S" --endpoint "$URL" --token "$ADMIN" invite issue --preset contributor \
  2>/dev/null | tr -d '[:space:]')
GUEST="$WORK/guest"
"$SPL" --home "$GUEST" init >/dev/null
MEMBER=$("$SPL" --home "$GUEST" --endpoint "$URL" invite redeem "$INVITE" --label bench \
  2>/dev/null | tr -d '[:space:]')

# post TOKEN ACTOR: one measured window; prints "rate us_per_record".
post() {
  local t0 t1 n0 n1 out rate
  t0=$(proc_ticks "$SERVER_PID"); n0=$(now_ns)
  out=$("${BENCH[@]}" post --url "$URL" --token "$1" --actor "$2" --clients "$CLIENTS" \
    --duration-secs "$SECS" --warmup-secs 1)
  t1=$(proc_ticks "$SERVER_PID"); n1=$(now_ns)
  rate=$(jget "$out" records_per_sec)
  echo "$rate $(us_per "$(cores "$t0" "$t1" "$n0" "$n1")" "$rate")"
}

echo "| Round | Bearer | POST rec/s ($CLIENTS clients) | steward CPU µs/record (incl. warm-up) |"
echo "|---|---|---|---|"
PLAIN_RATES=(); MEMBER_RATES=()
for round in $(seq 1 "$ROUNDS"); do
  order=(plain member)
  (( round % 2 == 0 )) && order=(member plain)
  for side in "${order[@]}"; do
    if [[ "$side" == plain ]]; then
      read -r rate us < <(post "$ADMIN" did:example:bench)
      PLAIN_RATES+=("$rate")
    else
      read -r rate us < <(post "$MEMBER" did:sync:user:bench)
      MEMBER_RATES+=("$rate")
    fi
    log "round $round $side: $rate rec/s, $us µs/record"
    echo "| $round | $side | $(fmt1 "$rate") | $us |"
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "Member / plain, ratio of the medians: $(ratio "$(median "${MEMBER_RATES[@]}")" "$(median "${PLAIN_RATES[@]}")")"
