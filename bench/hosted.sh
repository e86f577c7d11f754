#!/usr/bin/env bash
# Benchmark the hosted steward (`steward`, many tenants over Postgres) and write a
# dated "Hosted steward (Postgres)" section into BENCHMARKS.md at the repository root.
#
#   bench/hosted.sh              # build (release), measure, write BENCHMARKS.md
#
# Needs a local Postgres that the user below can reach without a password (trust
# auth); a fresh database `bench_hosted_<pid>` is created and dropped at the end
# (also on failure).
#
# Environment knobs (defaults in brackets):
#   BENCH_PG_HOST [127.0.0.1]  BENCH_PG_PORT [5432]  BENCH_PG_USER [postgres]
#   BENCH_PG_ADMIN_DB [test] (the database CREATE/DROP DATABASE run from)
#   BENCH_PROV_COUNT [100]  BENCH_PROV_CLIENTS [8]     (measured provisioning runs)
#   BENCH_POST_CLIENTS [64]  BENCH_POST_SECS [10]  BENCH_POST2_SECS [10]  BENCH_WARMUP_SECS [2]
#   BENCH_TENANTS [100] (tenants the POST and batch load is spread over)
#   BENCH_BATCH_CLIENTS [8]  BENCH_BATCH_SIZE [500]  BENCH_BATCH_SECS [10]
#   BENCH_TOTAL_TENANTS [10000]  BENCH_BULK_CLIENTS [16]  BENCH_BULK_MAX_SECS [300]
#   BENCH_HEALTH_CLIENTS [32]  BENCH_HEALTH_SECS [5]  BENCH_PG_SECS [3]  BENCH_IDLE_SECS [3]
#   BENCH_WORKERS [2] (generator tokio threads)  BENCH_ACTOR [did:example:bench]
#   BENCH_SKIP_BUILD [0]  BENCH_OUT [<repo>/BENCHMARKS.md]  BENCH_DATE [today, UTC]
#   BENCH_GENERATOR [<target>/release/syncropel-bench] (the load generator binary)
#
# Everything runs on loopback. Runtime: about 1.5 min plus the bulk provisioning
# to BENCH_TOTAL_TENANTS, which stops after BENCH_BULK_MAX_SECS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PG_HOST="${BENCH_PG_HOST:-127.0.0.1}"
PG_PORT="${BENCH_PG_PORT:-5432}"
PG_USER="${BENCH_PG_USER:-postgres}"
PG_ADMIN_DB="${BENCH_PG_ADMIN_DB:-test}"
PROV_COUNT="${BENCH_PROV_COUNT:-100}"
PROV_CLIENTS="${BENCH_PROV_CLIENTS:-8}"
POST_CLIENTS="${BENCH_POST_CLIENTS:-64}"
POST_SECS="${BENCH_POST_SECS:-10}"
POST2_SECS="${BENCH_POST2_SECS:-10}"
WARMUP_SECS="${BENCH_WARMUP_SECS:-2}"
TENANTS="${BENCH_TENANTS:-100}"
BATCH_CLIENTS="${BENCH_BATCH_CLIENTS:-8}"
BATCH_SIZE="${BENCH_BATCH_SIZE:-500}"
BATCH_SECS="${BENCH_BATCH_SECS:-10}"
TOTAL_TENANTS="${BENCH_TOTAL_TENANTS:-10000}"
BULK_CLIENTS="${BENCH_BULK_CLIENTS:-16}"
BULK_MAX_SECS="${BENCH_BULK_MAX_SECS:-300}"
HEALTH_CLIENTS="${BENCH_HEALTH_CLIENTS:-32}"
HEALTH_SECS="${BENCH_HEALTH_SECS:-5}"
PG_SECS="${BENCH_PG_SECS:-3}"
IDLE_SECS="${BENCH_IDLE_SECS:-3}"
WORKERS="${BENCH_WORKERS:-2}"
ACTOR="${BENCH_ACTOR:-did:example:bench}"
OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
DATE="${BENCH_DATE:-$(date -u +%Y-%m-%d)}"
DB="bench_hosted_$$"
JWT_ISSUER="bench-platform"
JWT_AUDIENCE="syncropel-steward"
PREFIX="/t"

log() { printf '[hosted-bench] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# pg_ticks: the same, summed over every process named `postgres` (server and backends).
pg_ticks() {
  local p t=0 x
  for p in $(pgrep -x postgres || true); do
    x=$(proc_ticks "$p" || true)
    [[ -n "$x" ]] && t=$((t + x))
  done
  echo "$t"
}
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
psql_admin() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_ADMIN_DB" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_db() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$DB" -X -q -v ON_ERROR_STOP=1 "$@"; }

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release -p syncropel-bench -p syncropel-steward"
  cargo build --release -p syncropel-bench -p syncropel-steward
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
STEWARD="$TARGET_DIR/release/steward"
BENCH=("${BENCH_GENERATOR:-$TARGET_DIR/release/syncropel-bench}" --workers "$WORKERS")
[[ -x "$STEWARD" ]] || { echo "missing $STEWARD" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is needed" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-hosted-bench.XXXXXX")"
SERVER_PID=""
DB_CREATED=0
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ "$DB_CREATED" == 1 ]]; then
    psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 ||
      echo "could not drop database $DB" >&2
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
START_TS=$(date +%s)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- database --------------------------------------------------------------------
log "creating database $DB"
psql_admin -c "CREATE DATABASE $DB" >/dev/null
DB_CREATED=1
PG_VERSION=$(psql_db -Atc 'SHOW server_version')
PG_FSYNC=$(psql_db -Atc 'SHOW fsync')
PG_SYNC_COMMIT=$(psql_db -Atc 'SHOW synchronous_commit')
PG_MAX_CONN=$(psql_db -Atc 'SHOW max_connections')
PG_AUTOVACUUM=$(psql_db -Atc 'SHOW autovacuum')
# scans_of KIND: sequential (seq) or index (idx) scans of the record partitions so far.
scans_of() { psql_db -Atc "SELECT coalesce(sum(${1}_scan), 0) FROM pg_stat_user_tables WHERE relname LIKE 'records\_p%'"; }

# --- Postgres baselines (before the steward starts) ---------------------------------
# A scratch table shaped like `records` (same key and unique indexes, a ~600-byte JSON
# text column; no partitions and no full-text index), driven by server-side plpgsql
# loops: one client, no network round trips, one COMMIT per row or per batch.
log "postgres baselines (${PG_SECS}s each)"
psql_db >/dev/null <<SQL
CREATE TABLE bench_scratch (
  tenant text NOT NULL, seq bigint NOT NULL, id text NOT NULL, thread text NOT NULL,
  actor text NOT NULL, clock bigint NOT NULL, record_json text NOT NULL,
  PRIMARY KEY (tenant, seq), UNIQUE (tenant, id), UNIQUE (tenant, thread, actor, clock));
CREATE INDEX ON bench_scratch (tenant, thread, seq);
CREATE TABLE bench_result (name text, n bigint, secs double precision);
SQL
pg_loop() { # NAME ROWS_PER_COMMIT
  psql_db >/dev/null <<SQL
DO \$\$
DECLARE t0 timestamptz := clock_timestamp(); n bigint := 0; base bigint;
  pad text := repeat('x', 600);
BEGIN
  SELECT coalesce(max(seq), 0) + 1 INTO base FROM bench_scratch;
  WHILE clock_timestamp() < t0 + make_interval(secs => $PG_SECS) LOOP
    INSERT INTO bench_scratch
      SELECT 'tn_' || (g % 100), base + g, md5((base + g)::text) || md5((base + g + 1)::text),
             'th_bench_' || (g % 4), '$ACTOR', base + g, pad
      FROM generate_series(n, n + $2 - 1) AS g;
    n := n + $2;
    COMMIT;
  END LOOP;
  INSERT INTO bench_result VALUES ('$1', n, extract(epoch FROM clock_timestamp() - t0));
  COMMIT;
END
\$\$;
SQL
}
pg_loop commit1 1
pg_loop batch "$BATCH_SIZE"
PG1_RPS=$(psql_db -Atc "SELECT round(n / secs) FROM bench_result WHERE name = 'commit1'")
PGB_RPS=$(psql_db -Atc "SELECT round(n / secs) FROM bench_result WHERE name = 'batch'")
PG1_JSON=$(psql_db -Atc "SELECT json_build_object('baseline', 'pg_commit_1', 'rows', n, 'secs', round(secs::numeric, 3)) FROM bench_result WHERE name = 'commit1'")
PGB_JSON=$(psql_db -Atc "SELECT json_build_object('baseline', 'pg_commit_$BATCH_SIZE', 'rows', n, 'secs', round(secs::numeric, 3)) FROM bench_result WHERE name = 'batch'")
psql_db -c 'DROP TABLE bench_scratch; DROP TABLE bench_result' >/dev/null
log "postgres: 1 row/commit $PG1_RPS rows/s; $BATCH_SIZE rows/commit $PGB_RPS rows/s"

# --- steward ---------------------------------------------------------------------
export DATABASE_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB"
export STEWARD_KEK="$(hex 32)"
export STEWARD_JWT_SECRET="$(hex 24)"
export SPL_BENCH_JWT_SECRET="$STEWARD_JWT_SECRET"
export NO_COLOR=1
T0=$(now_ns)
"$STEWARD" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; exit 1; }
MIGRATE_MS=$(( ($(now_ns) - T0) / 1000000 ))

log "starting the hosted steward"
# Through the environment, which a baseline build older than the per-tenant limit ignores.
STEWARD_RATE_LIMIT_PER_TENANT=0 "$STEWARD" --bind 127.0.0.1:0 --base-domain localhost --path-prefix "$PREFIX" \
  --public-scheme http --jwt-issuer "$JWT_ISSUER" --jwt-audience "$JWT_AUDIENCE" \
  --rate-limit-per-address 0 --rate-limit-per-token 0 --tenant-limit 100000 \
  >"$WORK/steward.log" 2>&1 &
SERVER_PID=$!
PORT=""
for _ in $(seq 1 300); do
  PORT=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/steward.log" | grep 'listening' |
    grep -o '127\.0\.0\.1:[0-9]\+' | head -n1 | cut -d: -f2 || true)
  [[ -n "$PORT" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/steward.log" >&2; echo "steward exited" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$PORT" ]] || { cat "$WORK/steward.log" >&2; echo "no listening address in the steward log" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"
PID="$SERVER_PID"
READY_JSON=$("${BENCH[@]}" wait-ready --url "$URL" --timeout-secs 30)
SEQ0=$(scans_of seq); IDX0=$(scans_of idx)
log "steward at $URL (pid $PID), ready: $READY_JSON"

sleep "$IDLE_SECS"
IDLE_KIB=$(status_kib "$PID" VmRSS)
log "idle VmRSS ${IDLE_KIB} KiB"

log "health baseline, $HEALTH_CLIENTS clients, ${HEALTH_SECS}s"
K0=$(proc_ticks "$PID"); N0=$(now_ns)
HEALTH_JSON=$("${BENCH[@]}" health --url "$URL" --clients "$HEALTH_CLIENTS" \
  --duration-secs "$HEALTH_SECS" --warmup-secs 1)
HEALTH_SRV_CORES=$(cores "$K0" "$(proc_ticks "$PID")" "$N0" "$(now_ns)")
log "health: $HEALTH_JSON"

HP=(--url "$URL" --path-prefix "$PREFIX" --actor "$ACTOR")
log "provision $PROV_COUNT tenants, $PROV_CLIENTS clients"
PROV1_JSON=$("${BENCH[@]}" hosted-provision "${HP[@]}" --count "$PROV_COUNT" \
  --clients "$PROV_CLIENTS" --start 0 --out "$WORK/tenants1.txt" \
  --jwt-issuer "$JWT_ISSUER" --jwt-audience "$JWT_AUDIENCE")
log "provision: $PROV1_JSON"

log "hosted POST, $POST_CLIENTS clients over $TENANTS tenants, ${POST_SECS}s (+${WARMUP_SECS}s warm-up)"
K0=$(proc_ticks "$PID"); P0=$(pg_ticks); N0=$(now_ns)
POST_JSON=$("${BENCH[@]}" hosted-post "${HP[@]}" --tenants "$WORK/tenants1.txt" \
  --tenant-count "$TENANTS" --clients "$POST_CLIENTS" --duration-secs "$POST_SECS" \
  --warmup-secs "$WARMUP_SECS")
N1=$(now_ns)
POST_SRV_CORES=$(cores "$K0" "$(proc_ticks "$PID")" "$N0" "$N1")
POST_PG_CORES=$(cores "$P0" "$(pg_ticks)" "$N0" "$N1")
log "post: $POST_JSON"

sleep "$IDLE_SECS"
LOAD_KIB=$(status_kib "$PID" VmRSS)
LOAD_HWM_KIB=$(status_kib "$PID" VmHWM)
log "VmRSS after the load ${LOAD_KIB} KiB (VmHWM ${LOAD_HWM_KIB} KiB)"

BULK_COUNT=$(( TOTAL_TENANTS - 2 * PROV_COUNT ))
BULK_JSON='{}'
if (( BULK_COUNT > 0 )); then
  log "bulk provisioning $BULK_COUNT tenants, $BULK_CLIENTS clients (at most ${BULK_MAX_SECS}s)"
  DB_BYTES_B0=$(psql_db -Atc 'SELECT pg_database_size(current_database())')
  K0=$(proc_ticks "$PID"); P0=$(pg_ticks); N0=$(now_ns)
  BULK_JSON=$("${BENCH[@]}" hosted-provision "${HP[@]}" --count "$BULK_COUNT" \
    --clients "$BULK_CLIENTS" --start "$PROV_COUNT" --max-secs "$BULK_MAX_SECS" \
    --jwt-issuer "$JWT_ISSUER" --jwt-audience "$JWT_AUDIENCE")
  N1=$(now_ns)
  BULK_SRV_CORES=$(cores "$K0" "$(proc_ticks "$PID")" "$N0" "$N1")
  BULK_PG_CORES=$(cores "$P0" "$(pg_ticks)" "$N0" "$N1")
  DB_BYTES_B1=$(psql_db -Atc 'SELECT pg_database_size(current_database())')
  log "bulk: $BULK_JSON"
fi
LIVE_TENANTS=$(psql_db -Atc "SELECT count(*) FROM tenants WHERE status <> 'purged'")
# What autovacuum does on its own after a bulk load (this machine runs with it off).
psql_db -qc 'ANALYZE' >/dev/null

log "provision $PROV_COUNT more tenants at $LIVE_TENANTS live tenants"
PROV2_JSON=$("${BENCH[@]}" hosted-provision "${HP[@]}" --count "$PROV_COUNT" \
  --clients "$PROV_CLIENTS" --start $(( TOTAL_TENANTS - PROV_COUNT )) --out "$WORK/tenants2.txt" \
  --jwt-issuer "$JWT_ISSUER" --jwt-audience "$JWT_AUDIENCE")
log "provision at scale: $PROV2_JSON"
LIVE_TENANTS=$(psql_db -Atc "SELECT count(*) FROM tenants WHERE status <> 'purged'")

log "hosted POST again over the newest $TENANTS tenants, ${POST2_SECS}s"
POST2_JSON=$("${BENCH[@]}" hosted-post "${HP[@]}" --tenants "$WORK/tenants2.txt" \
  --tenant-count "$TENANTS" --clients "$POST_CLIENTS" --duration-secs "$POST2_SECS" \
  --warmup-secs "$WARMUP_SECS")
log "post at scale: $POST2_JSON"

# The batch load runs last, so the two POST measurements differ by the tenant count and
# not by the records the batch load adds.
log "hosted batch, $BATCH_CLIENTS clients x $BATCH_SIZE records, ${BATCH_SECS}s"
K0=$(proc_ticks "$PID"); P0=$(pg_ticks); N0=$(now_ns)
BATCH_JSON=$("${BENCH[@]}" hosted-batch "${HP[@]}" --tenants "$WORK/tenants1.txt" \
  --tenant-count "$TENANTS" --clients "$BATCH_CLIENTS" --batch "$BATCH_SIZE" \
  --duration-secs "$BATCH_SECS" --warmup-secs "$WARMUP_SECS")
N1=$(now_ns)
BATCH_SRV_CORES=$(cores "$K0" "$(proc_ticks "$PID")" "$N0" "$N1")
BATCH_PG_CORES=$(cores "$P0" "$(pg_ticks)" "$N0" "$N1")
log "batch: $BATCH_JSON"

sleep "$IDLE_SECS"
FINAL_KIB=$(status_kib "$PID" VmRSS)
FINAL_HWM_KIB=$(status_kib "$PID" VmHWM)
DB_BYTES_END=$(psql_db -Atc 'SELECT pg_database_size(current_database())')
RECORDS_END=$(psql_db -Atc 'SELECT count(*) FROM records')
SEQ_SCANS=$(( $(scans_of seq) - SEQ0 )); IDX_SCANS=$(( $(scans_of idx) - IDX0 ))

log "stopping the steward (SIGTERM)"
stop_steward "$SERVER_PID"
SERVER_PID=""
log "steward $STOP_NOTE (status $RC) in ${STOP_MS} ms"
ELAPSED=$(( $(date +%s) - START_TS ))
sed 's/\x1b\[[0-9;]*m//g' "$WORK/steward.log" >"$WORK/steward.clean.log"
LOG_WARN=$(grep -c ' WARN ' "$WORK/steward.clean.log" || true)
LOG_ERROR=$(grep -c ' ERROR ' "$WORK/steward.clean.log" || true)
LOG_SAMPLES=$(grep -E ' (WARN|ERROR) ' "$WORK/steward.clean.log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -n 5 || true)

# --- figures -------------------------------------------------------------------------
P1_E2E_P50=$(jget "$PROV1_JSON" e2e_p50_ms); P1_E2E_P90=$(jget "$PROV1_JSON" e2e_p90_ms)
P1_E2E_P99=$(jget "$PROV1_JSON" e2e_p99_ms); P1_E2E_MAX=$(jget "$PROV1_JSON" e2e_max_ms)
P1_PRV_P50=$(jget "$PROV1_JSON" provision_p50_ms); P1_PRV_P99=$(jget "$PROV1_JSON" provision_p99_ms)
P1_OK=$(jget "$PROV1_JSON" tenants); P1_ERR=$(jget "$PROV1_JSON" errors)
P1_RETRY=$(jget "$PROV1_JSON" first_record_retries); P1_TPS=$(jget "$PROV1_JSON" tenants_per_sec)
P2_E2E_P50=$(jget "$PROV2_JSON" e2e_p50_ms); P2_E2E_P90=$(jget "$PROV2_JSON" e2e_p90_ms)
P2_E2E_P99=$(jget "$PROV2_JSON" e2e_p99_ms); P2_E2E_MAX=$(jget "$PROV2_JSON" e2e_max_ms)
P2_PRV_P50=$(jget "$PROV2_JSON" provision_p50_ms); P2_PRV_P99=$(jget "$PROV2_JSON" provision_p99_ms)
P2_OK=$(jget "$PROV2_JSON" tenants); P2_ERR=$(jget "$PROV2_JSON" errors)
P2_RETRY=$(jget "$PROV2_JSON" first_record_retries); P2_TPS=$(jget "$PROV2_JSON" tenants_per_sec)
POST_RPS=$(jget "$POST_JSON" records_per_sec); POST_ERR=$(jget "$POST_JSON" errors)
POST_P50=$(jget "$POST_JSON" latency_p50_ms); POST_P90=$(jget "$POST_JSON" latency_p90_ms)
POST_P99=$(jget "$POST_JSON" latency_p99_ms); POST_MAX=$(jget "$POST_JSON" latency_max_ms)
POST2_RPS=$(jget "$POST2_JSON" records_per_sec); POST2_ERR=$(jget "$POST2_JSON" errors)
POST2_P50=$(jget "$POST2_JSON" latency_p50_ms); POST2_P99=$(jget "$POST2_JSON" latency_p99_ms)
POST2_MAX=$(jget "$POST2_JSON" latency_max_ms)
BATCH_RPS=$(jget "$BATCH_JSON" records_per_sec); BATCH_ERR=$(jget "$BATCH_JSON" errors)
BATCH_IERR=$(jget "$BATCH_JSON" record_errors); BATCH_REQ=$(jget "$BATCH_JSON" requests_per_sec)
BATCH_P50=$(jget "$BATCH_JSON" latency_p50_ms); BATCH_P99=$(jget "$BATCH_JSON" latency_p99_ms)
BATCH_MAX=$(jget "$BATCH_JSON" latency_max_ms); BATCH_BYTES=$(jget "$BATCH_JSON" request_bytes)
BULK_OK=$(jget "$BULK_JSON" tenants); BULK_ERR=$(jget "$BULK_JSON" errors)
BULK_SECS=$(jget "$BULK_JSON" secs); BULK_TPS=$(jget "$BULK_JSON" tenants_per_sec)
BULK_DONE=$(jget "$BULK_JSON" complete)
BULK_P50=$(jget "$BULK_JSON" e2e_p50_ms); BULK_P99=$(jget "$BULK_JSON" e2e_p99_ms)
HEALTH_RPS=$(jget "$HEALTH_JSON" requests_per_sec)
HEALTH_P50=$(jget "$HEALTH_JSON" p50_ms); HEALTH_P99=$(jget "$HEALTH_JSON" p99_ms)
R_PROV_P50=$(ratio "$P2_E2E_P50" "$P1_E2E_P50"); R_PROV_P99=$(ratio "$P2_E2E_P99" "$P1_E2E_P99")
R_POST_P50=$(ratio "$POST2_P50" "$POST_P50"); R_POST_P99=$(ratio "$POST2_P99" "$POST_P99")
R_POST_RPS=$(ratio "$POST2_RPS" "$POST_RPS")
PER_TENANT_KIB=$(awk -v a="${DB_BYTES_B0:-}" -v b="${DB_BYTES_B1:-}" -v n="${BULK_OK:-0}" 'BEGIN { if (a == "" || n + 0 == 0) print "n/a"; else printf "%.1f", (b - a) / n / 1024 }')
POST_GEN_CORES=$(gen_cores "$POST_JSON"); BATCH_GEN_CORES=$(gen_cores "$BATCH_JSON")
HEALTH_GEN_CORES=$(gen_cores "$HEALTH_JSON")
# verdict of a ratio that must not be more than 10 % worse
worse_ok() { verdict "$1" le 1.10; }
both() { # two verdicts -> one
  if [[ "$1" == pass && "$2" == pass ]]; then echo pass; elif [[ "$1" == n/a || "$2" == n/a ]]; then echo n/a; else echo MISS; fi
}

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo "none (no commit yet)")
if [[ -n "$(git status --porcelain 2>/dev/null | head -n1)" ]]; then COMMIT="$COMMIT (working tree modified)"; fi
B="target/release/syncropel-bench --workers $WORKERS"
HPC="--url \$URL --path-prefix $PREFIX --actor $ACTOR"

SECTION="$WORK/section.md"
{
  echo "<!-- bench-hosted:$DATE -->"
  echo "## Hosted steward (Postgres) — $DATE"
  echo
  echo "- Machine: $(nproc) CPUs ($CPU_MODEL), $MEM_GIB GiB RAM, Linux $(uname -r); load average before the run: $LOAD_BEFORE (shared machine)."
  echo "- Postgres $PG_VERSION on $PG_HOST:$PG_PORT, fsync=$PG_FSYNC, synchronous_commit=$PG_SYNC_COMMIT, autovacuum=$PG_AUTOVACUUM, max_connections=$PG_MAX_CONN; a fresh database per run."
  echo "- Commit: \`$COMMIT\`; release build; hosted \`steward\` with path-prefix addressing (\`$PREFIX/<label>/…\`), rate limits off, loopback HTTP/1.1; generator, steward and Postgres share the same CPUs."
  echo "- Whole run: ${ELAPSED} s (bulk provisioning $(fmt1 "$BULK_SECS") s of it); \`steward migrate\` on the empty database ${MIGRATE_MS} ms; stop on SIGTERM: $STOP_NOTE (status $RC) in ${STOP_MS} ms."
  echo
  echo "| Metric | Target | Measured | Verdict |"
  echo "|---|---|---|---|"
  echo "| Provisioning, $PROV_COUNT tenants, $PROV_CLIENTS clients: \`POST /provision\` → first \`201\` of \`POST /v1/records\` on the tenant, p99 | < 1 s | p50 $(fmt1 "$P1_E2E_P50") ms, p90 $(fmt1 "$P1_E2E_P90") ms, p99 $(fmt1 "$P1_E2E_P99") ms, max $(fmt1 "$P1_E2E_MAX") ms; the \`POST /provision\` call alone p50 $(fmt1 "$P1_PRV_P50") ms, p99 $(fmt1 "$P1_PRV_P99") ms; $P1_OK made, $P1_ERR errors, $P1_RETRY first-record retries, $(fmt1 "$P1_TPS") tenants/s | $(verdict "$P1_E2E_P99" lt 1000) |"
  echo "| \`POST $PREFIX/<label>/v1/records\`, $POST_CLIENTS clients over $TENANTS tenants, ${POST_SECS} s | >= 10,000 rec/s | $(fmt0 "$POST_RPS") rec/s ($POST_ERR errors) | $(verdict "$POST_RPS" ge 10000) |"
  echo "| same, latency p99 | < 50 ms | p50 $(fmt2 "$POST_P50") ms, p90 $(fmt2 "$POST_P90") ms, p99 $(fmt2 "$POST_P99") ms, max $(fmt2 "$POST_MAX") ms | $(verdict "$POST_P99" lt 50) |"
  echo "| \`POST $PREFIX/<label>/v1/records/batch\`, $BATCH_CLIENTS clients × $BATCH_SIZE records over $TENANTS tenants, ${BATCH_SECS} s (items with status 201) | >= 40,000 rec/s | $(fmt0 "$BATCH_RPS") rec/s ($(fmt1 "$BATCH_REQ") req/s of $(fmt0 "$BATCH_BYTES") bytes; request p50 $(fmt1 "$BATCH_P50") ms, p99 $(fmt1 "$BATCH_P99") ms, max $(fmt1 "$BATCH_MAX") ms; $BATCH_ERR request errors, $BATCH_IERR item errors) | $(verdict "$BATCH_RPS" ge 40000) |"
  echo "| Bulk provisioning to $(fmt0 "$TOTAL_TENANTS") tenants: $(fmt0 "$BULK_COUNT") more, $BULK_CLIENTS clients (bounded at ${BULK_MAX_SECS} s) | finishes (measure) | $(fmt0 "$BULK_OK") made in $(fmt1 "$BULK_SECS") s, $(fmt1 "$BULK_TPS") tenants/s (e2e p50 $(fmt1 "$BULK_P50") ms, p99 $(fmt1 "$BULK_P99") ms; $BULK_ERR errors); $(fmt0 "$LIVE_TENANTS") live tenants at the end | $( [[ "$BULK_DONE" == true ]] && echo pass || echo MISS ) |"
  echo "| Provisioning at $(fmt0 "$LIVE_TENANTS") tenants vs the first run, e2e p50 / p99 ratio | <= 1.10 | p50 $R_PROV_P50 ($(fmt1 "$P2_E2E_P50") vs $(fmt1 "$P1_E2E_P50") ms), p99 $R_PROV_P99 ($(fmt1 "$P2_E2E_P99") vs $(fmt1 "$P1_E2E_P99") ms); provision call p50 $(fmt1 "$P2_PRV_P50") ms, p99 $(fmt1 "$P2_PRV_P99") ms; $P2_ERR errors, $P2_RETRY retries | $(both "$(worse_ok "$R_PROV_P50")" "$(worse_ok "$R_PROV_P99")") |"
  echo "| \`POST /v1/records\` at $(fmt0 "$LIVE_TENANTS") tenants ($POST_CLIENTS clients over the newest $TENANTS, ${POST2_SECS} s) vs the first run, p50 / p99 ratio | <= 1.10 | p50 $R_POST_P50 ($(fmt2 "$POST2_P50") vs $(fmt2 "$POST_P50") ms), p99 $R_POST_P99 ($(fmt2 "$POST2_P99") vs $(fmt2 "$POST_P99") ms); $(fmt0 "$POST2_RPS") rec/s (ratio $R_POST_RPS), max $(fmt2 "$POST2_MAX") ms, $POST2_ERR errors | $(both "$(worse_ok "$R_POST_P50")" "$(worse_ok "$R_POST_P99")") |"
  echo "| Steward idle RSS (VmRSS, ${IDLE_SECS} s after ready) | — | $(mib "$IDLE_KIB") MiB | info |"
  echo "| Steward RSS ${IDLE_SECS} s after the first POST load (VmRSS / VmHWM) | — | $(mib "$LOAD_KIB") / $(mib "$LOAD_HWM_KIB") MiB | info |"
  echo "| Steward RSS at the end, $(fmt0 "$LIVE_TENANTS") tenants (VmRSS / VmHWM) | — | $(mib "$FINAL_KIB") / $(mib "$FINAL_HWM_KIB") MiB | info |"
  echo
  echo "Baselines from the same run (ratios hold better than absolute figures on a noisy machine):"
  echo
  echo "| Baseline | Measured | Ratio |"
  echo "|---|---|---|"
  echo "| \`GET /health\`, $HEALTH_CLIENTS clients, ${HEALTH_SECS} s (HTTP stack ceiling) | $(fmt0 "$HEALTH_RPS") req/s, p50 $(fmt2 "$HEALTH_P50") ms, p99 $(fmt2 "$HEALTH_P99") ms | POST / health = $(ratio "$POST_RPS" "$HEALTH_RPS") |"
  echo "| Postgres, one client, 1 row per COMMIT (plpgsql loop, records-shaped scratch table) | $(fmt0 "$PG1_RPS") commits/s | POST / this = $(ratio "$POST_RPS" "$PG1_RPS") (the steward's group-commit gain) |"
  echo "| Postgres, one client, $BATCH_SIZE rows per COMMIT (same table, \`INSERT … SELECT generate_series\`) | $(fmt0 "$PGB_RPS") rows/s | batch / this = $(ratio "$BATCH_RPS" "$PGB_RPS"); POST / this = $(ratio "$POST_RPS" "$PGB_RPS") |"
  echo "| Database growth per bulk-provisioned tenant (tenant, keys, bootstrap account and token, manifest, provisioning row, one record) | $PER_TENANT_KIB KiB | $(fmt0 "$RECORDS_END") records and $(awk -v b="$DB_BYTES_END" 'BEGIN { printf "%.0f", b / 1048576 }') MiB in the database at the end |"
  echo
  echo "CPU ($(nproc) in all; a core is 1.00): during the POST load the steward used $(fmt2 "$POST_SRV_CORES"), Postgres $(fmt2 "$POST_PG_CORES") and the generator $(fmt2 "$POST_GEN_CORES") cores, about $(us_per "$POST_SRV_CORES" "$POST_RPS") us of steward and $(us_per "$POST_PG_CORES" "$POST_RPS") us of Postgres CPU per record; during the batch load $(fmt2 "$BATCH_SRV_CORES"), $(fmt2 "$BATCH_PG_CORES") and $(fmt2 "$BATCH_GEN_CORES") cores, $(us_per "$BATCH_SRV_CORES" "$BATCH_RPS") us and $(us_per "$BATCH_PG_CORES" "$BATCH_RPS") us per record; during bulk provisioning $(fmt2 "${BULK_SRV_CORES:-}") and $(fmt2 "${BULK_PG_CORES:-}") cores, $(us_per "${BULK_SRV_CORES:-}" "$BULK_TPS") us and $(us_per "${BULK_PG_CORES:-}" "$BULK_TPS") us per tenant; during \`GET /health\` the steward $(fmt2 "$HEALTH_SRV_CORES") and the generator $(fmt2 "$HEALTH_GEN_CORES") cores, $(us_per "$HEALTH_SRV_CORES" "$HEALTH_RPS") us per request. Postgres CPU is summed over every process named \`postgres\`."
  echo
  echo "Scans of the 16 \`records\` partitions while the steward ran (\`pg_stat_user_tables\`): $(fmt0 "$SEQ_SCANS") sequential, $(fmt0 "$IDX_SCANS") index. Steward log: $LOG_WARN WARN and $LOG_ERROR ERROR lines."
  if [[ -n "$LOG_SAMPLES" ]]; then
    echo
    echo '```text'
    printf '%s\n' "$LOG_SAMPLES" | cut -c1-300
    echo '```'
  fi
  echo
  echo "Commands (\`\$DB\` a fresh database, \`\$URL\` the steward's address, \`\$T\` a temporary directory; the KEK and JWT secret are random per run):"
  echo
  echo '```sh'
  echo "cargo build --release -p syncropel-bench -p syncropel-steward"
  echo "bench/hosted.sh   # all of the below"
  echo "psql -h $PG_HOST -U $PG_USER -d $PG_ADMIN_DB -c 'CREATE DATABASE \$DB'"
  echo "export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/\$DB STEWARD_KEK=<64 hex> STEWARD_JWT_SECRET=<48 hex> SPL_BENCH_JWT_SECRET=\$STEWARD_JWT_SECRET"
  echo "target/release/steward migrate"
  echo "target/release/steward --bind 127.0.0.1:0 --base-domain localhost --path-prefix $PREFIX --public-scheme http --jwt-issuer $JWT_ISSUER --jwt-audience $JWT_AUDIENCE --rate-limit-per-address 0 --rate-limit-per-token 0 --tenant-limit 100000 &"
  echo "$B health --url \$URL --clients $HEALTH_CLIENTS --duration-secs $HEALTH_SECS --warmup-secs 1"
  echo "$B hosted-provision $HPC --count $PROV_COUNT --clients $PROV_CLIENTS --start 0 --out \$T/tenants1.txt"
  echo "$B hosted-post $HPC --tenants \$T/tenants1.txt --tenant-count $TENANTS --clients $POST_CLIENTS --duration-secs $POST_SECS --warmup-secs $WARMUP_SECS"
  echo "$B hosted-provision $HPC --count $BULK_COUNT --clients $BULK_CLIENTS --start $PROV_COUNT --max-secs $BULK_MAX_SECS"
  echo "psql \$DB -c ANALYZE   # after the bulk load, as autovacuum would (it is off here)"
  echo "$B hosted-provision $HPC --count $PROV_COUNT --clients $PROV_CLIENTS --start $(( TOTAL_TENANTS - PROV_COUNT )) --out \$T/tenants2.txt"
  echo "$B hosted-post $HPC --tenants \$T/tenants2.txt --tenant-count $TENANTS --clients $POST_CLIENTS --duration-secs $POST2_SECS --warmup-secs $WARMUP_SECS"
  echo "$B hosted-batch $HPC --tenants \$T/tenants1.txt --tenant-count $TENANTS --clients $BATCH_CLIENTS --batch $BATCH_SIZE --duration-secs $BATCH_SECS --warmup-secs $WARMUP_SECS"
  echo '```'
  echo
  echo "<details><summary>Raw generator output</summary>"
  echo
  echo '```json'
  for j in "$PG1_JSON" "$PGB_JSON" "$HEALTH_JSON" "$PROV1_JSON" "$POST_JSON" "$BULK_JSON" "$PROV2_JSON" "$POST2_JSON" "$BATCH_JSON"; do echo "$j"; done
  echo '```'
  echo
  echo "</details>"
  echo "<!-- /bench-hosted:$DATE -->"
} >"$SECTION"

# Replace this date's hosted section in place, or put it before the newest hosted
# section, or (the first one) at the end of the file. The local sections of
# bench/run.sh (`<!-- bench:DATE -->`) are left alone.
if [[ ! -f "$OUT" ]]; then
  cat >"$OUT" <<'EOF'
# Benchmarks

Figures written by `bench/run.sh` and `bench/hosted.sh` (load generator: `bench/`,
package `syncropel-bench`). Each run replaces the section for its date; newest first.
These machines are shared and noisy: read each figure together with the
same-run baselines and ratios, not as an absolute.

EOF
fi
awk -v date="$DATE" -v section="$SECTION" '
  BEGIN { open_tag = "<!-- bench-hosted:" date " -->"; close_tag = "<!-- /bench-hosted:" date " -->" }
  function emit(  line) { while ((getline line < section) > 0) print line; close(section); inserted = 1 }
  $0 == open_tag { emit(); skip = 1; next }
  skip && $0 == close_tag { skip = 0; next }
  skip { next }
  !inserted && /^<!-- bench-hosted:/ { emit(); print "" }
  { print; last = $0 }
  END {
    if (!inserted) { if (last != "") print ""; emit() }
  }
' "$OUT" >"$WORK/out.md"
cp "$WORK/out.md" "$OUT"
log "wrote the hosted $DATE section of ${OUT#"$ROOT"/}"
cat "$SECTION" >&2
