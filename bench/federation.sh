#!/usr/bin/env bash
# Benchmark federation between two local stewards (`spl serve`, SQLite, durable commits) on
# loopback, and write a dated section into BENCHMARKS.md at the repository root:
#   * propagation: records emitted on A, 20 ms apart, timed until B (which pulls the thread from
#     A through a pair) has stored them, verified (B's watch stream announces after its commit);
#   * catch-up: B pulls a 100,000-record thread from A in one `spl sync`, with every signature
#     verified, and the peak RSS of B.
#
#   bench/federation.sh
#
# Environment knobs (defaults in brackets):
#   BENCH_PROP_RECORDS [1000]  BENCH_PROP_INTERVAL_MS [20]  BENCH_CATCHUP_RECORDS [100000]
#   BENCH_SEED_CLIENTS [32]  BENCH_WORKERS [2]  BENCH_SKIP_BUILD [0]
#   BENCH_GENERATOR [<target>/release/syncropel-bench] (the load generator binary)
#   BENCH_OUT [<repo>/BENCHMARKS.md]  BENCH_DATE [today, UTC]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROP_RECORDS="${BENCH_PROP_RECORDS:-1000}"
PROP_INTERVAL_MS="${BENCH_PROP_INTERVAL_MS:-20}"
CATCHUP_RECORDS="${BENCH_CATCHUP_RECORDS:-100000}"
SEED_CLIENTS="${BENCH_SEED_CLIENTS:-32}"
WORKERS="${BENCH_WORKERS:-2}"
OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
DATE="${BENCH_DATE:-$(date -u +%Y-%m-%d)}"
ACTOR="did:example:bench"

log() { printf '[bench] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release -p spl -p syncropel-bench"
  cargo build --release -p spl -p syncropel-bench
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SPL="$TARGET_DIR/release/spl"
BENCH=("${BENCH_GENERATOR:-$TARGET_DIR/release/syncropel-bench}" --workers "$WORKERS")

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-fed-bench.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
START_TS=$(date +%s)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- baselines on this machine, in this run ----------------------------------------------
log "baselines: parse + signature checks on one core, raw SQLite 1000-row commits"
VERIFY_JSON=$("${BENCH[@]}" verify --records 100000)
log "verify: $VERIFY_JSON"
SQLK_JSON=$("${BENCH[@]}" sqlite --path "$WORK/baseline.db" --duration-secs 3 --batch 1000)
log "sqlite batch=1000: $SQLK_JSON"
rm -f "$WORK"/baseline.db*

# B's DID must be known to A before A starts (A approves B's request by its own allow-list).
B_HOME="$WORK/B"
B_DID_EARLY=$("$SPL" --home "$B_HOME" init | tr -d '[:space:]')
start_steward A --port 0 --auto-approve-did "$B_DID_EARLY"
start_steward B --port 0
log "A $A_URL ($A_DID), B $B_URL ($B_DID)"
splb() { "$SPL" --home "$B_HOME" --endpoint "$B_URL" --token "$B_TOKEN" "$@"; }

log "pairing B -> A"
PAIR_JSON=$(splb --json federation pair "$A_URL" | tr -d '\n')
log "pair: $(jget "$PAIR_JSON" state)"
[[ "$(jget "$PAIR_JSON" state)" == active ]] || { echo "pairing failed: $PAIR_JSON" >&2; exit 1; }

# --- propagation ----------------------------------------------------------------------
log "propagation: $PROP_RECORDS records, ${PROP_INTERVAL_MS} ms apart"
splb --json sync th_bench_prop from "$A_DID" >/dev/null
sleep 1
PROP_JSON=$(SPL_BENCH_SOURCE_TOKEN="$A_TOKEN" SPL_BENCH_SINK_TOKEN="$B_TOKEN" "${BENCH[@]}" propagation \
  --source-url "$A_URL" --sink-url "$B_URL" --thread th_bench_prop \
  --records "$PROP_RECORDS" --interval-ms "$PROP_INTERVAL_MS" --actor "$ACTOR")
log "propagation: $PROP_JSON"
ms() { awk -v u="$(jget "$PROP_JSON" "$1")" 'BEGIN { if (u == "") print "n/a"; else printf "%.2f", u / 1000 }'; }
PROP_P50=$(ms p50_us); PROP_P90=$(ms p90_us); PROP_P99=$(ms p99_us); PROP_MAX=$(ms max_us)
PROP_MISSING=$(jget "$PROP_JSON" missing)

# --- catch-up ---------------------------------------------------------------------------
log "seeding $CATCHUP_RECORDS records on A"
SEED_JSON=$(SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" seed --url "$A_URL" --thread th_bench_catchup \
  --records "$CATCHUP_RECORDS" --clients "$SEED_CLIENTS" --actor "$ACTOR")
SEEDED=$(jget "$SEED_JSON" records)
log "seeded $SEEDED"
PAGE_JSON=$(SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" page --url "$A_URL" --thread th_bench_catchup --limit 1000)
PAGE_RPS=$(jget "$PAGE_JSON" records_per_sec)
log "paging baseline on A: $PAGE_RPS rec/s"

B_HWM0=$(status_kib "$B_PID" VmHWM)
B_RSS0=$(status_kib "$B_PID" VmRSS)
A_T0=$(proc_ticks "$A_PID"); B_T0=$(proc_ticks "$B_PID"); T0=$(now_ns)
CATCH_JSON=$(splb --json sync th_bench_catchup from "$A_DID" | tr -d '\n')
T1=$(now_ns); A_T1=$(proc_ticks "$A_PID"); B_T1=$(proc_ticks "$B_PID")
B_HWM1=$(status_kib "$B_PID" VmHWM)
PULLED=$(jget "$CATCH_JSON" pulled)
CATCH_SECS=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
CATCH_RPS=$(awk -v n="$PULLED" -v s="$CATCH_SECS" 'BEGIN { if (s + 0 == 0) print ""; else printf "%.0f", n / s }')
A_CORES=$(cores "$A_T0" "$A_T1" "$T0" "$T1"); B_CORES=$(cores "$B_T0" "$B_T1" "$T0" "$T1")
log "catch-up: $PULLED records in $CATCH_SECS s = $CATCH_RPS rec/s (A $A_CORES cores, B $B_CORES cores)"
STORED=$(SPL_BENCH_TOKEN="$B_TOKEN" "${BENCH[@]}" page --url "$B_URL" --thread th_bench_catchup --limit 1000)
log "B holds $(jget "$STORED" records) records of the thread"

ELAPSED=$(( $(date +%s) - START_TS ))
CPU_MODEL="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
SECTION="$WORK/section.md"
{
  echo "<!-- federation:begin -->"
  echo "## Federation between two local stewards ($DATE)"
  echo
  echo "- Machine: $(nproc) CPUs ($CPU_MODEL), Linux $(uname -r); load average before the run: $LOAD_BEFORE (shared machine)."
  echo "- Commit: \`$COMMIT\`; release build; two \`spl serve\` (SQLite, durable commits) on loopback; A auto-approves B's DID, B pairs with A (\`spl federation pair\`) and pulls with \`spl sync\`; the generator shares the same CPUs. Whole run: ${ELAPSED} s."
  echo
  echo "| Figure | Target | Measured | Verdict |"
  echo "|---|---|---|---|"
  echo "| Propagation, emit on A -> stored and verified on B, $PROP_RECORDS records ${PROP_INTERVAL_MS} ms apart | p50 < 10 ms, p99 < 20 ms | p50 $PROP_P50 ms, p90 $PROP_P90 ms, p99 $PROP_P99 ms, max $PROP_MAX ms ($PROP_MISSING missing) | $(verdict "$PROP_P50" lt 10) / $(verdict "$PROP_P99" lt 20) |"
  echo "| Catch-up pull of a $(fmt0 "$SEEDED")-record thread, every signature verified (\`spl sync\`) | >= 30,000 rec/s | $(fmt0 "$CATCH_RPS") rec/s ($PULLED records in $CATCH_SECS s) | $(verdict "$CATCH_RPS" ge 30000) |"
  echo "| B's memory during the catch-up | bounded | VmRSS $(mib "$B_RSS0") MiB before, peak (VmHWM) $(mib "$B_HWM0") -> $(mib "$B_HWM1") MiB | |"
  echo
  echo "Same-run baselines: one core parses sync items (envelope checks, canonical JSON, id) at $(fmt0 "$(jget "$VERIFY_JSON" parse_per_sec)") rec/s and verifies their signatures at $(fmt0 "$(jget "$VERIFY_JSON" batch_verify_per_sec)") rec/s batched ($(fmt0 "$(jget "$VERIFY_JSON" single_verify_per_sec)") rec/s one by one, strict), so checking alone caps one core at $(fmt0 "$(jget "$VERIFY_JSON" parse_and_batch_per_sec)") rec/s; raw SQLite (WAL, synchronous=FULL, rowid plus one unique text key, 400-byte rows) takes $(fmt0 "$(jget "$SQLK_JSON" rows_per_sec)") rows/s in 1000-row commits (catch-up / that = $(ratio "$CATCH_RPS" "$(jget "$SQLK_JSON" rows_per_sec)"))."
  echo
  echo "Paging baseline: the same thread on A through \`GET /v1/threads/{id}/records\` (limit 1000): $(fmt0 "$PAGE_RPS") rec/s (catch-up / paging = $(ratio "$CATCH_RPS" "$PAGE_RPS")). During the catch-up A used $A_CORES and B $B_CORES cores."
  echo
  echo "Command: \`bench/federation.sh\` (knobs at the top of the script)."
  echo "<!-- federation:end -->"
} >"$SECTION"

write_section federation "$SECTION" "$OUT"
log "wrote $OUT"
cat "$SECTION"
