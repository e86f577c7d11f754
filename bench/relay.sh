#!/usr/bin/env bash
# Benchmark the relay (federation-protocol.md §7) between two local stewards on loopback, and
# write a dated section into BENCHMARKS.md at the repository root:
#   * throughput: B pulls a thread of A only through A's relay (A restarted on another port, so
#     the URL B holds for it refuses connections); A's pair with B is paused while N records are
#     written, then resumed: the time from the resume until B holds all N is deposit plus
#     delivery, end to end, with the CPU each process used per record;
#   * latency: records emitted on A 50 ms apart, timed until stored on B (its watch stream),
#     first through the relay, then directly once A is back on the URL B holds: the relay hop's
#     cost;
#   * far behind: B stopped while N more records are deposited (the relay's RSS with N queued),
#     then B catching up from the relay alone;
#   * the relay's RSS idle.
#
#   bench/relay.sh
#
# Environment knobs (defaults in brackets):
#   BENCH_RELAY_RECORDS [100000]  BENCH_PROP_RECORDS [300]  BENCH_PROP_INTERVAL_MS [50]
#   BENCH_SEED_CLIENTS [32]  BENCH_WORKERS [2]  BENCH_SKIP_BUILD [0]
#   DATABASE_URL [postgres://postgres@127.0.0.1:5432/test] (the relay gets a database of its own
#   on that server, dropped afterwards)
#   BENCH_OUT [<repo>/BENCHMARKS.md]  BENCH_DATE [today, UTC]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RECORDS="${BENCH_RELAY_RECORDS:-100000}"
PROP_RECORDS="${BENCH_PROP_RECORDS:-300}"
PROP_INTERVAL_MS="${BENCH_PROP_INTERVAL_MS:-50}"
SEED_CLIENTS="${BENCH_SEED_CLIENTS:-32}"
WORKERS="${BENCH_WORKERS:-2}"
OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
DATE="${BENCH_DATE:-$(date -u +%Y-%m-%d)}"
ADMIN_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
ACTOR="did:example:bench"

log() { printf '[bench] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release -p spl -p syncropel-relay -p syncropel-bench"
  cargo build --release -p spl -p syncropel-relay -p syncropel-bench
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SPL="$TARGET_DIR/release/spl"
RELAY="$TARGET_DIR/release/relay"
BENCH=("$TARGET_DIR/release/syncropel-bench" --workers "$WORKERS")

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-relay-bench.XXXXXX")"
DB="relay_bench_$(date +%s)_$$"
RELAY_DB_URL="${ADMIN_URL%/*}/$DB"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
START_TS=$(date +%s)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
queued() { psql -qtA "$RELAY_DB_URL" -c "SELECT coalesce(sum(items), 0) FROM relay_envelopes"; }

# --- the relay --------------------------------------------------------------------------
psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
RELAY_PORT=$(free_port)
RELAY_URL="http://127.0.0.1:$RELAY_PORT"
"$RELAY" --database-url "$RELAY_DB_URL" migrate >/dev/null
RELAY_CURSOR_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  "$RELAY" --database-url "$RELAY_DB_URL" --listen "127.0.0.1:$RELAY_PORT" \
  --max-items-per-destination $((2 * RECORDS)) >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
"${BENCH[@]}" wait-ready --url "$RELAY_URL" --timeout-secs 30 >/dev/null
sleep 2
RELAY_IDLE=$(status_kib "$RELAY_PID" VmRSS)
log "relay $RELAY_URL, idle RSS $(mib "$RELAY_IDLE") MiB"

B_DID_EARLY=$("$SPL" --home "$WORK/B" init | tr -d '[:space:]')
A_HELD_PORT=$(free_port)
A_ARGS=(--auto-approve-did "$B_DID_EARLY" --relay "$RELAY_URL")
start_steward A --port "$A_HELD_PORT" "${A_ARGS[@]}"
start_steward B --port 0
spla() { "$SPL" --home "$WORK/A" --endpoint "$A_URL" --token "$A_TOKEN" "$@"; }
splb() { "$SPL" --home "$WORK/B" --endpoint "$B_URL" --token "$B_TOKEN" "$@"; }
# move_a PORT: A stops and serves again on PORT (its home, records and pairs unchanged).
move_a() {
  kill -TERM "$A_PID"
  while kill -0 "$A_PID" 2>/dev/null; do sleep 0.1; done
  serve A --port "$1" "${A_ARGS[@]}"
}
log "A $A_URL, B $B_URL"

PAIR_JSON=$(splb --json federation pair "$A_URL" | tr -d '\n')
[[ "$(jget "$PAIR_JSON" state)" == active ]] || { echo "pairing failed: $PAIR_JSON" >&2; exit 1; }
PAIR_ID=$(jget "$PAIR_JSON" pair_id)

# thread_count URL TOKEN THREAD: the records a steward holds on a thread.
thread_count() {
  curl -s -H "Authorization: Bearer $2" "$1/v1/threads?limit=1000" | tr -d '\n' \
    | python3 -c 'import json, sys; t = sys.argv[1]; print(next((x["record_count"] for x in json.load(sys.stdin)["data"] if x["id"] == t), 0))' "$3"
}
# job_status: the status of B's pull jobs from A (ok, relay, failing, …).
job_status() {
  splb --json federation show "$PAIR_ID" | tr -d '\n' | python3 -c '
import json, sys
pair = json.load(sys.stdin)
print(",".join(sorted({j.get("status", "") for j in pair.get("sync_health", {}).get("jobs", [])})))'
}
on_relay() { [[ "$(job_status)" == relay ]]; }
on_source() { [[ "$(job_status)" == ok ]]; }
# back_to_source: A on the URL B holds again, and B's jobs kicked (a kicked job on a relay asks
# its source at once instead of at its next probe).
back_to_source() {
  move_a "$A_HELD_PORT"
  splb federation pause "$A_DID" >/dev/null
  splb federation resume "$A_DID" >/dev/null
  wait_for 120 "B back on its source" on_source
}
relay_empty() { [[ "$(queued)" == 0 ]]; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
  local until=$(( $(date +%s) + $1 )) what="$2"; shift 2
  until "$@"; do
    [[ $(date +%s) -lt $until ]] || {
      echo "timed out waiting for $what (B's jobs: $(job_status))" >&2
      splb --json federation show "$PAIR_ID" >&2 || true
      tail -20 "$WORK/B.log" >&2
      exit 1
    }
    sleep 0.2
  done
}

# --- setup: B pulls both threads once directly, so that A deposits them for it ---------------
T="th_bench_relay"
L="th_bench_relay_latency"
for thread in "$T" "$L"; do
  spla emit --act DO --thread "$thread" --body '{"n":0}' --actor "$ACTOR" >/dev/null
  splb --json sync "$thread" from "$A_DID" >/dev/null
done
sleep 1
log "A moves to another port: the URL B holds for it refuses connections"
move_a "$(free_port)"
wait_for 60 "B pulling from the relay" on_relay
# --- latency: through the relay, then directly ----------------------------------------------
propagation() {
  SPL_BENCH_SOURCE_TOKEN="$A_TOKEN" SPL_BENCH_SINK_TOKEN="$B_TOKEN" "${BENCH[@]}" propagation \
    --source-url "$A_URL" --sink-url "$B_URL" --thread "$1" \
    --records "$PROP_RECORDS" --interval-ms "$PROP_INTERVAL_MS" --actor "$ACTOR"
}
log "latency through the relay: $PROP_RECORDS records ${PROP_INTERVAL_MS} ms apart"
VIA_RELAY=$(propagation "$L")
log "via the relay: $VIA_RELAY"
back_to_source
DIRECT=$(propagation "$L")
log "direct: $DIRECT"
log "A moves away again, for the throughput run"
move_a "$(free_port)"
wait_for 60 "B pulling from the relay" on_relay

# --- throughput ---------------------------------------------------------------------------
spla federation pause "$B_DID" >/dev/null
log "seeding $RECORDS records on A while its pair with B is paused"
SEED_JSON=$(SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" seed --url "$A_URL" --thread "$T" \
  --records "$RECORDS" --clients "$SEED_CLIENTS" --actor "$ACTOR")
SEED_RPS=$(jget "$SEED_JSON" records_per_sec)
log "seeded: $SEED_JSON"
WANT=$((RECORDS + 1))
RELAY_HWM0=$(status_kib "$RELAY_PID" VmHWM)
A_T0=$(proc_ticks "$A_PID"); B_T0=$(proc_ticks "$B_PID"); R_T0=$(proc_ticks "$RELAY_PID"); T0=$(now_ns)
spla federation resume "$B_DID" >/dev/null
PEAK_QUEUED=0
while :; do
  HELD=$(thread_count "$B_URL" "$B_TOKEN" "$T")
  Q=$(queued); (( Q > PEAK_QUEUED )) && PEAK_QUEUED=$Q
  [[ "$HELD" -ge "$WANT" ]] && break
  [[ $(( ($(now_ns) - T0) / 1000000000 )) -lt 600 ]] || { echo "B holds $HELD of $WANT after 600 s" >&2; exit 1; }
  sleep 0.2
done
T1=$(now_ns); A_T1=$(proc_ticks "$A_PID"); B_T1=$(proc_ticks "$B_PID"); R_T1=$(proc_ticks "$RELAY_PID")
RELAY_HWM1=$(status_kib "$RELAY_PID" VmHWM)
SECS=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
RPS=$(awk -v n="$RECORDS" -v s="$SECS" 'BEGIN { printf "%.0f", n / s }')
per_record() { awk -v a="$1" -v b="$2" -v n="$RECORDS" 'BEGIN { printf "%.0f", (b - a) * 10000 / n }'; }
A_US=$(per_record "$A_T0" "$A_T1"); B_US=$(per_record "$B_T0" "$B_T1"); R_US=$(per_record "$R_T0" "$R_T1")
A_CORES=$(cores "$A_T0" "$A_T1" "$T0" "$T1"); B_CORES=$(cores "$B_T0" "$B_T1" "$T0" "$T1"); R_CORES=$(cores "$R_T0" "$R_T1" "$T0" "$T1")
wait_for 60 "the relay emptied by B's acks" relay_empty
log "through the relay: $RECORDS records in $SECS s = $RPS rec/s; CPU µs/record: A $A_US, relay $R_US, B $B_US; peak queued $PEAK_QUEUED"

# --- far behind: B stopped while N more are deposited, then it catches up from the relay -------
log "far behind: B stops, $RECORDS more records are written and deposited"
B_STOP_PID=$B_PID
kill -TERM "$B_STOP_PID"
while kill -0 "$B_STOP_PID" 2>/dev/null; do sleep 0.1; done
SEED2_JSON=$(SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" seed --url "$A_URL" --thread "$T" \
  --records "$RECORDS" --clients "$SEED_CLIENTS" --actor "$ACTOR")
log "seeded: $SEED2_JSON"
all_queued() { [[ "$(queued)" -ge "$RECORDS" ]]; }
wait_for 300 "all $RECORDS deposited" all_queued
sleep 2
BEHIND_RSS=$(status_kib "$RELAY_PID" VmRSS)
BEHIND_HWM0=$(status_kib "$RELAY_PID" VmHWM)
serve B --port 0
B2_T0=$(proc_ticks "$B_PID"); R2_T0=$(proc_ticks "$RELAY_PID"); T2=$(now_ns)
WANT=$((2 * RECORDS + 1))
while :; do
  HELD=$(thread_count "$B_URL" "$B_TOKEN" "$T")
  [[ "$HELD" -ge "$WANT" ]] && break
  [[ $(( ($(now_ns) - T2) / 1000000000 )) -lt 600 ]] || { echo "B holds $HELD of $WANT after 600 s" >&2; exit 1; }
  sleep 0.2
done
T3=$(now_ns); B2_T1=$(proc_ticks "$B_PID"); R2_T1=$(proc_ticks "$RELAY_PID")
BEHIND_HWM1=$(status_kib "$RELAY_PID" VmHWM)
CATCH_SECS=$(awk -v a="$T2" -v b="$T3" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
CATCH_RPS=$(awk -v n="$RECORDS" -v s="$CATCH_SECS" 'BEGIN { printf "%.0f", n / s }')
B2_US=$(per_record "$B2_T0" "$B2_T1"); R2_US=$(per_record "$R2_T0" "$R2_T1")
log "catch-up from the relay: $RECORDS records in $CATCH_SECS s = $CATCH_RPS rec/s (B $B2_US µs, relay $R2_US µs per record); relay RSS with $RECORDS queued $(mib "$BEHIND_RSS") MiB, peak $(mib "$BEHIND_HWM1") MiB"

ms() { awk -v u="$(jget "$1" "$2")" 'BEGIN { if (u == "") print "n/a"; else printf "%.2f", u / 1000 }'; }
R50=$(ms "$VIA_RELAY" p50_us); R99=$(ms "$VIA_RELAY" p99_us); RMAX=$(ms "$VIA_RELAY" max_us)
D50=$(ms "$DIRECT" p50_us); D99=$(ms "$DIRECT" p99_us); DMAX=$(ms "$DIRECT" max_us)
ADDED99=$(awk -v r="$R99" -v d="$D99" 'BEGIN { printf "%.2f", r - d }')
ADDED50=$(awk -v r="$R50" -v d="$D50" 'BEGIN { printf "%.2f", r - d }')

ELAPSED=$(( $(date +%s) - START_TS ))
CPU_MODEL="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
SECTION="$WORK/section.md"
{
  echo "<!-- relay:begin -->"
  echo "## Relay: records through a relay while their source is offline ($DATE)"
  echo
  echo "- Machine: $(nproc) CPUs ($CPU_MODEL), Linux $(uname -r); load average before the run: $LOAD_BEFORE (shared machine)."
  echo "- Commit: \`$COMMIT\`; release build; two \`spl serve\` (SQLite, durable commits), one \`relay\` on the local Postgres, all on loopback and sharing the CPUs with Postgres and the generator. A is restarted on another port, so the URL B holds for it refuses connections while the generator still writes to it; B turns to A's relay at the first failure (A's manifest says \`offline_capable\`). Whole run: ${ELAPSED} s."
  echo
  echo "| Figure | Target | Measured | Verdict |"
  echo "|---|---|---|---|"
  echo "| Deposit plus delivery of $(fmt0 "$RECORDS") records through one relay, end to end (A's outbox reads, filters, signs and deposits; B pulls, checks every envelope and record, stores and acks) | >= 20,000 rec/s | $(fmt0 "$RPS") rec/s ($RECORDS in $SECS s) | $(verdict "$RPS" ge 20000) |"
  echo "| CPU per record during it | reported | relay $R_US µs ($R_CORES cores), A (source) $A_US µs ($A_CORES cores), B (destination) $B_US µs ($B_CORES cores); Postgres not counted | |"
  echo "| Added latency of the relay hop, emit on A -> stored on B, $PROP_RECORDS records ${PROP_INTERVAL_MS} ms apart each way | p99 < 100 ms | via the relay p50 $R50 / p99 $R99 / max $RMAX ms; direct p50 $D50 / p99 $D99 / max $DMAX ms; added at p50 $ADDED50 ms, at p99 $ADDED99 ms (the whole relayed p99 is the bound on what the hop adds) | $(verdict "$R99" lt 100) |"
  echo "| Relay RSS idle | < 30 MiB | $(mib "$RELAY_IDLE") MiB | $(verdict "$(mib "$RELAY_IDLE")" lt 30) |"
  echo "| Relay RSS while B is far behind | bounded | $(mib "$BEHIND_RSS") MiB with $(fmt0 "$RECORDS") records queued; peak (VmHWM) $(mib "$BEHIND_HWM1") MiB over the whole run (up to $(fmt0 "$PEAK_QUEUED") queued during the end-to-end run) | |"
  echo "| B catching up from the relay alone, $(fmt0 "$RECORDS") records queued while it was stopped | reported | $(fmt0 "$CATCH_RPS") rec/s ($RECORDS in $CATCH_SECS s, including B's start); B $B2_US µs and the relay $R2_US µs of CPU per record | |"
  echo
  echo "Same-run baseline: A took the $(fmt0 "$RECORDS") records from the generator at $(fmt0 "$SEED_RPS") rec/s (\`seed\`, $SEED_CLIENTS clients)."
  echo
  echo "Command: \`bench/relay.sh\` (knobs at the top of the script)."
  echo "<!-- relay:end -->"
} >"$SECTION"

write_section relay "$SECTION" "$OUT"
log "wrote $OUT"
cat "$SECTION"
