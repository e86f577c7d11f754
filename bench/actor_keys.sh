#!/usr/bin/env bash
# What vouching for typed actors costs a puller (federation-protocol.md §1.4), and write a dated
# section into BENCHMARKS.md: B catches up threads from A (`spl sync`, every signature verified)
# whose records are either by a typed actor (`did:example:bench`: each page's signers checked
# against A's actor-keys answer, asked once and then held in B's cache) or by A's own did:key
# (no answer needed). Rounds alternate the two, each on a fresh thread; the figure is the
# ratio of their throughputs and B's CPU per record.
#
#   bench/actor_keys.sh
#
# Environment knobs (defaults in brackets):
#   BENCH_AK_RECORDS [20000]  BENCH_AK_ROUNDS [3]  BENCH_SEED_CLIENTS [32]  BENCH_WORKERS [2]
#   BENCH_SKIP_BUILD [0]  BENCH_GENERATOR [<target>/release/syncropel-bench]
#   BENCH_OUT [<repo>/BENCHMARKS.md]  BENCH_DATE [today, UTC]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RECORDS="${BENCH_AK_RECORDS:-20000}"
ROUNDS="${BENCH_AK_ROUNDS:-3}"
SEED_CLIENTS="${BENCH_SEED_CLIENTS:-32}"
WORKERS="${BENCH_WORKERS:-2}"
OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
DATE="${BENCH_DATE:-$(date -u +%Y-%m-%d)}"
TYPED="did:example:bench"

log() { printf '[bench] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

prepare_run ak-bench
START_TS=$(date +%s)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

B_HOME="$WORK/B"
B_DID_EARLY=$("$SPL" --home "$B_HOME" init | tr -d '[:space:]')
start_steward A --port 0 --auto-approve-did "$B_DID_EARLY"
start_steward B --port 0
log "A $A_URL ($A_DID), B $B_URL ($B_DID)"
splb() { "$SPL" --home "$B_HOME" --endpoint "$B_URL" --token "$B_TOKEN" "$@"; }
PAIR_JSON=$(splb --json federation pair "$A_URL" | tr -d '\n')
[[ "$(jget "$PAIR_JSON" state)" == active ]] || { echo "pairing failed: $PAIR_JSON" >&2; exit 1; }

# actor_of MODE: the actor of a mode's records.
actor_of() { if [[ "$1" == typed ]]; then echo "$TYPED"; else echo "$A_DID"; fi; }

log "seeding $ROUNDS x 2 threads of $RECORDS records on A"
for r in $(seq 1 "$ROUNDS"); do
  for mode in typed own; do
    SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" seed --url "$A_URL" --thread "th_ak_${mode}_$r" \
      --records "$RECORDS" --clients "$SEED_CLIENTS" --actor "$(actor_of "$mode")" >/dev/null
  done
done

declare -A RPS_SUM=() US_SUM=() RUNS=()
TABLE=""
for r in $(seq 1 "$ROUNDS"); do
  # Alternate which mode goes first, so drift on the shared machine falls on both.
  if (( r % 2 )); then ORDER=(typed own); else ORDER=(own typed); fi
  for mode in "${ORDER[@]}"; do
    thread="th_ak_${mode}_$r"
    B_T0=$(proc_ticks "$B_PID"); T0=$(now_ns)
    OUT_JSON=$(splb --json sync "$thread" from "$A_DID" | tr -d '\n')
    T1=$(now_ns); B_T1=$(proc_ticks "$B_PID")
    pulled=$(jget "$OUT_JSON" pulled)
    [[ "$pulled" == "$RECORDS" ]] || { echo "round $r $mode pulled $pulled of $RECORDS: $OUT_JSON" >&2; exit 1; }
    secs=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    rps=$(awk -v n="$pulled" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    us=$(awk -v t0="$B_T0" -v t1="$B_T1" -v n="$pulled" 'BEGIN { printf "%.1f", (t1 - t0) / 100 * 1e6 / n }')
    log "round $r $mode: $pulled records in $secs s = $rps rec/s, B $us CPU us/record"
    RPS_SUM[$mode]=$(awk -v a="${RPS_SUM[$mode]:-0}" -v b="$rps" 'BEGIN { print a + b }')
    US_SUM[$mode]=$(awk -v a="${US_SUM[$mode]:-0}" -v b="$us" 'BEGIN { print a + b }')
    RUNS[$mode]=$(( ${RUNS[$mode]:-0} + 1 ))
    TABLE+="| $r | $mode | $(fmt0 "$rps") | $us |"$'\n'
  done
done
avg() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.1f", s / n }'; }
TYPED_RPS=$(avg "${RPS_SUM[typed]}" "${RUNS[typed]}"); OWN_RPS=$(avg "${RPS_SUM[own]}" "${RUNS[own]}")
TYPED_US=$(avg "${US_SUM[typed]}" "${RUNS[typed]}"); OWN_US=$(avg "${US_SUM[own]}" "${RUNS[own]}")
ELAPSED=$(( $(date +%s) - START_TS ))
CPU_MODEL="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
SECTION="$WORK/section.md"
{
  echo "<!-- actor-keys:begin -->"
  echo "## Typed actors: the cost of vouching ($DATE)"
  echo
  echo "- Machine: $(nproc) CPUs ($CPU_MODEL), Linux $(uname -r); load average before the run: $LOAD_BEFORE (shared machine)."
  echo "- Commit: \`$COMMIT\`; release build; two \`spl serve\` (SQLite, durable commits) on loopback, B paired with A. Each round B catches up two fresh $(fmt0 "$RECORDS")-record threads from A with \`spl sync\` (every signature verified): one by the typed actor \`$TYPED\` (each page's signers checked against A's actor-keys answer: asked once, then a cache hit per page), one by A's own did:key (no answer needed). Rounds alternate the order. Whole run: ${ELAPSED} s."
  echo
  echo "| Round | Records by | Catch-up rec/s | B CPU µs/record |"
  echo "|---|---|---|---|"
  printf '%s' "$TABLE"
  echo
  echo "| Figure | Measured |"
  echo "|---|---|"
  echo "| Catch-up throughput, typed / own did:key (mean of $ROUNDS rounds) | $(fmt0 "$TYPED_RPS") / $(fmt0 "$OWN_RPS") rec/s = **$(ratio "$TYPED_RPS" "$OWN_RPS")** |"
  echo "| B's CPU per record, typed / own did:key | $TYPED_US / $OWN_US µs = **$(ratio "$TYPED_US" "$OWN_US")** |"
  echo
  echo "Command: \`bench/actor_keys.sh\` (knobs at the top of the script)."
  echo "<!-- actor-keys:end -->"
} >"$SECTION"

write_section actor-keys "$SECTION" "$OUT"
log "wrote $OUT"
cat "$SECTION"
