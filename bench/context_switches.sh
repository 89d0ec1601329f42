#!/usr/bin/env bash
# Context switches, CPU migrations and CPU time per request of a Keel on SQLite and a Keel
# on PostgreSQL (127.0.0.1:5432, a fresh database dropped at the end), same mock, same
# plain config, 1000 rps for 10 s each, alternating, 3 rounds; `perf stat` on each Keel
# process and on the whole system. A diagnostic for issue 19's p99 gap between the two
# stores (bench/RESULTS.md 2026-12-06 17:38), not a benchmark: prints, records nothing.
#
# With SCHED=1 each run is recorded with `perf sched record` instead, and
# bench/sched_delay.py says how long each Keel's request workers waited for a core and
# which tasks held it.
#
# Usage: [SCHED=1] bash bench/context_switches.sh   (needs perf, oha, PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source bench/lib.sh
ensure_oha
build_keel
W=$(mktemp -d); WORK=$W
MOCK=$(free_port); K1=$(free_port); K2=$(free_port)
PG=postgres://postgres@127.0.0.1:5432; DB=keel_cs_$$
psql "$PG/test" -qc "CREATE DATABASE $DB" >/dev/null
plain_config $K1 $MOCK "$W/s.db" > "$W/s.toml"
plain_config $K2 $MOCK "$PG/$DB" > "$W/p.toml"
$KEEL mock-provider --listen 127.0.0.1:$MOCK > /dev/null 2>&1 & M=$!
KEEL_LOG=warn $KEEL serve --config "$W/s.toml" > "$W/s.log" 2>&1 & P1=$!
KEEL_LOG=warn $KEEL serve --config "$W/p.toml" > "$W/p.log" 2>&1 & P2=$!
trap 'kill $M $P1 $P2 2>/dev/null; sleep 1; psql "$PG/test" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null; rm -rf "$W"' EXIT
wait_healthy 100 http://127.0.0.1:$MOCK/health http://127.0.0.1:$K1/health http://127.0.0.1:$K2/health
BODY='{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}'
echo "$BODY" > "$W/b.json"
# load PORT: 10,000 calls at 1000 rps to the Keel on PORT; oha's JSON in $W/o.json.
load() {
  oha -n 10000 -c 64 -q 1000 --latency-correction --no-tui -m POST -H 'content-type: application/json' \
    -D "$W/b.json" --output-format json http://127.0.0.1:$1/v1/chat/completions > "$W/o.json"
}
p99() { python3 -c "import json;d=json.load(open('$W/o.json'));print(round(d['latencyPercentiles']['p99']*1000,2))"; }
for round in 1 2 3; do
  for pair in "sqlite $K1 $P1" "postgres $K2 $P2"; do
    set -- $pair
    if [ "${SCHED:-0}" = 1 ]; then
      # Every context switch on the machine, then the request workers' waits for a core.
      perf sched record -a -o "$W/sched.data" -- bash -c "$(declare -f load); W=$W load $2" 2>/dev/null
      echo "round $round $1: p99 $(p99) ms (under perf sched record)"
      perf sched timehist -i "$W/sched.data" 2>/dev/null | python3 bench/sched_delay.py $3
      continue
    fi
    perf stat -a -e context-switches,cpu-migrations -o "$W/sys.txt" -- \
      perf stat -e context-switches,cpu-migrations,task-clock -p $3 -o "$W/k.txt" -- \
      bash -c "$(declare -f load); W=$W load $2"
    kcs=$(awk '/context-switches/{gsub(",","",$1);print $1}' "$W/k.txt")
    kmig=$(awk '/cpu-migrations/{gsub(",","",$1);print $1}' "$W/k.txt")
    kcpu=$(awk '/task-clock/{gsub(",","",$1);print $1}' "$W/k.txt")
    scs=$(awk '/context-switches/{gsub(",","",$1);print $1}' "$W/sys.txt")
    echo "round $round $1: p99 $(p99) ms; keel: cs/req $(python3 -c "print(round($kcs/10000,2))") migr/req $(python3 -c "print(round($kmig/10000,3))") cpu µs/req $(python3 -c "print(round($kcpu*1000/10000,1))"); system cs/req $(python3 -c "print(round($scs/10000,2))")"
  done
done
