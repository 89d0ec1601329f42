#!/usr/bin/env bash
# The request path with an online eval judging every call, against the plain profile, in
# ONE run: the mock upstream and two release Keels side by side — `plain` (one model,
# tracing on) and `online` (the same plus an [[online_evals]] table at sample_rate = 1.0
# with not-is-refusal and word-count, so no judge-model calls: sampling, the queue and
# the judging pool writing scores beside the request path). Each rate runs ROUNDS times,
# interleaving direct, plain and online, so a noisy minute lands on all three. Appends
# the medians to bench/RESULTS.md with the date, machine and commit. Not run in CI.
#
# Usage: bash bench/online_vs_plain.sh [SECONDS_PER_RUN] [RATES...]   (defaults: 10 s; 500 1000 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-10}
shift || true
RATES=${*:-"500 1000 2000"}
ROUNDS=${ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-64}
export PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null || { echo "installing oha (cargo install oha --locked; a few minutes)"; cargo install oha --locked; }
cargo build --release -p keel-cli
KEEL=${CARGO_TARGET_DIR:-$ROOT/target}/release/keel

WORK=$(mktemp -d)
source "$ROOT/bench/lib.sh"
MOCK_PORT=$(free_port)
declare -A PORT=([plain]=$(free_port) [online]=$(free_port))
for profile in plain online; do
  mkdir -p "$WORK/$profile"
  plain_config "${PORT[$profile]}" "$MOCK_PORT" "$WORK/$profile/bench.db" > "$WORK/$profile/keel.toml"
done
cat >> "$WORK/online/keel.toml" <<'TOML'

[[online_evals]]
name = "bench-quality"
model = "bench-model"
sample_rate = 1.0
assert = [{ type = "not-is-refusal" }, { type = "word-count", max = 200 }]
TOML

PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; }
trap cleanup EXIT
"$KEEL" mock-provider --listen "127.0.0.1:$MOCK_PORT" --output-tokens 16 > "$WORK/mock.log" 2>&1 &
PIDS+=($!)
for profile in plain online; do
  KEEL_LOG=warn "$KEEL" serve --config "$WORK/$profile/keel.toml" > "$WORK/$profile/keel.log" 2>&1 &
  PIDS+=($!)
done
for port in "$MOCK_PORT" "${PORT[plain]}" "${PORT[online]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "server on $port did not start"; cat "$WORK"/*.log "$WORK"/*/keel.log; exit 1; }
done

BODY='{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}'
echo "$BODY" > "$WORK/body.json"
: > "$WORK/runs.tsv"
for rate in $RATES; do
 n=$(( rate * SECS ))
 for round in $(seq "$ROUNDS"); do
  for target in direct plain online; do
    case $target in direct) port=$MOCK_PORT;; *) port=${PORT[$target]};; esac
    echo "rate $rate rps, round $round/$ROUNDS, $n requests -> $target"
    oha -n "$n" -c "$CONNS" -q "$rate" --latency-correction --no-tui -m POST \
        -H 'content-type: application/json' -D "$WORK/body.json" --output-format json \
        "http://127.0.0.1:$port/v1/chat/completions" > "$WORK/$target-$rate-$round.json"
    printf '%s\t%s\t%s\t%s\n' "$rate" "$target" "$round" "$n" >> "$WORK/runs.tsv"
  done
 done
done
# Stop both Keels cleanly (judges finish, trace queues drain), then read the stores.
kill -TERM "${PIDS[1]}" "${PIDS[2]}"; wait "${PIDS[1]}" "${PIDS[2]}" || true

python3 - "$WORK" "$ROOT/bench/RESULTS.md" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY'
import datetime, os, platform, sqlite3, statistics, sys
sys.path.insert(0, os.path.join(os.path.dirname(sys.argv[2])))
from analyze import load, cpu_model
work, results, commit = sys.argv[1:4]
runs = {}
for line in open(os.path.join(work, "runs.tsv")):
    rate, target, rnd, n = line.split()
    runs.setdefault((int(rate), target), []).append((int(rnd), int(n)))
rows, sent = [], 0
for rate in sorted({r for r, _ in runs}):
    s = {}
    for target in ("direct", "plain", "online"):
        res = [load(os.path.join(work, f"{target}-{rate}-{rnd}.json")) for rnd, _ in runs[(rate, target)]]
        if target == "online":
            sent += sum(n for _, n in runs[(rate, target)])
        s[target] = {k: statistics.median(r[k] for r in res) for k in ("rps", "p50", "p99")}
        s[target]["errors"] = sum(r["errors"] for r in res)
    rows.append((rate, s))
def count(profile, sql):
    db = sqlite3.connect(os.path.join(work, profile, "bench.db"))
    v = db.execute(sql).fetchone()[0]
    db.close()
    return v
traces_online = count("online", "select count(*) from traces")
judged = count("online", "select count(distinct trace_id) from scores")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
rounds = len(runs[(rows[0][0], "direct")])
out = [
    f"\n## {now} — commit {commit} — online eval (sample_rate 1.0) against plain, one run\n",
    f"Machine: {os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()}. "
    "`bash bench/online_vs_plain.sh`: the mock upstream and two release Keels (tracing on, full capture) "
    "side by side, one plain and one with an online eval judging every call (not-is-refusal, word-count: "
    "no judge-model calls); each rate interleaves direct, plain and online; medians of "
    f"{rounds} rounds. oha, global fixed rate, latency correction.\n",
    "| target rps | direct p50 ms | plain p50 ms | online p50 ms | direct p99 ms | plain p99 ms | online p99 ms | added p50 plain / online ms | added p99 plain / online ms | errors d/p/o |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for rate, s in rows:
    d, p, o = s["direct"], s["plain"], s["online"]
    out.append(
        f"| {rate} | {d['p50']:.2f} | {p['p50']:.2f} | {o['p50']:.2f} | {d['p99']:.2f} | {p['p99']:.2f} | {o['p99']:.2f} "
        f"| {p['p50']-d['p50']:+.2f} / {o['p50']-d['p50']:+.2f} | {p['p99']-d['p99']:+.2f} / {o['p99']-d['p99']:+.2f} "
        f"| {d['errors']}/{p['errors']}/{o['errors']} |")
out.append(f"\nOnline Keel: {sent} requests, {traces_online} traces stored, {judged} calls judged and scored "
           f"({sent - judged} not judged: dropped at the full queue or queued at shutdown, all counted).\n")
text = "\n".join(out) + "\n"
print(text)
with open(results, "a") as f:
    f.write(text)
PY
