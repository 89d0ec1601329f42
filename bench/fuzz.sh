#!/usr/bin/env bash
# Fuzz every target in fuzz/ (the bytes Keel reads from outside: chat and messages
# request bodies, OpenAI and Anthropic upstream event streams, OTLP JSON and protobuf
# ingest, config and prompt files) for SECONDS each, at the lowest CPU priority, and
# append the executions and time per target to bench/RESULTS.md with the date, machine
# and commit. Not run in CI.
#
# Engine: cargo-fuzz (libFuzzer) on the stable toolchain: `-s none` (no sanitizer, which
# would need nightly flags) and RUSTC_BOOTSTRAP=1 (libfuzzer-sys's build uses what it
# needs). Each target's corpus grows in fuzz/corpus/<target> (not committed), starting
# from the committed seeds in fuzz/seeds/<target>. A crash stops that target, leaves its
# input in fuzz/artifacts/<target>/ and makes the script exit 1 after the other targets.
#
# Usage: bash bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60, all targets)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (a few minutes)..." >&2
  nice -n 19 cargo install cargo-fuzz --locked
fi

cd fuzz
# Resolve the fuzz crate's dependencies to the versions the workspace is tested with.
[ -f Cargo.lock ] || cp ../Cargo.lock Cargo.lock

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo fuzz list)
fi

echo "building ${#TARGETS[@]} fuzz targets (release, debug assertions, no sanitizer)..." >&2
nice -n 19 cargo fuzz build -s none

mkdir -p "$ROOT/target/fuzz-logs"
ROWS=()
FAILED=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  log="$ROOT/target/fuzz-logs/$t.log"
  echo "== $t: ${SECS}s" >&2
  start=$(date +%s)
  rc=0
  nice -n 19 cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECS" -print_final_stats=1 -timeout=10 >"$log" 2>&1 || rc=$?
  end=$(date +%s)
  stat() { grep -a -m1 "^stat::$1:" "$log" | awk '{print $2}'; }
  # libFuzzer's own fuzzing time ("Done N runs in S second(s)"); wall time if absent.
  secs=$(grep -a -Eo 'runs in [0-9]+ second' "$log" | tail -1 | awk '{print $3}')
  secs=${secs:-$((end - start))}
  execs=$(stat number_of_executed_units)
  rate=$(stat average_exec_per_sec)
  rss=$(stat peak_rss_mb)
  cov=$(grep -a -Eo 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  corpus=$(find "corpus/$t" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    outcome="no crash"
  else
    FAILED=1
    artifact=$(grep -a -Eo 'artifacts/[^ ]+' "$log" | tail -1 || true)
    outcome="**crash** (exit $rc) ${artifact:-see $log}"
    tail -40 "$log" >&2
  fi
  printf '%-18s %4ss  %12s execs  %8s exec/s  cov %6s  corpus %5s  %s\n' \
    "$t" "$secs" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$corpus" "$outcome"
  ROWS+=("| \`$t\` | $secs | ${execs:-?} | ${rate:-?} | ${cov:-?} | $corpus | ${rss:-?} | $outcome |")
done

{
  printf '\n## %s — commit %s — fuzzing\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf 'Machine: %s cores, %s, %s. `bash bench/fuzz.sh %s`: cargo-fuzz %s (libFuzzer, `-s none`, release with debug assertions), one process per target at `nice -n 19`, %s s each, corpus seeded from `fuzz/seeds/` and kept between runs in `fuzz/corpus/` (corpus files: its size after the run). Executions are libFuzzer'"'"'s `stat::number_of_executed_units`, seconds its own fuzzing time; cov is its edge coverage at the end.\n\n' \
    "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(uname -sr)" "$SECS" \
    "$(cargo fuzz --version | awk '{print $2}')" "$SECS"
  echo '| target | seconds | executions | exec/s | cov | corpus files | peak RSS MB | outcome |'
  echo '|---|---:|---:|---:|---:|---:|---:|---|'
  printf '%s\n' "${ROWS[@]}"
} >>"$ROOT/bench/RESULTS.md"
echo "appended to bench/RESULTS.md" >&2
exit "$FAILED"
