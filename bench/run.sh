#!/usr/bin/env bash
# Benchmark the local steward (`spl serve`, SQLite, durable commits) and write
# a dated section into BENCHMARKS.md at the repository root.
#
#   bench/run.sh                 # build (release), measure, write BENCHMARKS.md
#
# Environment knobs (defaults in brackets):
#   BENCH_CLIENTS [32]  BENCH_POST_SECS [10]  BENCH_WARMUP_SECS [2]
#   BENCH_HEALTH_SECS [5]  BENCH_THREADS [64]  BENCH_SEED_RECORDS [100000]
#   BENCH_SEED_MAX_SECS [60]  BENCH_PAGE_LIMIT [1000]  BENCH_PAGE_PASSES [3]
#   BENCH_INIT_RUNS [10]  BENCH_WORKERS [2] (generator tokio threads)
#   BENCH_ACTOR [did:example:bench]  BENCH_SKIP_BUILD [0]
#   BENCH_GENERATOR [<target>/release/syncropel-bench] (the load generator binary)
#   BENCH_OUT [<repo>/BENCHMARKS.md]  BENCH_DATE [today, UTC]
#   BENCH_SA_ARGS [] extra arguments for `spl service-account create`
#
# Everything runs on loopback; the total runtime is bounded (about 1-2 min
# once the release build is cached).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CLIENTS="${BENCH_CLIENTS:-32}"
POST_SECS="${BENCH_POST_SECS:-10}"
WARMUP_SECS="${BENCH_WARMUP_SECS:-2}"
HEALTH_SECS="${BENCH_HEALTH_SECS:-5}"
THREADS="${BENCH_THREADS:-64}"
SEED_RECORDS="${BENCH_SEED_RECORDS:-100000}"
SEED_MAX_SECS="${BENCH_SEED_MAX_SECS:-60}"
PAGE_LIMIT="${BENCH_PAGE_LIMIT:-1000}"
PAGE_PASSES="${BENCH_PAGE_PASSES:-3}"
INIT_RUNS="${BENCH_INIT_RUNS:-10}"
WORKERS="${BENCH_WORKERS:-2}"
ACTOR="${BENCH_ACTOR:-did:example:bench}"
OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
DATE="${BENCH_DATE:-$(date -u +%Y-%m-%d)}"
read -r -a SA_EXTRA <<<"${BENCH_SA_ARGS:-}"
PAGE_THREAD="th_bench_page"

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
[[ -x "$SPL" ]] || { echo "missing $SPL" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-bench.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    sleep 1
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
H="$WORK/home"
START_TS=$(date +%s)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- spl init wall time ------------------------------------------------------
log "spl init x$INIT_RUNS"
INIT_JSON=$("${BENCH[@]}" exec --runs "$INIT_RUNS" --warmup 2 -- "$SPL" --home "$WORK/init-{i}" init)
log "init: $INIT_JSON"
rm -rf "$WORK"/init-*

# --- raw SQLite baselines (before the server starts) --------------------------
log "sqlite baselines"
SQL1_JSON=$("${BENCH[@]}" sqlite --path "$WORK/baseline.db" --duration-secs 3 --batch 1)
log "sqlite batch=1: $SQL1_JSON"
SQLB_JSON=$("${BENCH[@]}" sqlite --path "$WORK/baseline.db" --duration-secs 3 --batch 100)
log "sqlite batch=100: $SQLB_JSON"
rm -f "$WORK"/baseline.db*

# --- steward -------------------------------------------------------------------
"$SPL" --home "$H" init >/dev/null
TOKEN=$("$SPL" --home "$H" service-account create --bootstrap --name bench --scopes admin \
  --actors "$ACTOR" --with-token "${SA_EXTRA[@]}" | tr -d '[:space:]')
[[ -n "$TOKEN" ]] || { echo "no token from service-account create" >&2; exit 1; }
export SPL_BENCH_TOKEN="$TOKEN"

log "starting spl serve"
"$SPL" --home "$H" serve --port 0 >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  [[ -s "$H/steward.json" ]] && grep -q '"url"' "$H/steward.json" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; echo "spl serve exited" >&2; exit 1; }
  sleep 0.1
done
STEWARD_JSON="$(tr -d '\n' <"$H/steward.json")"
URL=$(jget "$STEWARD_JSON" url)
PID=$(jget "$STEWARD_JSON" pid)
[[ -n "$URL" ]] || { echo "no url in steward.json: $STEWARD_JSON" >&2; exit 1; }
[[ -n "$PID" && -d "/proc/$PID" ]] || PID="$SERVER_PID"
case "$URL" in
  http://127.0.0.1:* | http://localhost:* | http://\[::1\]:*) ;;
  *) echo "refusing a non-loopback url: $URL" >&2; exit 1 ;;
esac
"${BENCH[@]}" wait-ready --url "$URL" --timeout-secs 30 >/dev/null
log "steward at $URL (pid $PID)"

sleep 2
IDLE_KIB=$(status_kib "$PID" VmRSS)
log "idle VmRSS ${IDLE_KIB} KiB"

log "health baseline, $CLIENTS clients, ${HEALTH_SECS}s"
K0=$(proc_ticks "$PID"); N0=$(now_ns)
HEALTH_JSON=$("${BENCH[@]}" health --url "$URL" --clients "$CLIENTS" \
  --duration-secs "$HEALTH_SECS" --warmup-secs 1)
HEALTH_SRV_CORES=$(cores "$K0" "$(proc_ticks "$PID")" "$N0" "$(now_ns)")
log "health: $HEALTH_JSON"

log "POST /v1/records, $CLIENTS clients, ${POST_SECS}s (+${WARMUP_SECS}s warm-up)"
K0=$(proc_ticks "$PID"); N0=$(now_ns)
POST_JSON=$("${BENCH[@]}" post --url "$URL" --actor "$ACTOR" --clients "$CLIENTS" \
  --duration-secs "$POST_SECS" --threads "$THREADS" --warmup-secs "$WARMUP_SECS")
POST_SRV_CORES=$(cores "$K0" "$(proc_ticks "$PID")" "$N0" "$(now_ns)")
POST_HWM_KIB=$(status_kib "$PID" VmHWM)
log "post: $POST_JSON (VmHWM ${POST_HWM_KIB} KiB)"

log "seed $SEED_RECORDS records into $PAGE_THREAD"
SEED_JSON=$("${BENCH[@]}" seed --url "$URL" --actor "$ACTOR" --thread "$PAGE_THREAD" \
  --records "$SEED_RECORDS" --clients "$CLIENTS" --max-secs "$SEED_MAX_SECS")
SEEDED=$(jget "$SEED_JSON" records)
log "seed: $SEED_JSON"

log "page $PAGE_THREAD, limit $PAGE_LIMIT, $PAGE_PASSES passes"
PAGE_JSON=$("${BENCH[@]}" page --url "$URL" --thread "$PAGE_THREAD" --limit "$PAGE_LIMIT" \
  --passes "$PAGE_PASSES" --expect "$SEEDED")
log "page: $PAGE_JSON"
FINAL_HWM_KIB=$(status_kib "$PID" VmHWM)

log "stopping the steward (SIGTERM)"
stop_steward "$SERVER_PID"
SERVER_PID=""
log "steward $STOP_NOTE (status $RC) in ${STOP_MS} ms"
ELAPSED=$(( $(date +%s) - START_TS ))

# --- figures ---------------------------------------------------------------------
POST_RPS=$(jget "$POST_JSON" records_per_sec)
POST_P50=$(jget "$POST_JSON" p50_ms)
POST_P99=$(jget "$POST_JSON" p99_ms)
POST_MAX=$(jget "$POST_JSON" max_ms)
POST_ERR=$(jget "$POST_JSON" errors)
PAGE_RPS=$(jget "$PAGE_JSON" records_per_sec)
PAGE_PAGES=$(jget "$PAGE_JSON" pages)
INIT_MED=$(jget "$INIT_JSON" median_ms)
INIT_MIN=$(jget "$INIT_JSON" min_ms)
INIT_MAX=$(jget "$INIT_JSON" max_ms)
IDLE_MIB=$(mib "$IDLE_KIB")
POST_HWM_MIB=$(mib "$POST_HWM_KIB")
FINAL_HWM_MIB=$(mib "$FINAL_HWM_KIB")
HEALTH_RPS=$(jget "$HEALTH_JSON" requests_per_sec)
HEALTH_P50=$(jget "$HEALTH_JSON" p50_ms)
HEALTH_P99=$(jget "$HEALTH_JSON" p99_ms)
SQL1_CPS=$(jget "$SQL1_JSON" commits_per_sec)
SQL1_P50=$(jget "$SQL1_JSON" commit_p50_ms)
SQLB_RPS=$(jget "$SQLB_JSON" rows_per_sec)
SQLB_CPS=$(jget "$SQLB_JSON" commits_per_sec)
SEED_RPS=$(jget "$SEED_JSON" records_per_sec)
SEED_DONE=$(jget "$SEED_JSON" complete)
POST_GEN_CORES=$(gen_cores "$POST_JSON")
HEALTH_GEN_CORES=$(gen_cores "$HEALTH_JSON")
# With every client waiting for its own durable commit, $CLIENTS records per
# fsync-bound commit is the most a closed loop can get.
DURABLE_CEIL=$(awk -v c="$CLIENTS" -v p="$SQL1_P50" 'BEGIN { if (p + 0 == 0) print ""; else printf "%.0f", c * 1000 / p }')

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo "none (no commit yet)")
if [[ -n "$(git status --porcelain 2>/dev/null | head -n1)" ]]; then COMMIT="$COMMIT (working tree modified)"; fi
B="target/release/syncropel-bench --workers $WORKERS"

SECTION="$WORK/section.md"
{
  echo "<!-- bench:$DATE -->"
  echo "## $DATE"
  echo
  echo "- Machine: $(nproc) CPUs ($CPU_MODEL), $MEM_GIB GiB RAM, Linux $(uname -r); load average before the run: $LOAD_BEFORE (shared machine)."
  echo "- Commit: \`$COMMIT\`; release build; steward \`spl serve\` on SQLite with durable commits, loopback HTTP/1.1; generator and steward share the same CPUs."
  echo "- Whole run: ${ELAPSED} s; steward stop on SIGTERM: $STOP_NOTE (status $RC) in ${STOP_MS} ms."
  echo
  echo "| Figure | Target | Measured | Verdict |"
  echo "|---|---|---|---|"
  echo "| \`POST /v1/records\`, $CLIENTS clients, ${POST_SECS} s | >= 20,000 rec/s | $(fmt0 "$POST_RPS") rec/s ($POST_ERR errors) | $(verdict "$POST_RPS" ge 20000) |"
  echo "| \`POST /v1/records\` latency p99 | < 10 ms | p50 $(fmt2 "$POST_P50") ms, p99 $(fmt2 "$POST_P99") ms, max $(fmt2 "$POST_MAX") ms | $(verdict "$POST_P99" lt 10) |"
  echo "| \`GET /v1/threads/{id}/records\` paging $(fmt0 "$SEEDED") records, limit $PAGE_LIMIT ($PAGE_PAGES pages, median of $PAGE_PASSES passes) | >= 100,000 rec/s | $(fmt0 "$PAGE_RPS") rec/s | $(verdict "$PAGE_RPS" ge 100000) |"
  echo "| \`spl init\` wall time (median of $INIT_RUNS, min-max $(fmt1 "$INIT_MIN")-$(fmt1 "$INIT_MAX") ms) | < 100 ms | $(fmt1 "$INIT_MED") ms | $(verdict "$INIT_MED" lt 100) |"
  echo "| \`spl serve\` idle RSS (VmRSS, 2 s after ready) | < 30 MiB | $IDLE_MIB MiB | $(verdict "$IDLE_MIB" lt 30) |"
  echo "| \`spl serve\` peak RSS after the POST load (VmHWM) | < 100 MiB | $POST_HWM_MIB MiB | $(verdict "$POST_HWM_MIB" lt 100) |"
  echo
  echo "Baselines from the same run (ratios hold better than absolute figures on a noisy machine):"
  echo
  echo "| Baseline | Measured | Ratio |"
  echo "|---|---|---|"
  echo "| \`GET /health\`, $CLIENTS clients, ${HEALTH_SECS} s (HTTP stack ceiling) | $(fmt0 "$HEALTH_RPS") req/s, p50 $(fmt2 "$HEALTH_P50") ms, p99 $(fmt2 "$HEALTH_P99") ms | POST / health = $(ratio "$POST_RPS" "$HEALTH_RPS") |"
  echo "| Raw SQLite, WAL + synchronous=FULL, 1 row per commit | $(fmt0 "$SQL1_CPS") commits/s (p50 $(fmt2 "$SQL1_P50") ms) | POST / this = $(ratio "$POST_RPS" "$SQL1_CPS") (the steward's group-commit gain) |"
  echo "| Raw SQLite, WAL + synchronous=FULL, 100 rows per commit | $(fmt0 "$SQLB_RPS") rows/s ($(fmt0 "$SQLB_CPS") commits/s) | POST / this = $(ratio "$POST_RPS" "$SQLB_RPS") |"
  echo "| Closed-loop durable ceiling: $CLIENTS clients / SQLite 1-row commit p50 | $(fmt0 "$DURABLE_CEIL") rec/s | POST / this = $(ratio "$POST_RPS" "$DURABLE_CEIL") |"
  echo "| Seeding one thread, $CLIENTS clients (complete: $SEED_DONE) | $(fmt0 "$SEED_RPS") rec/s | seed / POST = $(ratio "$SEED_RPS" "$POST_RPS") |"
  echo
  echo "CPU ($(nproc) in all; a core is 1.00): during the POST load the steward used $(fmt2 "$POST_SRV_CORES") and the generator $(fmt2 "$POST_GEN_CORES") cores, about $(us_per "$POST_SRV_CORES" "$POST_RPS") us of steward CPU per record; during \`GET /health\` $(fmt2 "$HEALTH_SRV_CORES") and $(fmt2 "$HEALTH_GEN_CORES") cores, $(us_per "$HEALTH_SRV_CORES" "$HEALTH_RPS") us per request."
  echo
  echo "Peak RSS at the end of the run (after seeding and paging): $FINAL_HWM_MIB MiB."
  echo
  echo "Commands (\`\$T\` a fresh temporary directory, \`\$H\` = \`\$T/home\`, \`\$URL\` from \`\$H/steward.json\`, the token in \`SPL_BENCH_TOKEN\`):"
  echo
  echo '```sh'
  echo "cargo build --release -p spl -p syncropel-bench"
  echo "$B exec --runs $INIT_RUNS --warmup 2 -- target/release/spl --home '\$T/init-{i}' init"
  echo "$B sqlite --path \$T/baseline.db --duration-secs 3 --batch 1"
  echo "$B sqlite --path \$T/baseline.db --duration-secs 3 --batch 100"
  echo "target/release/spl --home \$H init"
  echo "export SPL_BENCH_TOKEN=\$(target/release/spl --home \$H service-account create --bootstrap --name bench --scopes admin --actors $ACTOR --with-token${BENCH_SA_ARGS:+ $BENCH_SA_ARGS})"
  echo "target/release/spl --home \$H serve --port 0 &   # idle RSS: VmRSS of /proc/<pid>/status 2 s after /health answers"
  echo "$B health --url \$URL --clients $CLIENTS --duration-secs $HEALTH_SECS --warmup-secs 1"
  echo "$B post --url \$URL --actor $ACTOR --clients $CLIENTS --duration-secs $POST_SECS --threads $THREADS --warmup-secs $WARMUP_SECS   # then VmHWM"
  echo "$B seed --url \$URL --actor $ACTOR --thread $PAGE_THREAD --records $SEED_RECORDS --clients $CLIENTS --max-secs $SEED_MAX_SECS"
  echo "$B page --url \$URL --thread $PAGE_THREAD --limit $PAGE_LIMIT --passes $PAGE_PASSES --expect $SEEDED"
  echo "kill -TERM <pid>"
  echo '```'
  echo
  echo "<details><summary>Raw generator output</summary>"
  echo
  echo '```json'
  for j in "$INIT_JSON" "$SQL1_JSON" "$SQLB_JSON" "$HEALTH_JSON" "$POST_JSON" "$SEED_JSON" "$PAGE_JSON"; do echo "$j"; done
  echo '```'
  echo
  echo "</details>"
  echo "<!-- /bench:$DATE -->"
} >"$SECTION"

# Replace this date's section (or add it, newest first) below the header.
if [[ ! -f "$OUT" ]]; then
  cat >"$OUT" <<'EOF'
# Benchmarks

Figures written by `bench/run.sh` (load generator: `bench/`, package
`syncropel-bench`). Each run replaces the section for its date; newest first.
These machines are shared and noisy: read each figure together with the
same-run baselines and ratios, not as an absolute.

EOF
fi
awk -v date="$DATE" -v section="$SECTION" '
  BEGIN { open_tag = "<!-- bench:" date " -->"; close_tag = "<!-- /bench:" date " -->" }
  $0 == open_tag { skip = 1; next }
  skip && $0 == close_tag { skip = 0; drop_blank = 1; next }
  skip { next }
  drop_blank && $0 == "" { drop_blank = 0; next }
  { drop_blank = 0 }
  !inserted && /^<!-- bench:/ {
    while ((getline line < section) > 0) print line
    print ""
    inserted = 1
  }
  { print }
  END {
    if (!inserted) {
      while ((getline line < section) > 0) print line
    }
  }
' "$OUT" >"$WORK/out.md"
cp "$WORK/out.md" "$OUT"
log "wrote the $DATE section of ${OUT#"$ROOT"/}"
cat "$SECTION" >&2
