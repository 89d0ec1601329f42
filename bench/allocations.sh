#!/usr/bin/env bash
# Heap allocations per request on the request path (issue 21, item 5: target under 60
# for a plain non-streamed call).
#
# Method: Keel is built with `--features count-allocations` (a counting global
# allocator; see crates/keel-gateway/src/alloc_count.rs for what is counted: the
# allocations made on the request's own thread while its handler is called and polled,
# for /v1/* requests), and serves the plain profile (tracing on, full capture) against
# the mock upstream. After WARMUP calls, `GET /debug/allocations` is read, CALLS calls
# are sent at concurrency 4 by a keep-alive client, and it is read again:
#
#   allocations per request = (allocations after - before) / (requests after - before)
#
# callgrind's all-thread count of `__rust_alloc` (bench/instructions.sh) is printed
# beside it when that script has recorded one. Appends the figures to bench/RESULTS.md
# unless --no-record.
#
# Usage: bash bench/allocations.sh [--no-record]    (CALLS=5000 WARMUP=500)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CALLS=${CALLS:-5000}
WARMUP=${WARMUP:-500}
RECORD=${1:-}
source "$ROOT/bench/lib.sh"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
counting_keel

cleanup() { kill "${KEEL_PID:-}" "${MOCK_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
start_mock
KEEL_LOG=warn "$KEEL" serve --config "$WORK/keel.toml" > "$WORK/keel.log" 2>&1 &
KEEL_PID=$!
wait_healthy 300 "http://127.0.0.1:$MOCK_PORT/health" "http://127.0.0.1:$KEEL_PORT/health"
curl -sf "http://127.0.0.1:$KEEL_PORT/debug/allocations" >/dev/null \
  || { echo "this keel has no /debug/allocations: was it built with --features count-allocations?" >&2; exit 1; }

echo "warming up ($WARMUP calls)..." >&2
keepalive_load "$KEEL_PORT" "$WARMUP"
BEFORE=$(curl -sf "http://127.0.0.1:$KEEL_PORT/debug/allocations")
echo "counting $CALLS calls at concurrency 4..." >&2
keepalive_load "$KEEL_PORT" "$CALLS"
AFTER=$(curl -sf "http://127.0.0.1:$KEEL_PORT/debug/allocations")

python3 - "$BEFORE" "$AFTER" "$CALLS" "$WARMUP" "$COMMIT" "$RECORD" "$ROOT/bench/RESULTS.md" <<'PY'
import datetime, json, platform, sys
before, after = json.loads(sys.argv[1]), json.loads(sys.argv[2])
calls, warmup, commit, record, results = int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
requests = after["requests"] - before["requests"]
if requests != calls:
    sys.exit(f"expected {calls} counted requests, got {requests}")
allocs = (after["allocations"] - before["allocations"]) / requests
kib = (after["bytes"] - before["bytes"]) / requests / 1024
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
text = f"""## {now} — commit {commit} — allocations per request

Machine: {platform.machine()}, Linux {platform.release()}. `bash bench/allocations.sh`: Keel (release, `--features count-allocations`: system allocator with a per-thread counter; tracing and rollups on, full capture, plain profile) against the mock upstream; {warmup} warm-up calls, then {calls} non-streamed `POST /v1/chat/completions` at concurrency 4 (keep-alive), counted by `GET /debug/allocations` before and after. Counted: the allocations on the request's own thread while the router's service is called and its future polled (parse, route, admit, the upstream call as the handler drives it, price, trace handed to the writer, response built); not counted: hyper's request-head parse and response write, the upstream connection's task, the trace writer thread.

| figure | value |
|---|---:|
| requests counted | {requests} |
| **allocations per request** (target < 60) | **{allocs:.1f}** |
| bytes allocated per request | {kib:.1f} KiB |
"""
print(text)
if record != "--no-record":
    with open(results, "a") as f:
        f.write("\n\n" + text)
PY
