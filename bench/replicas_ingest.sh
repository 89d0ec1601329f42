#!/usr/bin/env bash
# Sustained trace ingest from two replicas on one PostgreSQL database (issue 19, item 4).
#
# Starts the mock upstream and two release builds of `keel serve` with the plain
# profile's config (tracing on, full capture), both on one PostgreSQL database of its own
# (created for the run on the server at 127.0.0.1:5432, user postgres, dropped after;
# BENCH_PG overrides the server URL without a database). oha sends RATE/2 calls per
# second to each replica for SECS seconds, both at once. Every 0.5 s the script reads
# each replica's /metrics (the writer queue's length and the traces dropped) and the
# database's trace count.
#
# Reported: calls answered (200 / other), traces written per second while the load ran
# and in all (until the last trace of the run was in the database), the longest either
# writer queue grew (and its capacity), traces dropped, and whether every call is in the
# database. Appended to bench/RESULTS.md with the date, commit and machine.
#
# The client (oha ×2), the mock, both replicas and PostgreSQL share this machine's cores.
#
# Usage: bash bench/replicas_ingest.sh [RATE] [SECS]      (default 5000 rps total, 30 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RATE=${1:-5000}
SECS=${2:-30}
CONNS=${CONNS:-32}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null || { echo "installing oha (cargo install oha --locked; a few minutes)"; cargo install oha --locked; }
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cargo build --release -p keel-cli
KEEL=$TARGET/release/keel

WORK=$(mktemp -d)
source "$ROOT/bench/lib.sh"
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
PGDB="keel_bench_ingest_$$"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  psql "$PG/test" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql "$PG/test" -qc "CREATE DATABASE $PGDB" >/dev/null
STORE="$PG/$PGDB"

MOCK_PORT=$(free_port)
"$KEEL" mock-provider --listen "127.0.0.1:$MOCK_PORT" --output-tokens 16 > "$WORK/mock.log" 2>&1 &
PIDS+=($!)
PORTS=()
for name in a b; do
  port=$(free_port)
  PORTS+=("$port")
  plain_config "$port" "$MOCK_PORT" "$STORE" > "$WORK/$name.toml"
  KEEL_LOG=warn "$KEEL" serve --config "$WORK/$name.toml" > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  # One at a time: the first migrates the new database.
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "replica $name did not start"; cat "$WORK/$name.log"; exit 1; }
done
curl -sf "http://127.0.0.1:$MOCK_PORT/health" >/dev/null || { echo "mock did not start"; cat "$WORK/mock.log"; exit 1; }
# The writer queue's capacity: `[gateway] trace_queue_capacity`, not set here.
capacity=65536

BODY='{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}'
echo "$BODY" > "$WORK/body.json"

# The sampler: time, queue length and drops of each replica, traces in the database.
sample() {
  while :; do
    line=$(date +%s.%N)
    for port in "${PORTS[@]}"; do
      m=$(curl -s "http://127.0.0.1:$port/metrics" || true)
      q=$(printf '%s\n' "$m" | awk '/^keel_trace_queue_length/ {print $2; exit}')
      d=$(printf '%s\n' "$m" | awk '/^keel_traces_dropped_total/ {print $2; exit}')
      line="$line	${q:-0}	${d:-0}"
    done
    n=$(psql "$STORE" -tAc "SELECT count(*) FROM traces" 2>/dev/null || echo 0)
    printf '%s\t%s\n' "$line" "$n" >> "$WORK/samples.tsv"
    sleep 0.5
  done
}
: > "$WORK/samples.tsv"
sample &
SAMPLER=$!
PIDS+=("$SAMPLER")

half=$(( RATE / 2 ))
n=$(( half * SECS ))
echo "two replicas, $half rps each for $SECS s ($n calls each), $CONNS connections each"
load_start=$(date +%s.%N)
i=0
LOAD=()
for port in "${PORTS[@]}"; do
  oha -n "$n" -c "$CONNS" -q "$half" --latency-correction --no-tui -w -m POST \
      -H 'content-type: application/json' -D "$WORK/body.json" --output-format json \
      "http://127.0.0.1:$port/v1/chat/completions" > "$WORK/oha-$i.json" &
  LOAD+=($!)
  i=$((i + 1))
done
for p in "${LOAD[@]}"; do wait "$p"; done
load_end=$(date +%s.%N)
# Until every call's trace is in the database (or 120 s pass).
expected=$(( n * 2 ))
for _ in $(seq 240); do
  have=$(psql "$STORE" -tAc "SELECT count(*) FROM traces")
  [ "$have" -ge "$expected" ] && break
  sleep 0.5
done
done_at=$(date +%s.%N)
sleep 1
kill "$SAMPLER" 2>/dev/null || true
have=$(psql "$STORE" -tAc "SELECT count(*) FROM traces")
db_size=$(psql "$PG/test" -tAc "SELECT pg_size_pretty(pg_database_size('$PGDB'))")

python3 - "$WORK" "$ROOT/bench/RESULTS.md" "$COMMIT" \
  "$RATE" "$SECS" "$CONNS" "$load_start" "$load_end" "$done_at" "$expected" "$have" "$capacity" "$db_size" <<'PY'
import datetime, json, os, sys
work, results, commit, rate, secs, conns, t0, t1, t2, expected, have, capacity, db_size = sys.argv[1:]
t0, t1, t2 = float(t0), float(t1), float(t2)
expected, have = int(expected), int(have)
answered = {}
p99 = []
for i in (0, 1):
    r = json.load(open(f"{work}/oha-{i}.json"))
    for code, count in r.get("statusCodeDistribution", {}).items():
        answered[code] = answered.get(code, 0) + count
    p99.append(r["latencyPercentiles"]["p99"] * 1000)
ok = answered.get("200", 0)
other = sum(v for k, v in answered.items() if k != "200")
samples = [l.rstrip("\n").split("\t") for l in open(f"{work}/samples.tsv") if l.strip()]
max_queue = max((max(float(s[1]), float(s[3])) for s in samples), default=0)
dropped = max((float(s[2]) + float(s[4]) for s in samples), default=0)
during = [s for s in samples if float(s[0]) <= t1]
written_during = int(during[-1][5]) if during else 0
load_secs = t1 - t0
all_secs = t2 - t0
mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
lost = expected - have
text = f"""## {now} — commit {commit} — two replicas ingesting into one PostgreSQL

Machine: {os.cpu_count()} cores ({cpu}), {mem_kb / 1048576:.1f} GiB RAM, {os.uname().sysname} {os.uname().release}. Two release `keel serve` replicas (plain profile: tracing on, full capture) on one PostgreSQL database (127.0.0.1:5432, same machine); `keel mock-provider` upstream; oha at {int(rate) // 2} rps to each replica for {secs} s ({conns} connections each, open loop, in-flight calls awaited). Client, mock, replicas and PostgreSQL share the cores. `bash bench/replicas_ingest.sh {rate} {secs}`.

| total rps | calls 200 / other | client p99 ms (a, b) | traces written/s during load | traces written/s to the last | longest writer queue (capacity) | traces dropped | in the database |
|---:|---:|---:|---:|---:|---:|---:|---:|
| {rate} | {ok} / {other} | {p99[0]:.2f}, {p99[1]:.2f} | {written_during / load_secs:,.0f} | {have / all_secs:,.0f} | {max_queue:,.0f} ({capacity}) | {dropped:,.0f} | {have:,} of {expected:,}{" — OK (0 lost)" if lost == 0 else f" — {lost:,} missing"} |

Load ran {load_secs:.1f} s; the last trace was in the database {t2 - t1:.1f} s after it ended. Database size after: {db_size}.
"""
with open(results, "a") as f:
    f.write("\n\n" + text)
print(text)
PY
