#!/usr/bin/env bash
# Closed-loop throughput (issue 21, item 1): as many calls as 64 connections can make in
# SECONDS, directly at the mock, through nginx `proxy_pass` (the thinnest real proxy
# hop; see nginx_config in bench/lib.sh) and through Keel (plain profile: tracing on,
# SQLite, full capture), in ROUNDS interleaved rounds; prints the median requests per
# second of each and Keel's share of nginx's, and appends them to bench/RESULTS.md.
# Everything shares the machine, so the load tool takes its part of the cores too.
#
# Usage: bash bench/closed_loop.sh [SECONDS] (default 10; ROUNDS=3; needs nginx:
#        apt-get install nginx-light)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-10}
ROUNDS=${ROUNDS:-3}
command -v nginx >/dev/null || { echo "nginx is needed (apt-get install nginx-light)"; exit 2; }
source "$ROOT/bench/lib.sh"
ensure_oha
build_keel
WORK=$(mktemp -d)
MOCK_PORT=$(free_port)
KEEL_PORT=$(free_port)
NGINX_PORT=$(free_port)
plain_config "$KEEL_PORT" "$MOCK_PORT" "$WORK/bench.db" > "$WORK/keel.toml"
nginx_config "$NGINX_PORT" "$MOCK_PORT" "$WORK" > "$WORK/nginx.conf"
cleanup() { kill "${KEEL_PID:-}" "${MOCK_PID:-}" "${NGINX_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$KEEL" mock-provider --listen "127.0.0.1:$MOCK_PORT" --output-tokens 16 > "$WORK/mock.log" 2>&1 &
MOCK_PID=$!
nginx -c "$WORK/nginx.conf" -e "$WORK/nginx.log" &
NGINX_PID=$!
KEEL_LOG=warn "$KEEL" serve --config "$WORK/keel.toml" > "$WORK/keel.log" 2>&1 &
KEEL_PID=$!
wait_healthy 100 "http://127.0.0.1:$MOCK_PORT/health" "http://127.0.0.1:$NGINX_PORT/health" \
  "http://127.0.0.1:$KEEL_PORT/health"
echo '{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}' > "$WORK/body.json"
for round in $(seq "$ROUNDS"); do
  for target in direct nginx keel; do
    case "$target" in direct) port=$MOCK_PORT;; nginx) port=$NGINX_PORT;; *) port=$KEEL_PORT;; esac
    echo "round $round/$ROUNDS: $target, 64 connections, ${SECS} s" >&2
    oha -z "${SECS}s" -c 64 -w --no-tui -m POST -H 'content-type: application/json' \
        -D "$WORK/body.json" --output-format json "http://127.0.0.1:$port/v1/chat/completions" \
        > "$WORK/$target-$round.json"
  done
done
python3 - "$WORK" "$ROUNDS" "$ROOT/bench/RESULTS.md" <<'PY'
import datetime, json, os, platform, statistics, subprocess, sys
work, rounds, results = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def run(target, r):
    d = json.load(open(os.path.join(work, f"{target}-{r}.json")))
    codes = d.get("statusCodeDistribution") or {}
    bad = sum(int(v) for k, v in codes.items() if k != "200") + sum((d.get("errorDistribution") or {}).values())
    return d["summary"]["requestsPerSec"], bad
figures = {t: [run(t, r) for r in range(1, rounds + 1)] for t in ("direct", "nginx", "keel")}
med = {t: statistics.median(v[0] for v in figures[t]) for t in figures}
bad = {t: sum(v[1] for v in figures[t]) for t in figures}
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
text = "\n".join([
    f"\n## {now} — commit {commit} — closed-loop throughput (direct, nginx, Keel)\n",
    f"Machine: {os.cpu_count()} cores, Linux {platform.release()}. `bash bench/closed_loop.sh`: oha with 64 "
    f"connections as fast as they go (`-z`, waiting for in-flight calls at the end), {rounds} interleaved "
    "rounds, medians; Keel in the plain profile (tracing on, SQLite, full capture); nginx `proxy_pass` with "
    "keep-alive to the same mock; load tool, mock, nginx and Keel share the machine.\n",
    "| target | requests/s (median) | per round | non-200 or errors |",
    "|---|---:|---|---:|",
] + [f"| {t} | {med[t]:,.0f} | {', '.join(f'{v[0]:,.0f}' for v in figures[t])} | {bad[t]} |" for t in ("direct", "nginx", "keel")] + [
    f"\nKeel's throughput is {100 * med['keel'] / med['nginx']:.0f} % of nginx's (the goal: at least 75 %).\n",
])
print(text)
with open(results, "a") as f:
    f.write(text + "\n")
PY
