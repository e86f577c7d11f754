#!/usr/bin/env bash
# What telemetry costs `spl serve` on the write path, measured in alternating rounds so that every
# variant sees the same machine noise:
#   off   this build, no exporter (request spans, store spans and metrics still recorded)
#   on    this build exporting traces and metrics over OTLP/HTTP to a local sink that discards them
#   base  (optional) an `spl` built from an earlier commit, given as BENCH_BASE_SPL
#
#   bench/telemetry.sh                       # build (release), measure, print a markdown table
#
# Knobs: BENCH_ROUNDS [3] BENCH_CLIENTS [32] BENCH_POST_SECS [8] BENCH_HEALTH_SECS [4]
#        BENCH_WORKERS [2] BENCH_BASE_SPL [] BENCH_SKIP_BUILD [0]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${BENCH_ROUNDS:-3}"
CLIENTS="${BENCH_CLIENTS:-32}"
POST_SECS="${BENCH_POST_SECS:-8}"
HEALTH_SECS="${BENCH_HEALTH_SECS:-4}"
WORKERS="${BENCH_WORKERS:-2}"
BASE_SPL="${BENCH_BASE_SPL:-}"
ACTOR="did:example:bench"

log() { printf '[bench] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release -p spl -p syncropel-bench
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SPL="$TARGET_DIR/release/spl"
BENCH=("$TARGET_DIR/release/syncropel-bench" --workers "$WORKERS")

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-telemetry.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# An OTLP/HTTP collector that accepts every export and keeps nothing (an empty protobuf answer).
SINK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$SINK_PORT" <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
PIDS+=($!)

# run VARIANT SPL [serve args...]: one round; prints "variant rate p99 health_rate cpu_us".
run() {
  local variant="$1" spl="$2"; shift 2
  local home="$WORK/$variant-$RANDOM"
  "$spl" --home "$home" init >/dev/null
  export SPL_BENCH_TOKEN
  SPL_BENCH_TOKEN=$("$spl" --home "$home" service-account create --bootstrap --name bench \
    --scopes admin --actors "$ACTOR" --with-token | tr -d '[:space:]')
  "$spl" --home "$home" serve --port 0 "$@" >"$home.log" 2>&1 &
  local server=$!
  PIDS+=("$server")
  for _ in $(seq 1 300); do
    [[ -s "$home/steward.json" ]] && grep -q '"url"' "$home/steward.json" && break
    sleep 0.1
  done
  local url
  url=$(jget "$(tr -d '\n' <"$home/steward.json")" url)
  "${BENCH[@]}" wait-ready --url "$url" --timeout-secs 30 >/dev/null
  local health k0 n0 post cores
  health=$("${BENCH[@]}" health --url "$url" --clients "$CLIENTS" --duration-secs "$HEALTH_SECS" --warmup-secs 1)
  k0=$(proc_ticks "$server"); n0=$(now_ns)
  post=$("${BENCH[@]}" post --url "$url" --actor "$ACTOR" --clients "$CLIENTS" \
    --duration-secs "$POST_SECS" --threads 64 --warmup-secs 2)
  cores=$(cores "$k0" "$(proc_ticks "$server")" "$n0" "$(now_ns)")
  stop_steward "$server"
  printf '%s %s %s %s %s\n' "$variant" "$(jget "$post" records_per_sec)" "$(jget "$post" p99_ms)" \
    "$(jget "$health" requests_per_sec)" "$(us_per "$cores" "$(jget "$post" records_per_sec)")"
}

RESULTS="$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  [[ -n "$BASE_SPL" ]] && run base "$BASE_SPL" | tee -a "$RESULTS" >&2
  run off "$SPL" | tee -a "$RESULTS" >&2
  run on "$SPL" --otlp-endpoint "http://127.0.0.1:$SINK_PORT" | tee -a "$RESULTS" >&2
done

echo "| Variant | POST /v1/records per s (rounds) | p99 ms | GET /health per s | steward CPU us/record |"
echo "|---|---|---|---|---|"
for variant in base off on; do
  grep -q "^$variant " "$RESULTS" || continue
  awk -v v="$variant" '$1 == v {
      rate = rate sep sprintf("%.0f", $2); p99 = p99 sep $3; health = health sep sprintf("%.0f", $4); cpu = cpu sep $5; sep = " / " }
    END { printf "| %s | %s | %s | %s | %s |\n", v, rate, p99, health, cpu }' "$RESULTS"
done
