#!/usr/bin/env bash
# Signed push throughput (federation-protocol.md §5.3), and write a dated section into
# BENCHMARKS.md: B pushes a fresh thread of records to A (`spl federation push`, every record
# verified by A as a pull's would be), against A catching up a thread of the same size by pull
# (`spl sync`) in the same run. A pulls both threads from B through one pair set to on-demand,
# so pushed records reach A only by the push. Rounds alternate the two; the figures are records
# per second and A's CPU per record.
#
#   bench/push.sh
#
# Environment knobs (defaults in brackets):
#   BENCH_PUSH_RECORDS [20000]  BENCH_PUSH_ROUNDS [3]  BENCH_SEED_CLIENTS [32]  BENCH_WORKERS [2]
#   BENCH_SKIP_BUILD [0]  BENCH_GENERATOR [<target>/release/syncropel-bench]
#   BENCH_OUT [<repo>/BENCHMARKS.md]  BENCH_DATE [today, UTC]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RECORDS="${BENCH_PUSH_RECORDS:-20000}"
ROUNDS="${BENCH_PUSH_ROUNDS:-3}"
SEED_CLIENTS="${BENCH_SEED_CLIENTS:-32}"
WORKERS="${BENCH_WORKERS:-2}"
OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
DATE="${BENCH_DATE:-$(date -u +%Y-%m-%d)}"
ACTOR="did:example:bench"

log() { printf '[bench] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

prepare_run push-bench
START_TS=$(date +%s)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# B (the source) approves A's pair request by its own allow-list.
A_HOME="$WORK/A"
A_DID_EARLY=$("$SPL" --home "$A_HOME" init | tr -d '[:space:]')
start_steward B --port 0 --auto-approve-did "$A_DID_EARLY"
start_steward A --port 0
log "A $A_URL ($A_DID), B $B_URL ($B_DID)"
spla() { "$SPL" --home "$A_HOME" --endpoint "$A_URL" --token "$A_TOKEN" "$@"; }
splb() { "$SPL" --home "$WORK/B" --endpoint "$B_URL" --token "$B_TOKEN" "$@"; }
PAIR_JSON=$(spla --json federation pair "$B_URL" | tr -d '\n')
[[ "$(jget "$PAIR_JSON" state)" == active ]] || { echo "pairing failed: $PAIR_JSON" >&2; exit 1; }

log "A pulls $ROUNDS x 2 threads from B, on demand; seeding $RECORDS records each on B"
for r in $(seq 1 "$ROUNDS"); do
  for mode in push pull; do
    spla --json sync "th_${mode}_$r" from "$B_DID" >/dev/null
  done
done
spla --json federation set-mode "$B_DID" --mode on-demand >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  for mode in push pull; do
    SPL_BENCH_TOKEN="$B_TOKEN" "${BENCH[@]}" seed --url "$B_URL" --thread "th_${mode}_$r" \
      --records "$RECORDS" --clients "$SEED_CLIENTS" --actor "$ACTOR" >/dev/null
  done
done

declare -A RPS_SUM=() US_SUM=() RUNS=()
TABLE=""
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then ORDER=(push pull); else ORDER=(pull push); fi
  for mode in "${ORDER[@]}"; do
    thread="th_${mode}_$r"
    A_T0=$(proc_ticks "$A_PID"); B_T0=$(proc_ticks "$B_PID"); T0=$(now_ns)
    if [[ "$mode" == push ]]; then
      OUT_JSON=$(splb --json federation push "$A_DID" --thread "$thread" | tr -d '\n')
      got=$(jget "$OUT_JSON" accepted)
    else
      OUT_JSON=$(spla --json sync "$thread" from "$B_DID" | tr -d '\n')
      got=$(jget "$OUT_JSON" pulled)
    fi
    T1=$(now_ns); A_T1=$(proc_ticks "$A_PID"); B_T1=$(proc_ticks "$B_PID")
    [[ "$got" == "$RECORDS" ]] || { echo "round $r $mode stored $got of $RECORDS: $OUT_JSON" >&2; exit 1; }
    secs=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    rps=$(awk -v n="$got" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    us=$(awk -v t0="$A_T0" -v t1="$A_T1" -v n="$got" 'BEGIN { printf "%.1f", (t1 - t0) / 100 * 1e6 / n }')
    bus=$(awk -v t0="$B_T0" -v t1="$B_T1" -v n="$got" 'BEGIN { printf "%.1f", (t1 - t0) / 100 * 1e6 / n }')
    log "round $r $mode: $got records in $secs s = $rps rec/s, A $us / B $bus CPU us/record"
    RPS_SUM[$mode]=$(awk -v a="${RPS_SUM[$mode]:-0}" -v b="$rps" 'BEGIN { print a + b }')
    US_SUM[$mode]=$(awk -v a="${US_SUM[$mode]:-0}" -v b="$us" 'BEGIN { print a + b }')
    RUNS[$mode]=$(( ${RUNS[$mode]:-0} + 1 ))
    TABLE+="| $r | $mode | $(fmt0 "$rps") | $us | $bus |"$'\n'
  done
done
avg() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.1f", s / n }'; }
PUSH_RPS=$(avg "${RPS_SUM[push]}" "${RUNS[push]}"); PULL_RPS=$(avg "${RPS_SUM[pull]}" "${RUNS[pull]}")
PUSH_US=$(avg "${US_SUM[push]}" "${RUNS[push]}"); PULL_US=$(avg "${US_SUM[pull]}" "${RUNS[pull]}")
ELAPSED=$(( $(date +%s) - START_TS ))
CPU_MODEL="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
SECTION="$WORK/section.md"
{
  echo "<!-- push:begin -->"
  echo "## Signed push throughput ($DATE)"
  echo
  echo "- Machine: $(nproc) CPUs ($CPU_MODEL), Linux $(uname -r); load average before the run: $LOAD_BEFORE (shared machine)."
  echo "- Commit: \`$COMMIT\`; release build; two \`spl serve\` (SQLite, durable commits) on loopback. A pulls each thread from B through one pair set to \`on-demand\`; B's records are by the typed actor \`$ACTOR\`. Each round: B pushes a fresh $(fmt0 "$RECORDS")-record thread to A (\`spl federation push\`: B pages its own feed as A's pull would be served and posts batches of at most 1,000 records and 768 KiB to A's \`POST /v1/sync/records\`; A verifies every record, all or nothing for forgeries, and stores it), and A catches up another by pull (\`spl sync\`). Rounds alternate the order. Whole run: ${ELAPSED} s."
  echo
  echo "| Round | Path | rec/s | A (receiver) CPU µs/record | B (source) CPU µs/record |"
  echo "|---|---|---|---|---|"
  printf '%s' "$TABLE"
  echo
  echo "| Figure | Measured |"
  echo "|---|---|"
  echo "| Push throughput (mean of $ROUNDS rounds) | **$(fmt0 "$PUSH_RPS") rec/s**; pull catch-up in the same run $(fmt0 "$PULL_RPS") rec/s (push / pull = $(ratio "$PUSH_RPS" "$PULL_RPS")) |"
  echo "| Receiver CPU per pushed record | **$PUSH_US µs**; per pulled record $PULL_US µs (push / pull = $(ratio "$PUSH_US" "$PULL_US")) |"
  echo
  echo "Command: \`bench/push.sh\` (knobs at the top of the script)."
  echo "<!-- push:end -->"
} >"$SECTION"

write_section push "$SECTION" "$OUT"
log "wrote $OUT"
cat "$SECTION"
