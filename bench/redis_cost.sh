#!/usr/bin/env bash
# What a governed call costs Redis, and the gateway beside it: the governed-redis profile
# of bench/run.sh (a virtual key, a hard tenant budget, rpm/tpm limits, all in Redis at
# 127.0.0.1:6379) driven by oha at RATE calls a second, with
#   - Redis's CPU per call (user + system of redis-server, from /proc, over the timed run),
#   - the commands Redis ran per call, by name, and the microseconds its scripts took
#     (deltas of INFO commandstats: the EVALSHAs clients sent and the commands the
#     scripts ran inside Redis),
#   - the gateway's CPU per call, p50 and p99.
# Redis shares the machine's cores with the gateway, oha and the mock, so its CPU is
# latency the other processes wait for: issue 21, item 2.
#
# One binary, or an A/B of two in alternating rounds (each round a fresh store, key and
# key prefix; the prefix's keys deleted after). Nothing is recorded: paste what matters
# into bench/RESULTS.md.
#
# Usage: RATE=2000 CALLS=20000 ROUNDS=3 bash bench/redis_cost.sh KEEL_A [KEEL_B]
#        (defaults: the build of this tree, RATE 2000, CALLS 20000, ROUNDS 1)
set -euo pipefail
[ $# -le 2 ] || { echo "usage: bash bench/redis_cost.sh [KEEL_A [KEEL_B]] (one build, or two to compare)"; exit 2; }
BINS=()
for b in "$@"; do BINS+=("$(realpath "$b")"); done
cd "$(dirname "$0")/.."
ROOT=$PWD
source "$ROOT/bench/lib.sh"
ensure_oha
command -v redis-cli >/dev/null || { echo "redis-cli is needed (apt-get install redis-tools)"; exit 2; }
redis-cli ping > /dev/null 2>&1 || { echo "no Redis at 127.0.0.1:6379: start it first"; exit 2; }
# The server on 6379 itself (its CPU is read from /proc, so it must run on this machine).
RPID=$(redis-cli info server | tr -d '\r' | sed -n 's/^process_id://p')
[ -n "$RPID" ] && [ -r "/proc/$RPID/stat" ] && grep -q '^redis-server' "/proc/$RPID/comm" 2>/dev/null \
  || { echo "the server at 127.0.0.1:6379 is not a redis-server process on this machine (pid '$RPID'): its CPU is read from /proc, so run a local redis-server there"; exit 2; }
if [ ${#BINS[@]} -eq 0 ]; then build_keel; BINS=("$KEEL"); fi
RATE=${RATE:-2000}; CALLS=${CALLS:-20000}; ROUNDS=${ROUNDS:-1}
TOP=$(mktemp -d)
KPID=""; MOCK_PID=""; PREFIX=""
stop_run() {
  # A bare `wait` (both empty) would wait for every child of the script.
  if [ -n "$KPID$MOCK_PID" ]; then
    kill $KPID $MOCK_PID 2>/dev/null || true
    wait $KPID $MOCK_PID 2>/dev/null || true
  fi
  if [ -n "$PREFIX" ]; then
    redis-cli --scan --pattern "${PREFIX}*" | xargs -r -d '\n' redis-cli del > /dev/null || true
  fi
  KPID=""; MOCK_PID=""; PREFIX=""
}
trap 'stop_run; rm -rf "$TOP"' EXIT

# One timed run of binary $1; appends a JSON line to $TOP/runs.jsonl.
measure() {
  local keel=$1 label=$2
  WORK=$(mktemp -d -p "$TOP")
  PREFIX="keel-redis-cost-$$-$RANDOM:"
  MOCK_PORT=$(free_port); KEEL_PORT=$(free_port)
  plain_config "$KEEL_PORT" "$MOCK_PORT" "$WORK/bench.db" > "$WORK/keel.toml"
  governed_config redis "$PREFIX" >> "$WORK/keel.toml"
  local key
  key=$("$keel" keys create --config "$WORK/keel.toml" --tenant bench --reason redis-cost --json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  KEEL=$keel start_mock
  KEEL_LOG=warn "$keel" serve --config "$WORK/keel.toml" > "$WORK/keel.log" 2>&1 &
  KPID=$!
  wait_healthy 100 "http://127.0.0.1:$MOCK_PORT/health" "http://127.0.0.1:$KEEL_PORT/health"
  echo '{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}' > "$WORK/body.json"
  drive() {
    oha -n "$1" -c 64 -q "$2" --latency-correction --no-tui -m POST -H 'content-type: application/json' \
        -H "authorization: Bearer $key" -D "$WORK/body.json" --output-format json \
        "http://127.0.0.1:$KEEL_PORT/v1/chat/completions"
  }
  drive 2000 2000 > /dev/null
  sleep 0.3
  redis-cli info commandstats | tr -d '\r' > "$WORK/stats0"
  local r0 k0 r1 k1
  r0=$(cpu_seconds "$RPID"); k0=$(cpu_seconds "$KPID")
  drive "$CALLS" "$RATE" > "$WORK/oha.json"
  sleep 0.3  # the last settlements
  r1=$(cpu_seconds "$RPID"); k1=$(cpu_seconds "$KPID")
  redis-cli info commandstats | tr -d '\r' > "$WORK/stats1"
  stop_run
  python3 - "$label" "$CALLS" "$r0" "$r1" "$k0" "$k1" "$WORK" >> "$TOP/runs.jsonl" <<'PY'
import json, re, sys
label, calls, r0, r1, k0, k1, work = sys.argv[1:]
calls = int(calls)
def stats(path):
    out = {}
    for line in open(path):
        m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=(\d+)", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out
a, b = stats(f"{work}/stats0"), stats(f"{work}/stats1")
per_call = {}
for name, (c, u) in b.items():
    c0, u0 = a.get(name, (0, 0))
    if c - c0 > 0 and name not in ("info", "ping", "config|resetstat"):
        per_call[name] = ((c - c0) / calls, (u - u0) / calls)
o = json.load(open(f"{work}/oha.json"))
codes = o.get("statusCodeDistribution", {})
print(json.dumps({
    "label": label,
    "redis_us": 1e6 * (float(r1) - float(r0)) / calls,
    "keel_us": 1e6 * (float(k1) - float(k0)) / calls,
    "p50": o["latencyPercentiles"]["p50"] * 1000,
    "p99": o["latencyPercentiles"]["p99"] * 1000,
    "non200": sum(v for k, v in codes.items() if k != "200") + sum(o.get("errorDistribution", {}).values()),
    "commands": per_call,
}))
PY
  rm -rf "$WORK"
}

for round in $(seq "$ROUNDS"); do
  order=("${!BINS[@]}")
  # Alternate which binary goes first.
  if [ $((round % 2)) -eq 0 ] && [ ${#BINS[@]} -eq 2 ]; then order=(1 0); fi
  for i in "${order[@]}"; do
    label=$([ "$i" -eq 0 ] && echo A || echo B)
    echo "round $round: $label at $RATE calls/s ..." >&2
    measure "${BINS[$i]}" "$label"
  done
done

python3 - "$TOP/runs.jsonl" "$RATE" "$CALLS" "${BINS[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
rate, calls, bins = sys.argv[2], sys.argv[3], sys.argv[4:]
print(f"governed-redis at {rate} calls/s, {calls} calls a round; per call, medians of the rounds (each round's value in brackets)")
for label, path in zip("AB", bins):
    mine = [r for r in runs if r["label"] == label]
    if not mine:
        continue
    def col(k):
        v = [r[k] for r in mine]
        return f"{statistics.median(v):.1f} ({', '.join(f'{x:.1f}' for x in v)})"
    print(f"\n{label}: {path}")
    print(f"  Redis CPU µs: {col('redis_us')}")
    print(f"  gateway CPU µs: {col('keel_us')}")
    print(f"  p50 ms: {col('p50')}   p99 ms: {col('p99')}   non-200: {sum(r['non200'] for r in mine)}")
    names = sorted({n for r in mine for n in r["commands"]})
    cmds = ", ".join(f"{n} {statistics.median(r['commands'].get(n, (0, 0))[0] for r in mine):.2f}" for n in names)
    print(f"  Redis commands: {cmds}")
    ev = [r["commands"].get("evalsha", (0, 0))[1] for r in mine]
    print(f"  Redis µs in scripts (EVALSHA, what they run included): {statistics.median(ev):.1f}")
PY
