#!/usr/bin/env bash
# What sustained writes do to the local store (`spl serve`, SQLite, durable commits): the WAL size
# sampled every 100 ms under 32-client single POSTs, the WAL left after a clean stop (SIGTERM),
# the store's bytes per record and where they go (SQLite's dbstat, per table and index), and
# `spl serve`'s idle RSS 2 s after ready over several fresh starts. Prints a Markdown section.
#
#   bench/store.sh
#
# Environment knobs (defaults in brackets): BENCH_LOAD_SECS [60]  BENCH_CLIENTS [32]
#   BENCH_IDLE_RUNS [5]  BENCH_WORKERS [2]  BENCH_SKIP_BUILD [0]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOAD_SECS="${BENCH_LOAD_SECS:-60}"
CLIENTS="${BENCH_CLIENTS:-32}"
IDLE_RUNS="${BENCH_IDLE_RUNS:-5}"
WORKERS="${BENCH_WORKERS:-2}"
ACTOR="did:example:bench"

log() { printf '[store] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

prepare_run store
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- idle RSS over fresh starts ---------------------------------------------------------------
IDLE=()
for i in $(seq 1 "$IDLE_RUNS"); do
  start_steward "I$i" --port 0
  pid_var="I${i}_PID"
  sleep 2
  IDLE+=("$(mib "$(status_kib "${!pid_var}" VmRSS)")")
  stop_steward "${!pid_var}"
done
log "idle RSS (MiB): ${IDLE[*]}"

# --- sustained writes, the WAL sampled ----------------------------------------------------------
start_steward A --port 0
DB="$WORK/A/hub.db"
WAL_MAX=0
sample_wal() {
  local max=0 size
  while kill -0 "$A_PID" 2>/dev/null; do
    size=$(stat -c %s "$DB-wal" 2>/dev/null || echo 0)
    (( size > max )) && max=$size && echo "$max" >"$WORK/wal_max"
    sleep 0.1
  done
}
sample_wal &
SAMPLER=$!
T0=$(proc_ticks "$A_PID"); N0=$(now_ns)
POST_JSON=$(SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" post --url "$A_URL" --clients "$CLIENTS" \
  --duration-secs "$LOAD_SECS" --warmup-secs 0 --threads 64 --actor "$ACTOR")
N1=$(now_ns); T1=$(proc_ticks "$A_PID")
WAL_END=$(stat -c %s "$DB-wal" 2>/dev/null || echo 0)
RATE=$(jget "$POST_JSON" records_per_sec)
CPU_US=$(us_per "$(cores "$T0" "$T1" "$N0" "$N1")" "$RATE")
log "post: $POST_JSON"
stop_steward "$A_PID"
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
WAL_MAX=$(cat "$WORK/wal_max" 2>/dev/null || echo 0)
WAL_AFTER="none"
[[ -e "$DB-wal" ]] && WAL_AFTER="$(stat -c %s "$DB-wal") bytes"

RECORDS=$(sqlite3 "$DB" 'SELECT count(*) FROM records')
DB_BYTES=$(stat -c %s "$DB")
PER_RECORD=$(awk -v b="$DB_BYTES" -v n="$RECORDS" 'BEGIN { printf "%.0f", b / n }')
JSON_AVG=$(sqlite3 "$DB" 'SELECT CAST(avg(length(record_json)) AS INTEGER) FROM records')
BREAKDOWN=$(sqlite3 -separator ' ' "$DB" \
  "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY sum(pgsize) DESC" |
  awk -v n="$RECORDS" '{ printf "%s %.0f B/rec; ", $1, $2 / n }')
CPU_MODEL="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

echo "| Figure | Target | Measured |"
echo "|---|---|---|"
echo "| WAL during $LOAD_SECS s of $CLIENTS-client single POSTs ($(fmt0 "$RATE") rec/s, $CPU_US µs server CPU/rec) | < 64 MiB | max $(mib $((WAL_MAX / 1024))) MiB, $(mib $((WAL_END / 1024))) MiB at the end |"
echo "| WAL after a clean stop | none | $WAL_AFTER |"
echo "| Store bytes per record ($(fmt0 "$RECORDS") records, record JSON $JSON_AVG B on average) | <= 1,000 | $(fmt0 "$PER_RECORD") |"
echo "| \`spl serve\` idle RSS 2 s after ready, $IDLE_RUNS fresh starts | < 30 MiB each | ${IDLE[*]} MiB |"
echo
echo "Where the bytes go: $BREAKDOWN"
echo
echo "- Machine: $(nproc) CPUs ($CPU_MODEL), Linux $(uname -r); load average before: $LOAD_BEFORE. Commit \`$COMMIT\`, release build."
echo "- Command: \`bench/store.sh\`."
