#!/usr/bin/env bash
# CPU per streamed event: one or more Keel binaries and the nginx hop, in the same minutes.
#
# Streaming latency on this shared 2-core VM swings between identical runs by more than
# most changes move it; the CPU a proxy spends per event does not, and it is what decides
# how many streams the machine carries (issue 21, item 3: the nginx hop itself adds
# milliseconds of p99 at 1,000 streams/s here). One mock streams 68 events per call
# (64 content events 1 ms apart, as `BENCH_API=stream bash bench/run.sh`); each target
# is driven in turn with stream_load at RATE streams/s for SECS seconds, ROUNDS rounds,
# the order rotating; the CPU (user + system) each proxy process used is read before and
# 0.3 s after its run. Prints per round and the medians; records nothing.
#
# Build a "before" binary into another path first (see bench/ab.sh), then:
# Usage: RATE=500 SECS=5 ROUNDS=3 bash bench/stream_cpu.sh KEEL_A [KEEL_B...]
#        (nginx is left out when it is not installed, or with BENCH_NGINX=0)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source "$ROOT/bench/lib.sh"
[ $# -ge 1 ] || { echo "usage: bash bench/stream_cpu.sh KEEL_A [KEEL_B...]"; exit 2; }
RATE=${RATE:-500}; SECS=${SECS:-5}; ROUNDS=${ROUNDS:-3}
cargo build --release --quiet -p keel-cli --example stream_load
LOADER=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/stream_load
WORK=$(mktemp -d)
MOCK_PORT=$(free_port)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$1" mock-provider --listen "127.0.0.1:$MOCK_PORT" --output-tokens 256 --chunk-delay-ms 1 > "$WORK/mock.log" 2>&1 &
PIDS+=($!)
NAMES=(); PORTS=(); TPIDS=()
i=0
for bin in "$@"; do
  i=$((i + 1)); port=$(free_port)
  plain_config "$port" "$MOCK_PORT" "$WORK/k$i.db" > "$WORK/k$i.toml"
  KEEL_LOG=warn "$bin" serve --config "$WORK/k$i.toml" > "$WORK/k$i.log" 2>&1 &
  PIDS+=($!); TPIDS+=($!); NAMES+=("keel$i"); PORTS+=("$port")
  wait_healthy 100 "http://127.0.0.1:$port/health"
done
if [ "${BENCH_NGINX:-1}" = 1 ] && command -v nginx >/dev/null; then
  port=$(free_port)
  nginx_config "$port" "$MOCK_PORT" "$WORK" > "$WORK/nginx.conf"
  nginx -c "$WORK/nginx.conf" -e "$WORK/nginx.log" &
  PIDS+=($!); TPIDS+=($!); NAMES+=(nginx); PORTS+=("$port")
  wait_healthy 100 "http://127.0.0.1:$port/health"
fi
wait_healthy 100 "http://127.0.0.1:$MOCK_PORT/health"
echo '{"model":"bench-model","messages":[{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":256,"stream":true,"stream_options":{"include_usage":true}}' > "$WORK/body.json"
i=0
for bin in "$@"; do i=$((i + 1)); echo "keel$i = $bin"; done
echo "$RATE streams/s, $SECS s per run, $ROUNDS rounds ($(date -u '+%Y-%m-%d %H:%M UTC'))"
n=${#NAMES[@]}
# Warm-up, not counted: the first streams through a fresh process pay for its pools,
# connections and allocator arenas.
for k in $(seq 0 $((n - 1))); do
  "$LOADER" --url "http://127.0.0.1:${PORTS[$k]}/v1/chat/completions" --body "$WORK/body.json" \
    --rate "$RATE" --seconds 2 > /dev/null
done
: > "$WORK/cpu.tsv"
for r in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    t=$(( (k + r - 1) % n ))
    c0=$(cpu_seconds "${TPIDS[$t]}")
    "$LOADER" --url "http://127.0.0.1:${PORTS[$t]}/v1/chat/completions" --body "$WORK/body.json" \
      --rate "$RATE" --seconds "$SECS" > "$WORK/out.json"
    sleep 0.3
    c1=$(cpu_seconds "${TPIDS[$t]}")
    python3 - "${NAMES[$t]}" "$r" "$c0" "$c1" "$WORK/out.json" >> "$WORK/cpu.tsv" <<'PY'
import json, sys
name, rnd, c0, c1, path = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
d = json.load(open(path))
events = d["sent"] * d["events_per_stream"]
# No stream answered (events_per_stream 0): no figure, rather than a crash that loses
# the rounds already run.
us = f"{(c1 - c0) * 1e6 / events:.2f}" if events else "n/a"
print(f"{name}\t{rnd}\t{us}\t{d['ok']}\t{d['sent']}\t{d['ttfb_ms']['p99']:.2f}\t{d['gap_ms']['p99']:.3f}")
PY
    tail -1 "$WORK/cpu.tsv" | awk -F'\t' '{ printf "round %s  %-6s %6s µs an event  (%s/%s streams, TTFB p99 %s ms, gap p99 %s ms)\n", $2, $1, $3, $4, $5, $6, $7 }'
  done
done
python3 - "$WORK/cpu.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
names = list(dict.fromkeys(r[0] for r in rows))
def median(n):
    vals = [float(r[2]) for r in rows if r[0] == n and r[2] != "n/a"]
    return f"{statistics.median(vals):.2f} µs an event" if vals else "n/a (no stream answered)"
print("\nmedians: " + "; ".join(f"{n} {median(n)}" for n in names))
PY
