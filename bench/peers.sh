#!/usr/bin/env bash
# The steward side by side with the peer users would pick instead: PouchDB Server 4.2.0 (the
# CouchDB replication protocol, installed from npm, pinned), both on loopback on this machine,
# in interleaved rounds (the order of the two sides alternates), and the "Compared with"
# section of BENCHMARKS.md written from the medians.
#
#   bench/peers.sh
#
# Shapes, each on both sides with the same JSON document as body:
#   * single writes at 1, 16 and 32 clients (`POST /v1/records` / `POST /{db}`);
#   * 1,000-record batches at 4 clients (`POST /v1/records/batch` / `POST /{db}/_bulk_docs`);
#   * replication of a 100,000-record thread / database into a second server (`spl sync`, every
#     signature verified / `POST /_replicate` on the receiving server);
#   * continuous propagation, timed from the write's acknowledgement on the first server to its
#     arrival on the second (B's watch stream / the receiving database's `_changes` feed), B
#     pulling in continuous mode / a continuous replication;
#   * idle RSS 2 s after ready.
# Server CPU per record is the server process's utime + stime over the measured command,
# divided by the records (for replication: the receiving server; the source's is shown too).
#
# Environment knobs (defaults in brackets): BENCH_ROUNDS [3]  BENCH_POST_SECS [8]
#   BENCH_BATCH_SECS [8]  BENCH_REPL_RECORDS [100000]  BENCH_PROP_RECORDS [300]
#   BENCH_PROP_INTERVAL_MS [20]  BENCH_WORKERS [2]  BENCH_SKIP_BUILD [0]
#   BENCH_OUT [<repo>/BENCHMARKS.md]  BENCH_DATE [today, UTC]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${BENCH_ROUNDS:-3}"
POST_SECS="${BENCH_POST_SECS:-8}"
BATCH_SECS="${BENCH_BATCH_SECS:-8}"
REPL_RECORDS="${BENCH_REPL_RECORDS:-100000}"
PROP_RECORDS="${BENCH_PROP_RECORDS:-300}"
PROP_INTERVAL_MS="${BENCH_PROP_INTERVAL_MS:-20}"
WORKERS="${BENCH_WORKERS:-2}"
OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
DATE="${BENCH_DATE:-$(date -u +%Y-%m-%d)}"
ACTOR="did:example:bench"
POUCH_VERSION="4.2.0"

log() { printf '[peers] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

prepare_run peers

# PouchDB Server, pinned, kept under target/ between runs. leveldown loads its prebuilt
# binary, so no install script has to run.
POUCH_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/peers/pouchdb-server-$POUCH_VERSION"
POUCH="$POUCH_DIR/node_modules/.bin/pouchdb-server"
if [[ ! -x "$POUCH" ]]; then
  log "installing pouchdb-server@$POUCH_VERSION from npm"
  mkdir -p "$POUCH_DIR"
  npm install --prefix "$POUCH_DIR" --no-audit --no-fund --loglevel=error \
    "pouchdb-server@$POUCH_VERSION" >&2
fi
START_TS=$(date +%s)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_pouch NAME: PouchDB Server on its own directory (LevelDB on disk, as shipped), request
# logging off; sets <NAME>_URL and <NAME>_PID.
start_pouch() {
  local name="$1" dir="$WORK/$1" port pid
  mkdir -p "$dir"
  port=$(free_port)
  printf '{"log":{"level":"error","file":"%s/log.txt"}}\n' "$dir" >"$dir/config.json"
  "$POUCH" --host 127.0.0.1 --port "$port" --dir "$dir" --config "$dir/config.json" \
    --no-stdout-logs >>"$WORK/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  printf -v "${name}_URL" '%s' "http://127.0.0.1:$port"
  printf -v "${name}_PID" '%s' "$pid"
}

# RESULTS["shape|side|metric"] holds one value per round, space-separated.
declare -A RESULTS
note() { RESULTS["$1|$2|$3"]+="$4 "; }
median() {
  tr ' ' '\n' <<<"${RESULTS["$1|$2|$3"]:-}" | awk 'NF' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# timed PID CMD...: runs CMD, keeps its stdout in TIMED_OUT and the CPU cores PID used meanwhile
# in TIMED_CORES (and the wall seconds in TIMED_SECS).
timed() {
  local pid="$1" t0 t1 n0 n1
  shift
  t0=$(proc_ticks "$pid"); n0=$(now_ns)
  TIMED_OUT=$("$@" | tr -d '\n')
  n1=$(now_ns); t1=$(proc_ticks "$pid")
  TIMED_CORES=$(cores "$t0" "$t1" "$n0" "$n1")
  TIMED_SECS=$(awk -v a="$n0" -v b="$n1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
}

# --- the servers ------------------------------------------------------------------------------
B_HOME="$WORK/B"
B_DID_EARLY=$("$SPL" --home "$B_HOME" init | tr -d '[:space:]')
start_steward A --port 0 --auto-approve-did "$B_DID_EARLY"
sleep 2
note idle steward rss_mib "$(mib "$(status_kib "$A_PID" VmRSS)")"
start_steward B --port 0
splb() { "$SPL" --home "$B_HOME" --endpoint "$B_URL" --token "$B_TOKEN" "$@"; }
PAIR_JSON=$(splb --json federation pair "$A_URL" | tr -d '\n')
[[ "$(jget "$PAIR_JSON" state)" == active ]] || { echo "pairing failed: $PAIR_JSON" >&2; exit 1; }
splb federation set-mode "$A_DID" --mode continuous >/dev/null
start_pouch P
sleep 2
note idle pouchdb rss_mib "$(mib "$(status_kib "$P_PID" VmRSS)")"
start_pouch Q
log "steward A $A_URL, B $B_URL; PouchDB P $P_URL, Q $Q_URL"

# --- one round of each shape, one side ---------------------------------------------------------
single() { # SIDE CLIENTS ROUND
  local shape="single_c$2"
  if [[ $1 == steward ]]; then
    timed "$A_PID" env SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" post --url "$A_URL" \
      --clients "$2" --duration-secs "$POST_SECS" --threads 64 --actor "$ACTOR"
  else
    timed "$P_PID" "${BENCH[@]}" couch-post --db "$P_URL/single_c$2_r$3" --clients "$2" \
      --duration-secs "$POST_SECS" --actor "$ACTOR"
  fi
  local rate
  rate=$(jget "$TIMED_OUT" records_per_sec)
  note "$shape" "$1" rate "$rate"
  note "$shape" "$1" p50 "$(jget "$TIMED_OUT" p50_ms)"
  note "$shape" "$1" p99 "$(jget "$TIMED_OUT" p99_ms)"
  note "$shape" "$1" cpu_us "$(us_per "$TIMED_CORES" "$rate")"
  log "round $3 $shape $1: $rate rec/s, p99 $(jget "$TIMED_OUT" p99_ms) ms, $(us_per "$TIMED_CORES" "$rate") us CPU/rec"
}

batch() { # SIDE ROUND
  if [[ $1 == steward ]]; then
    timed "$A_PID" env SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" batch --url "$A_URL" \
      --clients 4 --batch 1000 --duration-secs "$BATCH_SECS" --thread "th_batch_r$2" --actor "$ACTOR"
  else
    timed "$P_PID" "${BENCH[@]}" couch-batch --db "$P_URL/batch_r$2" --clients 4 --batch 1000 \
      --duration-secs "$BATCH_SECS" --actor "$ACTOR"
  fi
  local rate
  rate=$(jget "$TIMED_OUT" records_per_sec)
  note batch "$1" rate "$rate"
  note batch "$1" p50 "$(jget "$TIMED_OUT" p50_ms)"
  note batch "$1" p99 "$(jget "$TIMED_OUT" p99_ms)"
  note batch "$1" cpu_us "$(us_per "$TIMED_CORES" "$rate")"
  log "round $2 batch $1: $rate rec/s, $(us_per "$TIMED_CORES" "$rate") us CPU/rec"
}

replication() { # SIDE ROUND
  local src_ticks0 src_ticks1 n0 n1 rate pulled src_pid dst_pid
  if [[ $1 == steward ]]; then
    SPL_BENCH_TOKEN="$A_TOKEN" "${BENCH[@]}" seed --url "$A_URL" --thread "th_repl_r$2" \
      --records "$REPL_RECORDS" --clients 32 --actor "$ACTOR" >/dev/null
    src_pid=$A_PID; dst_pid=$B_PID
    src_ticks0=$(proc_ticks "$src_pid"); n0=$(now_ns)
    timed "$dst_pid" splb --json sync "th_repl_r$2" from "$A_DID"
    pulled=$(jget "$TIMED_OUT" pulled)
  else
    "${BENCH[@]}" couch-seed --db "$P_URL/repl_r$2" --records "$REPL_RECORDS" --actor "$ACTOR" >/dev/null
    src_pid=$P_PID; dst_pid=$Q_PID
    src_ticks0=$(proc_ticks "$src_pid"); n0=$(now_ns)
    timed "$dst_pid" curl -fsS -X POST -H 'content-type: application/json' "$Q_URL/_replicate" \
      -d "{\"source\":\"$P_URL/repl_r$2\",\"target\":\"repl_r$2\",\"create_target\":true}"
    pulled=$(curl -fsS "$Q_URL/repl_r$2" | sed -n 's/.*"doc_count":\([0-9]*\).*/\1/p')
  fi
  n1=$(now_ns); src_ticks1=$(proc_ticks "$src_pid")
  rate=$(awk -v n="$pulled" -v s="$TIMED_SECS" 'BEGIN { if (s + 0 == 0) print ""; else printf "%.0f", n / s }')
  note replication "$1" rate "$rate"
  note replication "$1" cpu_us "$(us_per "$TIMED_CORES" "$rate")"
  note replication "$1" src_cpu_us "$(us_per "$(cores "$src_ticks0" "$src_ticks1" "$n0" "$n1")" "$rate")"
  log "round $2 replication $1: $pulled records in $TIMED_SECS s = $rate rec/s, receiver $(us_per "$TIMED_CORES" "$rate") us CPU/rec"
  [[ "$pulled" == "$REPL_RECORDS" ]] || { echo "replication $1 moved $pulled of $REPL_RECORDS" >&2; exit 1; }
}

propagation() { # SIDE ROUND
  local out
  if [[ $1 == steward ]]; then
    splb --json sync "th_prop_r$2" from "$A_DID" >/dev/null
    sleep 1
    out=$(SPL_BENCH_SOURCE_TOKEN="$A_TOKEN" SPL_BENCH_SINK_TOKEN="$B_TOKEN" "${BENCH[@]}" propagation \
      --source-url "$A_URL" --sink-url "$B_URL" --thread "th_prop_r$2" --from-ack \
      --records "$PROP_RECORDS" --interval-ms "$PROP_INTERVAL_MS" --actor "$ACTOR")
  else
    curl -fsS -X PUT "$P_URL/prop_r$2" >/dev/null
    curl -fsS -X POST -H 'content-type: application/json' "$Q_URL/_replicate" \
      -d "{\"source\":\"$P_URL/prop_r$2\",\"target\":\"prop_r$2\",\"create_target\":true,\"continuous\":true}" >/dev/null
    sleep 1
    out=$("${BENCH[@]}" couch-propagation --source-db "$P_URL/prop_r$2" --sink-db "$Q_URL/prop_r$2" \
      --records "$PROP_RECORDS" --interval-ms "$PROP_INTERVAL_MS" --actor "$ACTOR")
  fi
  local p50 p99
  p50=$(awk -v u="$(jget "$out" p50_us)" 'BEGIN { printf "%.2f", u / 1000 }')
  p99=$(awk -v u="$(jget "$out" p99_us)" 'BEGIN { printf "%.2f", u / 1000 }')
  note propagation "$1" p50 "$p50"
  note propagation "$1" p99 "$p99"
  note propagation "$1" missing "$(jget "$out" missing)"
  log "round $2 propagation $1: p50 $p50 ms, p99 $p99 ms, missing $(jget "$out" missing)"
}

for r in $(seq 1 "$ROUNDS"); do
  sides=(steward pouchdb)
  (( r % 2 == 0 )) && sides=(pouchdb steward)
  for c in 1 16 32; do
    for side in "${sides[@]}"; do single "$side" "$c" "$r"; done
  done
  for side in "${sides[@]}"; do batch "$side" "$r"; done
  for side in "${sides[@]}"; do replication "$side" "$r"; done
  for side in "${sides[@]}"; do propagation "$side" "$r"; done
done

# --- the section ---------------------------------------------------------------------------------
m() { median "$@"; }
row() { # LABEL SHAPE: rate, p50/p99, CPU per record on both sides, and the ratio of the rates
  local s p
  s=$(m "$2" steward rate); p=$(m "$2" pouchdb rate)
  echo "| $1 | $(fmt0 "$s") rec/s, p50 $(m "$2" steward p50) / p99 $(m "$2" steward p99) ms, $(m "$2" steward cpu_us) µs CPU/rec | $(fmt0 "$p") rec/s, p50 $(m "$2" pouchdb p50) / p99 $(m "$2" pouchdb p99) ms, $(m "$2" pouchdb cpu_us) µs CPU/rec | $(ratio "$s" "$p")x |"
}
ELAPSED=$(( $(date +%s) - START_TS ))
CPU_MODEL="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
SECTION="$WORK/section.md"
{
  echo "<!-- peers:begin -->"
  echo "## Compared with ($DATE)"
  echo
  echo "| Shape | \`spl serve\` (SQLite, fsync per commit) | PouchDB Server $POUCH_VERSION (LevelDB) | rate ratio |"
  echo "|---|---|---|---|"
  row "Single writes, 1 client" single_c1
  row "Single writes, 16 clients" single_c16
  row "Single writes, 32 clients" single_c32
  row "1,000-record batches, 4 clients" batch
  s=$(m replication steward rate); p=$(m replication pouchdb rate)
  echo "| Replication of $(fmt0 "$REPL_RECORDS") records into a second server | $(fmt0 "$s") rec/s, receiver $(m replication steward cpu_us) µs CPU/rec (source $(m replication steward src_cpu_us)), every signature verified | $(fmt0 "$p") rec/s, receiver $(m replication pouchdb cpu_us) µs CPU/rec (source $(m replication pouchdb src_cpu_us)) | $(ratio "$s" "$p")x |"
  echo "| Continuous propagation, acknowledged on the first server -> stored on the second, $PROP_RECORDS records ${PROP_INTERVAL_MS} ms apart | p50 $(m propagation steward p50) ms, p99 $(m propagation steward p99) ms ($(m propagation steward missing) missing) | p50 $(m propagation pouchdb p50) ms, p99 $(m propagation pouchdb p99) ms ($(m propagation pouchdb missing) missing) | PouchDB p99 / steward p99 = $(ratio "$(m propagation pouchdb p99)" "$(m propagation steward p99)") |"
  echo "| Idle RSS, 2 s after ready | $(m idle steward rss_mib) MiB | $(m idle pouchdb rss_mib) MiB | |"
  echo
  echo "Medians of $ROUNDS interleaved rounds (the side that goes first alternates). Rate ratio = steward / PouchDB."
  echo "CPU per record is the server process's utime + stime over the measured command divided by"
  echo "the records it took; for replication, the receiving server (it verifies and stores), the"
  echo "source's in brackets. The steward fsyncs every commit and signs every record; PouchDB"
  echo "Server's LevelDB does not fsync its writes."
  echo
  echo "- Machine: $(nproc) CPUs ($CPU_MODEL), Linux $(uname -r); load average before the run: $LOAD_BEFORE (shared machine; the load generator shares the CPUs)."
  echo "- Commit: \`$COMMIT\`, release build; PouchDB Server $POUCH_VERSION from npm on Node.js $(node --version). Whole run: ${ELAPSED} s."
  echo "- Command: \`bench/peers.sh\` (knobs at the top of the script)."
  echo "<!-- peers:end -->"
} >"$SECTION"

# The comparison heads the file: a new one goes before the first dated section.
write_section peers "$SECTION" "$OUT" head
log "wrote $OUT"
cat "$SECTION"
