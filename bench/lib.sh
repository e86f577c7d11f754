# Shell helpers shared by the benchmark scripts (sourced, not run).

# jget JSON KEY: the scalar value of KEY in a flat one-line JSON object.
jget() {
  printf '%s' "$1" | sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" | head -n1
}
fmt0() {
  awk -v x="$1" 'BEGIN {
    if (x == "" || x == "null") { print "n/a"; exit }
    s = sprintf("%.0f", x); out = ""
    while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
    print s out }'
}
fmt1() { awk -v x="$1" 'BEGIN { if (x == "" || x == "null") print "n/a"; else printf "%.1f", x }'; }
fmt2() { awk -v x="$1" 'BEGIN { if (x == "" || x == "null") print "n/a"; else printf "%.2f", x }'; }
# verdict VALUE OP LIMIT: "pass" or "MISS" (OP is ge, lt or le).
verdict() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "" || v == "n/a" || v == "null") { print "n/a"; exit }
    if (op == "ge") ok = (v + 0 >= l + 0)
    else if (op == "le") ok = (v + 0 <= l + 0)
    else ok = (v + 0 < l + 0)
    print ok ? "pass" : "MISS" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "null" || b == "null" || b + 0 == 0) print "n/a"; else printf "%.3g", a / b }'; }
# status_kib PID FIELD: VmRSS / VmHWM of a process, in KiB.
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
# proc_ticks PID: user + system CPU clock ticks (100 per second) of a process.
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'; }
now_ns() { date +%s%N; }
# cores TICKS0 TICKS1 NS0 NS1: average CPUs busy over an interval.
cores() { awk -v a="$1" -v b="$2" -v s="$3" -v e="$4" 'BEGIN { if (a == "" || b == "") print ""; else printf "%.2f", (b - a) / 100 / ((e - s) / 1e9) }'; }
# gen_cores JSON: the generator's own average CPUs busy.
gen_cores() { awk -v c="$(jget "$1" gen_cpu_secs)" -v w="$(jget "$1" gen_wall_secs)" 'BEGIN { if (c == "" || w + 0 == 0) print ""; else printf "%.2f", c / w }'; }
# us_per CORES RATE: CPU microseconds per operation.
us_per() { awk -v c="$1" -v r="$2" 'BEGIN { if (c == "" || r + 0 == 0) print "n/a"; else printf "%.0f", c * 1e6 / r }'; }
mib() { awk -v k="$1" 'BEGIN { if (k == "") print ""; else printf "%.1f", k / 1024 }'; }

# stop_steward PID: SIGTERM, wait up to 15 s (then SIGKILL); sets STOP_NOTE, RC and STOP_MS.
stop_steward() {
  local pid="$1" t0
  t0=$(now_ns)
  kill -TERM "$pid"
  STOP_NOTE="exited"
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    STOP_NOTE="still running after 15 s, killed"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null && RC=0 || RC=$?
  STOP_MS=$(( ($(now_ns) - t0) / 1000000 ))
}

# The scripts that start stewards set SPL (the binary), WORK (a scratch directory), BENCH (the
# generator and its flags) and PIDS (what their cleanup stops) before calling these.

# start_steward NAME ARGS...: inits a home, makes an admin token and serves it with ARGS (give
# `--port 0` for any port); sets <NAME>_URL, <NAME>_PID, <NAME>_TOKEN and <NAME>_DID.
start_steward() {
  local name="$1" home="$WORK/$1" did token
  shift
  did=$("$SPL" --home "$home" init | tr -d '[:space:]')
  token=$("$SPL" --home "$home" service-account create --bootstrap --name bench --scopes admin \
    --with-token | tr -d '[:space:]')
  printf -v "${name}_TOKEN" '%s' "$token"
  printf -v "${name}_DID" '%s' "$did"
  serve "$name" "$@"
}
# serve NAME ARGS...: `spl serve` on NAME's home; sets <NAME>_URL and <NAME>_PID.
serve() {
  local name="$1" home="$WORK/$1" pid url
  shift
  rm -f "$home/steward.json"
  "$SPL" --home "$home" serve "$@" >>"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    [[ -s "$home/steward.json" ]] && grep -q '"url"' "$home/steward.json" && break
    sleep 0.1
  done
  url=$(jget "$(tr -d '\n' <"$home/steward.json")" url)
  pid=$(jget "$(tr -d '\n' <"$home/steward.json")" pid)
  "${BENCH[@]}" wait-ready --url "$url" --timeout-secs 30 >/dev/null
  printf -v "${name}_URL" '%s' "$url"
  printf -v "${name}_PID" '%s' "$pid"
}

# prepare_run NAME: builds `spl` and the generator (release; BENCH_SKIP_BUILD=1 skips it) and sets
# SPL, BENCH (the generator with WORKERS tokio threads; BENCH_GENERATOR overrides its path),
# WORK (a scratch directory) and PIDS, with a cleanup on exit that stops every PID (SIGTERM, then
# SIGKILL a second later) and removes WORK.
prepare_run() {
  if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p spl -p syncropel-bench
  fi
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  SPL="$target/release/spl"
  BENCH=("${BENCH_GENERATOR:-$target/release/syncropel-bench}" --workers "${WORKERS:-2}")
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/spl-$1.XXXXXX")"
  PIDS=()
  trap cleanup_run EXIT
}
cleanup_run() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}

# write_section NAME SECTION OUT [head]: puts the file SECTION, which runs from
# `<!-- NAME:begin -->` to `<!-- NAME:end -->`, in place of that section of OUT; a new one goes at
# the end of OUT, or with `head` before its first `## ` heading.
write_section() {
  local name="$1" section="$2" out="$3" where="${4:-}" tmp
  tmp="$(mktemp)"
  if [[ -f "$out" ]] && grep -q "<!-- $name:begin -->" "$out"; then
    awk -v section="$section" -v begin="<!-- $name:begin -->" -v end="<!-- $name:end -->" '
      index($0, begin) { while ((getline line < section) > 0) print line; skip = 1; next }
      index($0, end) { skip = 0; next }
      !skip { print }' "$out" >"$tmp"
  elif [[ "$where" == head ]]; then
    awk -v section="$section" '
      !done && /^## / { while ((getline line < section) > 0) print line; print ""; done = 1 }
      { print }' "$out" >"$tmp"
  else
    { [[ -f "$out" ]] && cat "$out"; echo; cat "$section"; } >"$tmp"
  fi
  cp "$tmp" "$out"
  rm -f "$tmp"
}
