#!/usr/bin/env bash
# A/B of two Keel binaries on the plain profile, in the same minutes: each optimisation's
# before and after (issue 21, item 5) where latency on this shared VM swings between runs
# more than the change moves it.
#
# Starts one mock upstream and both Keels (each with its own SQLite store, the plain
# profile of bench/run.sh), then for ROUNDS rounds drives each in turn with oha at RATE
# requests per second for SECS seconds (64 connections, latency correction), alternating
# which goes first, and prints p50/p99 and each binary's CPU per call (user + system, all
# threads, read before and 0.3 s after its run) per round and the medians. Build the "before"
# binary from an older commit into another path first, e.g.
#   git worktree add /tmp/old COMMIT && (cd /tmp/old && cargo build --release -p keel-cli) \
#     && cp target/release/keel /tmp/keel-old
# Usage: RATE=5000 ROUNDS=4 SECS=10 bash bench/ab.sh KEEL_A KEEL_B
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source "$ROOT/bench/lib.sh"
ensure_oha
A=${1:?usage: bash bench/ab.sh KEEL_A KEEL_B}; B=${2:?usage: bash bench/ab.sh KEEL_A KEEL_B}
RATE=${RATE:-5000}; ROUNDS=${ROUNDS:-4}; SECS=${SECS:-10}
WORK=$(mktemp -d)
MOCK_PORT=$(free_port); PORT_A=$(free_port); PORT_B=$(free_port)
plain_config "$PORT_A" "$MOCK_PORT" "$WORK/a.db" > "$WORK/a.toml"
plain_config "$PORT_B" "$MOCK_PORT" "$WORK/b.db" > "$WORK/b.toml"
KEEL=$B start_mock
KEEL_LOG=warn "$A" serve --config "$WORK/a.toml" > "$WORK/a.log" 2>&1 & PID_A=$!
KEEL_LOG=warn "$B" serve --config "$WORK/b.toml" > "$WORK/b.log" 2>&1 & PID_B=$!
trap 'kill "$MOCK_PID" "$PID_A" "$PID_B" 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_healthy 100 "http://127.0.0.1:$MOCK_PORT/health" "http://127.0.0.1:$PORT_A/health" "http://127.0.0.1:$PORT_B/health"
echo '{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}' > "$WORK/body.json"
echo "A = $A, B = $B; $RATE rps, $SECS s per run, $ROUNDS rounds ($(date -u '+%Y-%m-%d %H:%M UTC'))"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
  for t in $order; do
    if [ "$t" = A ]; then port=$PORT_A; pid=$PID_A; else port=$PORT_B; pid=$PID_B; fi
    c0=$(cpu_seconds "$pid")
    oha -n $((RATE * SECS)) -c 64 -q "$RATE" --latency-correction --no-tui -m POST \
      -H 'content-type: application/json' -D "$WORK/body.json" --output-format json \
      "http://127.0.0.1:$port/v1/chat/completions" > "$WORK/$t-$r.json"
    # The CPU the binary used for its run (0.3 s after it: the writer's last batch).
    sleep 0.3
    awk -v a="$c0" -v b="$(cpu_seconds "$pid")" 'BEGIN { printf "%.2f\n", b - a }' > "$WORK/$t-$r.cpu"
  done
done
python3 - "$WORK" "$ROUNDS" "$((RATE * SECS))" <<'PY'
import json, statistics, sys
work, rounds, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = {"A": [], "B": []}
for r in range(1, rounds + 1):
    line = [f"round {r}:"]
    for t in "AB":
        d = json.load(open(f"{work}/{t}-{r}.json"))
        lp, codes = d["latencyPercentiles"], d.get("statusCodeDistribution", {})
        p50, p99 = lp["p50"] * 1000, lp["p99"] * 1000
        bad = sum(v for k, v in codes.items() if k != "200")
        cpu = float(open(f"{work}/{t}-{r}.cpu").read()) * 1e6 / calls
        rows[t].append((p50, p99, bad, cpu))
        line.append(f"{t} p50 {p50:.2f} p99 {p99:.2f} ms, {cpu:.1f} µs CPU a call (non-200: {bad})")
    print("  ".join(line))
for t in "AB":
    p50 = statistics.median(x[0] for x in rows[t]); p99 = statistics.median(x[1] for x in rows[t])
    cpu = statistics.median(x[3] for x in rows[t])
    print(f"median {t}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, {cpu:.1f} µs CPU a call, non-200 {sum(x[2] for x in rows[t])}")
b_faster = sum(1 for a, b in zip(rows["A"], rows["B"]) if b[1] < a[1])
print(f"B's p99 below A's in {b_faster} of {rounds} rounds")
PY
