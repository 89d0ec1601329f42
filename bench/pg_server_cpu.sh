#!/usr/bin/env bash
# PostgreSQL's own CPU per trace written (issue 19): what the server spends on Keel's
# trace writer, on the cores a same-machine deployment shares with the gateway.
#
# Method: a Keel on a fresh PostgreSQL database (127.0.0.1:5432, dropped at the end), the
# plain profile on the mock upstream. After 2,000 warm-up calls, the CPU time (utime +
# stime in /proc/PID/stat) of the database's backends (pg_stat_activity, this database)
# and of every postgres process is read; CALLS calls are sent at RATE per second (oha);
# once every trace is stored it is read again:
#
#   server CPU per trace = (CPU after − before) / CALLS
#
# The Keel process's own CPU over the same window is printed beside it. With KEEL_B set
# to a second keel binary, both are measured in turn, ROUNDS times, alternating (an A/B
# in one run). Prints; records nothing (paste the table into bench/RESULTS.md).
#
# Usage: [KEEL=/path/to/keel] [KEEL_B=/path/to/other/keel] [ROUNDS=3 CALLS=10000 RATE=1000] bash bench/pg_server_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source bench/lib.sh
ROUNDS=${ROUNDS:-3}
CALLS=${CALLS:-10000}
RATE=${RATE:-1000}
ensure_oha
# KEEL=path measures that binary instead of a release build of the working tree.
[ -n "${KEEL:-}" ] || build_keel
KEEL_A=$KEEL
W=$(mktemp -d); WORK=$W
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
MOCK_PORT=$(free_port)
DBS=()
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  sleep 1
  for db in "${DBS[@]}"; do psql "$PG/test" -qc "DROP DATABASE IF EXISTS $db" >/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
start_mock
PIDS+=("$MOCK_PID")
echo '{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}' > "$W/b.json"

# ticks PID...: the summed utime + stime (clock ticks) of the processes still alive.
ticks() {
  local sum=0 pid f
  for pid in "$@"; do
    f=$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null) || continue
    set -- $f; sum=$((sum + $1 + $2))
  done
  echo $sum
}
backends() { psql "$PG/$1" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = '$1' AND pid <> pg_backend_pid()"; }
stored() { psql "$PG/$1" -Atc "SELECT count(*) FROM traces"; }
load() {
  oha -n "$2" -c 64 -q "$RATE" --latency-correction --no-tui -m POST -H 'content-type: application/json' \
    -D "$W/b.json" "http://127.0.0.1:$1/v1/chat/completions" > /dev/null
}

# setup NAME BINARY: a database and a Keel for it; its port and pid in PORT_<NAME>, PID_<NAME>.
setup() {
  local name=$1 bin=$2 db="keel_cpu_${1}_$$" port
  port=$(free_port)
  psql "$PG/test" -qc "CREATE DATABASE $db" >/dev/null
  DBS+=("$db")
  plain_config "$port" "$MOCK_PORT" "$PG/$db" > "$W/$name.toml"
  KEEL_LOG=warn "$bin" serve --config "$W/$name.toml" > "$W/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PORT_$name=$port PID_$name=$! DB_$name=$db SENT_$name=0"
}
setup a "$KEEL_A"
NAMES=(a)
if [ -n "${KEEL_B:-}" ]; then setup b "$KEEL_B"; NAMES+=(b); fi
for n in "${NAMES[@]}"; do eval "wait_healthy 300 http://127.0.0.1:\$PORT_$n/health"; done
wait_healthy 100 "http://127.0.0.1:$MOCK_PORT/health"
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# wait_stored NAME: until the database holds every trace sent to it (60 s at most).
wait_stored() {
  local db sent
  eval "db=\$DB_$1 sent=\$SENT_$1"
  for _ in $(seq 600); do [ "$(stored "$db")" -ge "$sent" ] && return; sleep 0.1; done
  echo "$1: $(stored "$db") of $sent traces stored after 60 s" >&2; exit 1
}
for n in "${NAMES[@]}"; do
  eval "load \$PORT_$n 2000; SENT_$n=2000"
  wait_stored "$n"
done

printf '| round | keel | calls | its backends, µs per trace | all postgres processes, µs per trace | the Keel process, µs per call |\n|---:|---|---:|---:|---:|---:|\n'
for round in $(seq "$ROUNDS"); do
  order=("${NAMES[@]}")
  if [ $((round % 2)) -eq 0 ] && [ ${#NAMES[@]} -eq 2 ]; then order=(b a); fi
  for n in "${order[@]}"; do
    eval "db=\$DB_$n port=\$PORT_$n kpid=\$PID_$n"
    mapfile -t bp < <(backends "$db")
    mapfile -t all < <(pgrep -x postgres || true)
    b0=$(ticks "${bp[@]}"); a0=$(ticks "${all[@]}"); k0=$(ticks "$kpid")
    load "$port" "$CALLS"
    eval "SENT_$n=\$((SENT_$n + CALLS))"
    wait_stored "$n"
    b1=$(ticks "${bp[@]}"); a1=$(ticks "${all[@]}"); k1=$(ticks "$kpid")
    label=$n; [ "$n" = a ] && label="A ($KEEL_A)"; [ "$n" = b ] && label="B ($KEEL_B)"
    printf '| %s | %s | %s | %.1f | %.1f | %.1f |\n' "$round" "$label" "$CALLS" \
      "$(echo "($b1 - $b0) * $TICK_US / $CALLS" | bc -l)" \
      "$(echo "($a1 - $a0) * $TICK_US / $CALLS" | bc -l)" \
      "$(echo "($k1 - $k0) * $TICK_US / $CALLS" | bc -l)"
  done
done
