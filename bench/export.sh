#!/usr/bin/env bash
# Benchmark `spl export` (federation-protocol.md §8.3) on a stopped home of N records, release
# build, and write a dated section into BENCHMARKS.md at the repository root: the bundle written
# with the identity sealed (Argon2id included) and without, each over several runs, and the
# same-run baseline of reading the records through the steward's API.
#
#   bench/export.sh
#
# Environment knobs (defaults in brackets):
#   BENCH_EXPORT_RECORDS [20000]  BENCH_RUNS [5]  BENCH_SEED_CLIENTS [32]  BENCH_WORKERS [2]
#   BENCH_SKIP_BUILD [0]  BENCH_OUT [<repo>/BENCHMARKS.md]  BENCH_DATE [today, UTC]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RECORDS="${BENCH_EXPORT_RECORDS:-20000}"
RUNS="${BENCH_RUNS:-5}"
SEED_CLIENTS="${BENCH_SEED_CLIENTS:-32}"
WORKERS="${BENCH_WORKERS:-2}"
OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
DATE="${BENCH_DATE:-$(date -u +%Y-%m-%d)}"

log() { printf '[bench] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release -p spl -p syncropel-bench"
  cargo build --release -p spl -p syncropel-bench
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SPL="$TARGET_DIR/release/spl"
BENCH=("$TARGET_DIR/release/syncropel-bench" --workers "$WORKERS")
WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-export-bench.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

start_steward H --port 0
log "seeding $RECORDS records"
SEED_JSON=$(SPL_BENCH_TOKEN="$H_TOKEN" "${BENCH[@]}" seed --url "$H_URL" --thread th_bench_export \
  --records "$RECORDS" --clients "$SEED_CLIENTS" --actor did:example:bench)
PAGE_JSON=$(SPL_BENCH_TOKEN="$H_TOKEN" "${BENCH[@]}" page --url "$H_URL" --thread th_bench_export --limit 1000)
PAGE_RPS=$(jget "$PAGE_JSON" records_per_sec)
"$SPL" --home "$WORK/H" stop >/dev/null
HOLDS=$(du -sk "$WORK/H/hub.db" | cut -f1)

export SPL_EXPORT_PASSPHRASE="a passphrase for the benchmark"
SEALED=$("${BENCH[@]}" exec --runs "$RUNS" --warmup 1 -- \
  "$SPL" --home "$WORK/H" export --out "$WORK/sealed.tar.zst")
BARE=$("${BENCH[@]}" exec --runs "$RUNS" --warmup 1 -- \
  "$SPL" --home "$WORK/H" export --no-identity --out "$WORK/bare.tar.zst")
log "sealed: $SEALED"
log "bare: $BARE"
BUNDLE_KIB=$(du -sk "$WORK/bare.tar.zst" | cut -f1)
ms() { awk -v s="$(jget "$1" "$2")" 'BEGIN { if (s == "") print "n/a"; else printf "%.0f", s }'; }
S_MED=$(ms "$SEALED" median_ms); S_MIN=$(ms "$SEALED" min_ms); S_MAX=$(ms "$SEALED" max_ms)
B_MED=$(ms "$BARE" median_ms); B_MIN=$(ms "$BARE" min_ms); B_MAX=$(ms "$BARE" max_ms)
RATE=$(awk -v n="$RECORDS" -v ms="$B_MED" 'BEGIN { if (ms + 0 == 0) print ""; else printf "%.0f", n / (ms / 1000) }')

CPU_MODEL="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
SECTION="$WORK/section.md"
{
  echo "<!-- export:begin -->"
  echo "## Export bundle (\`spl export\`, $DATE)"
  echo
  echo "- Machine: $(nproc) CPUs ($CPU_MODEL), Linux $(uname -r); load average before the run: $LOAD_BEFORE (shared machine)."
  echo "- Commit: \`$COMMIT\`; release build; a stopped home of $(fmt0 "$RECORDS") records ($(mib "$HOLDS") MiB of SQLite), each export a whole \`spl\` process (start, read, compress, sign, write, fsync, rename), $RUNS runs after one warm-up."
  echo
  echo "| Figure | Target | Measured | Verdict |"
  echo "|---|---|---|---|"
  echo "| Export of $(fmt0 "$RECORDS") records, identity sealed (Argon2id, 19 MiB, 2 passes) | < 300 ms | median $S_MED ms (min $S_MIN, max $S_MAX) | $(verdict "$S_MED" lt 300) |"
  echo "| The same without the identity | | median $B_MED ms (min $B_MIN, max $B_MAX): $(fmt0 "$RATE") rec/s; bundle $(mib "$BUNDLE_KIB") MiB | |"
  echo
  echo "Same-run baseline: the steward pages the same thread through \`GET /v1/threads/{id}/records\` at $(fmt0 "$PAGE_RPS") rec/s."
  echo
  echo "Command: \`bench/export.sh\` (knobs at the top of the script)."
  echo "<!-- export:end -->"
} >"$SECTION"
if [[ -f "$OUT" ]] && grep -q '<!-- export:begin -->' "$OUT"; then
  awk -v section="$SECTION" '
    /<!-- export:begin -->/ { while ((getline line < section) > 0) print line; skip = 1; next }
    /<!-- export:end -->/ { skip = 0; next }
    !skip { print }' "$OUT" >"$WORK/out.md"
  cp "$WORK/out.md" "$OUT"
else
  { echo; cat "$SECTION"; } >>"$OUT"
fi
log "wrote $OUT"
cat "$SECTION"
