#!/usr/bin/env bash
# Where the request path's heap allocations come from (issue 21, item 5: under 60 per
# plain non-streamed call is the target; bench/allocations.sh counts them, this names
# them). Keel built with `--features count-allocations` runs under heaptrack (the plain
# profile, tracing on, full capture, the mock upstream); WARMUP + CALLS calls at
# concurrency 4; then bench/allocation_sites.py keeps the allocations made on the
# request's own thread while its handler runs (what /debug/allocations counts) and
# groups them. Writes bench/profiles/allocations-plain.txt unless --no-record.
#
# Usage: bash bench/allocation_sites.sh [--no-record]    (CALLS=3000 WARMUP=500; needs heaptrack)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CALLS=${CALLS:-3000}
WARMUP=${WARMUP:-500}
RECORD=${1:-}
source "$ROOT/bench/lib.sh"
command -v heaptrack >/dev/null || { echo "needs heaptrack (apt-get install heaptrack)" >&2; exit 2; }
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
counting_keel
cleanup() { pkill -INT -f "$WORK/keel-count serve" 2>/dev/null || true; kill "${MOCK_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
start_mock
(cd "$WORK" && KEEL_LOG=warn heaptrack -o "$WORK/heap" "$KEEL" serve --config "$WORK/keel.toml" > "$WORK/keel.log" 2>&1) &
HEAPTRACK_PID=$!
wait_healthy 300 "http://127.0.0.1:$MOCK_PORT/health" "http://127.0.0.1:$KEEL_PORT/health"
keepalive_load "$KEEL_PORT" "$WARMUP"
BEFORE=$(curl -sf "http://127.0.0.1:$KEEL_PORT/debug/allocations")
keepalive_load "$KEEL_PORT" "$CALLS"
AFTER=$(curl -sf "http://127.0.0.1:$KEEL_PORT/debug/allocations")
pkill -INT -f "$WORK/keel-count serve"
wait "$HEAPTRACK_PID" || true
heaptrack_print -f "$WORK"/heap*.zst --flamegraph-cost-type allocations -F "$WORK/stacks.txt" > /dev/null
c++filt < "$WORK/stacks.txt" > "$WORK/stacks-demangled.txt"
COUNTED=$(python3 -c "import json,sys; b,a=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print(round((a['allocations']-b['allocations'])/(a['requests']-b['requests']),1))" "$BEFORE" "$AFTER")
OUT=$WORK/summary.txt
{
  echo "# $(date -u '+%Y-%m-%d %H:%M') UTC, commit $COMMIT: \`bash bench/allocation_sites.sh\` on $(nproc) cores, $(uname -sr)"
  echo "# Keel --features count-allocations under heaptrack, plain profile (tracing on, full capture), mock upstream; $WARMUP + $CALLS calls at concurrency 4."
  echo "# /debug/allocations over the $CALLS counted calls: $COUNTED per call (the figure bench/allocations.sh records). Below: heaptrack over all $((WARMUP + CALLS)) calls."
  echo
  python3 "$ROOT/bench/allocation_sites.py" "$WORK/stacks-demangled.txt" "$((WARMUP + CALLS))"
} > "$OUT"
cat "$OUT"
if [ "$RECORD" != --no-record ]; then
  mkdir -p "$ROOT/bench/profiles"
  cp "$OUT" "$ROOT/bench/profiles/allocations-plain.txt"
  echo "written to bench/profiles/allocations-plain.txt" >&2
fi
