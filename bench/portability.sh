#!/usr/bin/env bash
# Benchmark moving a home (federation-protocol.md §8.3-8.4), release build, and write a dated
# section into BENCHMARKS.md at the repository root: `spl export` of a stopped home of N records
# with the identity sealed (Argon2id included) and without, `spl import` of that bundle into a
# fresh home (`spl init` included), each over several runs, with the same-run baseline of reading
# the records through the steward's API; then one export and one import of a large home (a
# million records by default) with their records/s and peak RSS.
#
#   bench/portability.sh
#
# Environment knobs (defaults in brackets):
#   BENCH_EXPORT_RECORDS [20000]  BENCH_LARGE_RECORDS [1000000, 0 skips]  BENCH_RUNS [5]
#   BENCH_SEED_CLIENTS [32]  BENCH_WORKERS [2]  BENCH_SKIP_BUILD [0]
#   BENCH_OUT [<repo>/BENCHMARKS.md]  BENCH_DATE [today, UTC]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RECORDS="${BENCH_EXPORT_RECORDS:-20000}"
LARGE="${BENCH_LARGE_RECORDS:-1000000}"
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
WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-portability-bench.XXXXXX")"
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
export SPL_IMPORT_PASSPHRASE="$SPL_EXPORT_PASSPHRASE"
IMPORTED=$("${BENCH[@]}" exec --runs "$RUNS" --warmup 1 -- sh -c \
  "rm -rf '$WORK/I' && '$SPL' --home '$WORK/I' init >/dev/null && '$SPL' --home '$WORK/I' import '$WORK/sealed.tar.zst' >/dev/null")
log "sealed: $SEALED"
log "bare: $BARE"
log "import: $IMPORTED"

# large KIND: one run of `spl export` (KIND=export) or `spl import` of the large home, as
# "<seconds> <peak RSS KiB>".
large() {
  case "$1" in
    export) /usr/bin/time -f '%e %M' -o "$WORK/time" "$SPL" --home "$WORK/L" export --no-identity --out "$WORK/large.tar.zst" >/dev/null ;;
    import) rm -rf "$WORK/LI"; "$SPL" --home "$WORK/LI" init >/dev/null
            /usr/bin/time -f '%e %M' -o "$WORK/time" "$SPL" --home "$WORK/LI" import "$WORK/large.tar.zst" >/dev/null ;;
  esac
  tail -n1 "$WORK/time"
}
LARGE_ROW=""
if [[ "$LARGE" -gt 0 ]]; then
  start_steward L --port 0
  log "seeding $LARGE records"
  SPL_BENCH_TOKEN="$L_TOKEN" "${BENCH[@]}" seed --url "$L_URL" --thread th_bench_large \
    --records "$LARGE" --clients "$SEED_CLIENTS" --actor did:example:bench >/dev/null
  "$SPL" --home "$WORK/L" stop >/dev/null
  read -r LE_S LE_KIB <<<"$(large export)"
  read -r LI_S LI_KIB <<<"$(large import)"
  log "large export: ${LE_S}s ${LE_KIB} KiB; import: ${LI_S}s ${LI_KIB} KiB"
  per_s() { awk -v n="$LARGE" -v s="$1" 'BEGIN { if (s + 0 == 0) print ""; else printf "%.0f", n / s }'; }
  LARGE_ROW="| $(fmt0 "$LARGE") records exported, then imported into a fresh home: peak RSS of each | < 100 MiB | export $(mib "$LE_KIB") MiB, $(fmt0 "$(per_s "$LE_S")") rec/s ($LE_S s); import $(mib "$LI_KIB") MiB, $(fmt0 "$(per_s "$LI_S")") rec/s ($LI_S s) | $(verdict "$(awk -v a="$LE_KIB" -v b="$LI_KIB" 'BEGIN { print (a > b ? a : b) / 1024 }')" lt 100) |"
fi
BUNDLE_KIB=$(du -sk "$WORK/bare.tar.zst" | cut -f1)
ms() { awk -v s="$(jget "$1" "$2")" 'BEGIN { if (s == "") print "n/a"; else printf "%.0f", s }'; }
S_MED=$(ms "$SEALED" median_ms); S_MIN=$(ms "$SEALED" min_ms); S_MAX=$(ms "$SEALED" max_ms)
B_MED=$(ms "$BARE" median_ms); B_MIN=$(ms "$BARE" min_ms); B_MAX=$(ms "$BARE" max_ms)
I_MED=$(ms "$IMPORTED" median_ms); I_MIN=$(ms "$IMPORTED" min_ms); I_MAX=$(ms "$IMPORTED" max_ms)
RATE=$(awk -v n="$RECORDS" -v ms="$B_MED" 'BEGIN { if (ms + 0 == 0) print ""; else printf "%.0f", n / (ms / 1000) }')

CPU_MODEL="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
SECTION="$WORK/section.md"
{
  echo "<!-- export:begin -->"
  echo "## Moving a home (\`spl export\`, \`spl import\`, $DATE)"
  echo
  echo "- Machine: $(nproc) CPUs ($CPU_MODEL), Linux $(uname -r); load average before the run: $LOAD_BEFORE (shared machine)."
  echo "- Commit: \`$COMMIT\`; release build; a stopped home of $(fmt0 "$RECORDS") records ($(mib "$HOLDS") MiB of SQLite), each export a whole \`spl\` process (start, read, compress, sign, write, fsync, rename), each import \`spl init\` then \`spl import\` into a fresh home (check the whole bundle, open the identity, check and store every record); $RUNS runs after one warm-up."
  echo
  echo "| Figure | Target | Measured | Verdict |"
  echo "|---|---|---|---|"
  echo "| Export of $(fmt0 "$RECORDS") records, identity sealed (Argon2id, 19 MiB, 2 passes) | < 300 ms | median $S_MED ms (min $S_MIN, max $S_MAX) | $(verdict "$S_MED" lt 300) |"
  echo "| The same without the identity | | median $B_MED ms (min $B_MIN, max $B_MAX): $(fmt0 "$RATE") rec/s; bundle $(mib "$BUNDLE_KIB") MiB | |"
  echo "| Import of the sealed bundle into a fresh home | < 1 s | median $I_MED ms (min $I_MIN, max $I_MAX) | $(verdict "$I_MED" lt 1000) |"
  [[ -n "$LARGE_ROW" ]] && echo "$LARGE_ROW"
  echo
  echo "Same-run baseline: the steward pages the same thread through \`GET /v1/threads/{id}/records\` at $(fmt0 "$PAGE_RPS") rec/s."
  echo
  echo "Command: \`bench/portability.sh\` (knobs at the top of the script)."
  echo "<!-- export:end -->"
} >"$SECTION"
write_section export "$SECTION" "$OUT"
log "wrote $OUT"
cat "$SECTION"
