#!/usr/bin/env bash
# Compares this tree with another commit on the local benchmarks, in alternating rounds on the
# same machine (shared machines drift; alternating spreads the drift over both sides): the
# `POST /v1/records` rate of bench/run.sh and the catch-up rate of bench/federation.sh.
#
#   bench/compare.sh BASE_REF [ROUNDS]        # e.g. bench/compare.sh 9456588 3
#
# BASE_REF is built (release) in a worktree under target/compare/ (kept for later runs); this
# tree is built as bench/run.sh builds it. Both sides are driven by this tree's load generator,
# so only the stewards differ. Prints a Markdown table of every round, the medians, the ratio of
# the medians and the median of the rounds' own ratios (this / base).
#
# Environment knobs (defaults in brackets): BENCH_COMPARE_SKIP_BUILD [0]
#   BENCH_SEED_RECORDS [10000] (run.sh's paging thread; the POST rate does not depend on it)
#   BENCH_PROP_RECORDS [200] (federation.sh's propagation sample)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BASE_REF="${1:?usage: bench/compare.sh BASE_REF [ROUNDS]}"
ROUNDS="${2:-3}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BASE_TREE="$TARGET_DIR/compare/tree"
BASE_TARGET="$TARGET_DIR/compare/target"

log() { printf '[compare] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ "${BENCH_COMPARE_SKIP_BUILD:-0}" != 1 ]]; then
  log "building this tree"
  cargo build --release -p spl -p syncropel-bench
  log "building $BASE_REF in $BASE_TREE"
  if [[ ! -d "$BASE_TREE" ]]; then
    git worktree add --detach "$BASE_TREE" "$BASE_REF" >&2
  fi
  git -C "$BASE_TREE" checkout --quiet --detach "$BASE_REF"
  (cd "$BASE_TREE" && CARGO_TARGET_DIR="$BASE_TARGET" cargo build --release -p spl)
fi
GENERATOR="$TARGET_DIR/release/syncropel-bench"
[[ -x "$BASE_TARGET/release/spl" && -x "$GENERATOR" ]] || { echo "missing builds" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-compare.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# measure SIDE TARGET: one run of each script against the steward in TARGET; appends
# "SIDE POST_RPS CATCHUP_RPS" to $WORK/figures.
measure() {
  local side="$1" target="$2" post catch
  BENCH_SKIP_BUILD=1 CARGO_TARGET_DIR="$target" BENCH_GENERATOR="$GENERATOR" \
    BENCH_OUT="$WORK/run.md" BENCH_SEED_RECORDS="${BENCH_SEED_RECORDS:-10000}" \
    bench/run.sh 2>"$WORK/run.log" >/dev/null
  post=$(jget "$(sed -n 's/^\[bench\] post: //p' "$WORK/run.log" | tail -n1)" records_per_sec)
  BENCH_SKIP_BUILD=1 CARGO_TARGET_DIR="$target" BENCH_GENERATOR="$GENERATOR" \
    BENCH_OUT="$WORK/fed.md" BENCH_PROP_RECORDS="${BENCH_PROP_RECORDS:-200}" \
    bench/federation.sh 2>"$WORK/fed.log" >/dev/null
  catch=$(sed -n 's/^\[bench\] catch-up: .* = \([0-9]*\) rec\/s.*/\1/p' "$WORK/fed.log" | tail -n1)
  log "$side: POST $post rec/s, catch-up $catch rec/s"
  echo "$side $post $catch" >>"$WORK/figures"
}

for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then
    measure base "$BASE_TARGET"; measure this "$TARGET_DIR"
  else
    measure this "$TARGET_DIR"; measure base "$BASE_TARGET"
  fi
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column() { awk -v s="$1" -v c="$2" '$1 == s { print $c }' "$WORK/figures" | median; }
BASE_POST=$(column base 2); THIS_POST=$(column this 2)
BASE_CATCH=$(column base 3); THIS_CATCH=$(column this 3)

echo "| Round | Side | POST rec/s (32 clients) | Catch-up rec/s (100,000 records) |"
echo "|---|---|---|---|"
awk '{ printf "| %d | %s | %s | %s |\n", int((NR + 1) / 2), $1, $2, $3 }' "$WORK/figures"
echo "| median | base (\`$BASE_REF\`) | $(fmt0 "$BASE_POST") | $(fmt0 "$BASE_CATCH") |"
echo "| median | this | $(fmt0 "$THIS_POST") | $(fmt0 "$THIS_CATCH") |"
echo "| ratio of the medians | this / base | $(ratio "$THIS_POST" "$BASE_POST") | $(ratio "$THIS_CATCH" "$BASE_CATCH") |"
# Each round's two runs sat side by side in time: their ratio cancels the drift between rounds.
paired() {
  awk -v c="$1" '{ v[$1] = $c } NR % 2 == 0 { printf "%.4f\n", v["this"] / v["base"] }' "$WORK/figures" | median
}
echo "| median of the rounds' ratios | this / base | $(printf '%.3g' "$(paired 2)") | $(printf '%.3g' "$(paired 3)") |"
