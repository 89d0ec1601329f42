#!/usr/bin/env bash
# Gateway overhead benchmark: direct-to-upstream vs through Keel, in one run.
#
# Starts the mock upstream (`keel mock-provider`) and a release build of Keel with
# tracing ON (SQLite store, full capture), then for each fixed rate drives the same
# request with `oha` (from crates.io; evenly paced at a global rate, with latency
# correction against coordinated omission) directly at the mock and through Keel,
# reads p50/p99 latency and achieved throughput from oha's JSON, checks that the
# store holds exactly one trace per request sent through Keel, and appends the results
# to bench/RESULTS.md with the date, machine and commit.
#
# Each rate runs ROUNDS times (default 3), alternating direct and Keel, and the report
# takes the median of each figure over the rounds: this machine is a shared VM, and
# interleaving is what keeps a noisy minute from landing on one side only.
#
# Usage: bash bench/run.sh [SECONDS_PER_RUN] [RATES...]   (defaults: 10 s; 500 1000 2000 5000)
#        ROUNDS=3 BENCH_CONNECTIONS=64 bash bench/run.sh
#        BENCH_PROFILE=governed bash bench/run.sh
#        BENCH_API=responses bash bench/run.sh 10 500 1000 2000
#        BENCH_STORE=postgres bash bench/run.sh 10 500 1000 2000
#        BENCH_NGINX=0 bash bench/run.sh   (leave out the nginx reference hop)
#        BENCH_WORKER_THREADS=1 bash bench/run.sh   ([gateway] worker_threads for Keel)
#
# BENCH_STORE picks where traces go: sqlite (default, a file in the run's folder) or
# postgres (a database of its own on the server at 127.0.0.1:5432, user postgres, created
# for the run and dropped after; BENCH_PG overrides the server URL without a database),
# or both: a second Keel on PostgreSQL beside the one on SQLite, driven in the same
# rounds (target `keel-pg`), so the two stores are compared on the same VM minutes.
#
# BENCH_API picks the endpoint, the same path on the mock and on Keel:
#   chat            (default) POST /v1/chat/completions.
#   responses       POST /v1/responses (translated to a chat call; `store` on, so each
#                   response and its conversation are also written to the store).
#   embeddings      POST /v1/embeddings (two short inputs, 64-dimension vectors).
#   stream          POST /v1/chat/completions with `stream: true`: the mock streams 64
#                   content events (256 tokens, 4 per event) BENCH_CHUNK_DELAY_MS apart
#                   (default 1) plus role, finish and usage events; the load is
#                   `stream_load` (crates/keel-cli/examples) instead of oha, open loop at
#                   each rate in streams per second (default rate 1000), and the report
#                   gives time to first byte and the gaps between events, direct and
#                   through Keel.
#
# BENCH_PROFILE picks what Keel does on the request path:
#   plain           (default) one model, tracing on: the gateway's floor.
#   governed        + auth required (a virtual key on every request), a hard budget per
#                   tenant, rpm/tpm limits per key, retries, a fallback and a circuit
#                   breaker, with limits counted in this process ([limits] backend = "local").
#   governed-redis  the same with budgets and rate limits in Redis at 127.0.0.1:6379
#                   (under a key prefix of its own, deleted afterwards).
#   guarded         plain + a typical guardrail policy on the model: PII redaction with
#                   restore and injection detection on input, secrets blocked both ways,
#                   card numbers blocked on output.
#   online          plain + an online eval judging every call (sample_rate = 1.0) with
#                   assertions that need no judge model (not-is-refusal, word-count): the
#                   sampling, the queue and the judging pool with its score writes beside
#                   the request path; calls judged and dropped are reported.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-10}
shift || true
RATES=${*:-"500 1000 2000 5000"}

source "$ROOT/bench/lib.sh"
ensure_oha
CONNS=${BENCH_CONNECTIONS:-64}
PROFILE=${BENCH_PROFILE:-plain}
case "$PROFILE" in plain|governed|governed-redis|guarded|online) ;; *) echo "BENCH_PROFILE must be plain, governed, governed-redis, guarded or online (got $PROFILE)"; exit 2;; esac
ROUNDS=${ROUNDS:-3}
API=${BENCH_API:-chat}
STORE_KIND=${BENCH_STORE:-sqlite}
case "$STORE_KIND" in sqlite|postgres|both) ;; *) echo "BENCH_STORE must be sqlite, postgres or both (got $STORE_KIND)"; exit 2;; esac
case "$API" in
  chat) ENDPOINT=/v1/chat/completions
        BODY='{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}' ;;
  responses) ENDPOINT=/v1/responses
        BODY='{"model":"bench-model","instructions":"You are terse.","input":"Say hello to the benchmark.","max_output_tokens":64}' ;;
  embeddings) ENDPOINT=/v1/embeddings
        BODY='{"model":"bench-model","input":["Say hello to the benchmark.","A second passage to embed."]}' ;;
  stream) ENDPOINT=/v1/chat/completions
        BODY='{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":256,"stream":true,"stream_options":{"include_usage":true}}'
        RATES=${*:-1000} ;;
  *) echo "BENCH_API must be chat, responses, embeddings or stream (got $API)"; exit 2;;
esac
export BENCH_API=$API
cargo build --release -p keel-cli
KEEL=${CARGO_TARGET_DIR:-$ROOT/target}/release/keel
MOCK_ARGS=(--output-tokens 16)
if [ "$API" = stream ]; then
  cargo build --release -p keel-cli --example stream_load
  LOADER=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/stream_load
  MOCK_ARGS=(--output-tokens 256 --chunk-delay-ms "${BENCH_CHUNK_DELAY_MS:-1}")
fi

WORK=$(mktemp -d)
MOCK_PORT=$(free_port)
KEEL_PORT=$(free_port)
STORE="$WORK/bench.db"
if [ "$STORE_KIND" != sqlite ]; then
  PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
  PGDB="keel_bench_$$"
  psql "$PG/test" -qc "CREATE DATABASE $PGDB" >/dev/null
fi
if [ "$STORE_KIND" = postgres ]; then
  STORE="$PG/$PGDB"
  export BENCH_STORE_URL="$STORE"
  PROFILE_LABEL="$PROFILE-postgres"
elif [ "$STORE_KIND" = both ]; then
  [ "$PROFILE" = plain ] || { echo "BENCH_STORE=both runs the plain profile only"; exit 2; }
  KEEL_PG_PORT=$(free_port)
  export BENCH_PG_STORE_URL="$PG/$PGDB"
  plain_config "$KEEL_PG_PORT" "$MOCK_PORT" "$BENCH_PG_STORE_URL" > "$WORK/keel-pg.toml"
fi
plain_config "$KEEL_PORT" "$MOCK_PORT" "$STORE" > "$WORK/keel.toml"
REDIS_PREFIX="keel-bench-$$:"
if [ "$PROFILE" = online ]; then
  cat >> "$WORK/keel.toml" <<TOML

[[online_evals]]
name = "bench-quality"
model = "bench-model"
sample_rate = 1.0
assert = [{ type = "not-is-refusal" }, { type = "word-count", max = 200 }]
TOML
  AUTH=()
elif [ "$PROFILE" = guarded ]; then
  cat >> "$WORK/keel.toml" <<TOML

[guardrails.policies.typical]
models = ["bench-model"]
[[guardrails.policies.typical.checks]]
check = "pii"
on = "input"
action = "redact"
restore = true
[[guardrails.policies.typical.checks]]
check = "secrets"
on = "both"
action = "block"
[[guardrails.policies.typical.checks]]
check = "injection"
[[guardrails.policies.typical.checks]]
name = "no-cards-out"
check = "pii"
kinds = ["credit_card"]
on = "output"
action = "block"
TOML
  AUTH=()
elif [ "$PROFILE" != plain ]; then
  if [ "$PROFILE" = governed-redis ]; then
    governed_config redis "$REDIS_PREFIX" >> "$WORK/keel.toml"
  else
    governed_config local >> "$WORK/keel.toml"
  fi
  KEY=$("$KEEL" keys create --config "$WORK/keel.toml" --tenant bench --reason benchmark --json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  AUTH=(-H "authorization: Bearer $KEY")
else
  AUTH=()
fi

cleanup() {
  kill "${KEEL_PID:-}" "${KEEL_PG_PID:-}" "${MOCK_PID:-}" "${NGINX_PID:-}" 2>/dev/null || true
  if [ -n "${PGDB:-}" ]; then
    psql "$PG/test" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ "$PROFILE" = governed-redis ]; then
    redis-cli --scan --pattern "${REDIS_PREFIX}*" | xargs -r redis-cli del >/dev/null || true
  fi
}
trap cleanup EXIT
"$KEEL" mock-provider --listen "127.0.0.1:$MOCK_PORT" "${MOCK_ARGS[@]}" > "$WORK/mock.log" 2>&1 &
MOCK_PID=$!
# The thinnest real proxy hop, measured in the same rounds when nginx is installed
# (apt-get install nginx-light; BENCH_NGINX=0 to leave it out): proxy_pass with
# keep-alive connections to the same mock, no buffering (streams pass as they come).
TARGETS="direct keel"
if [ "${BENCH_NGINX:-1}" = 1 ] && command -v nginx >/dev/null; then
  NGINX_PORT=$(free_port)
  nginx_config "$NGINX_PORT" "$MOCK_PORT" "$WORK" > "$WORK/nginx.conf"
  nginx -c "$WORK/nginx.conf" -e "$WORK/nginx.log" &
  NGINX_PID=$!
  TARGETS="direct nginx keel"
fi
KEEL_LOG=warn "$KEEL" serve --config "$WORK/keel.toml" > "$WORK/keel.log" 2>&1 &
KEEL_PID=$!
wait_healthy 100 "http://127.0.0.1:$MOCK_PORT/health" "http://127.0.0.1:$KEEL_PORT/health"
if [ -n "${KEEL_PG_PORT:-}" ]; then
  KEEL_LOG=warn "$KEEL" serve --config "$WORK/keel-pg.toml" > "$WORK/keel-pg.log" 2>&1 &
  KEEL_PG_PID=$!
  wait_healthy 100 "http://127.0.0.1:$KEEL_PG_PORT/health"
  TARGETS="$TARGETS keel-pg"
fi
if [ -n "${NGINX_PORT:-}" ]; then wait_healthy 100 "http://127.0.0.1:$NGINX_PORT/health"; fi

echo "$BODY" > "$WORK/body.json"
: > "$WORK/runs.tsv"
for rate in $RATES; do
 n=$(( rate * SECS ))
 for round in $(seq "$ROUNDS"); do
  # The two Keels swap places every other round, so neither always runs right after
  # the other (an order effect would otherwise read as a difference between stores).
  order=$TARGETS
  if [ $((round % 2)) = 0 ]; then order=${TARGETS/keel keel-pg/keel-pg keel}; fi
  for target in $order; do
    # The port to drive, and the proxy process whose CPU the round reads (none direct).
    case "$target" in
      direct) port=$MOCK_PORT; pid=;;
      nginx) port=$NGINX_PORT; pid=$NGINX_PID;;
      keel-pg) port=$KEEL_PG_PORT; pid=$KEEL_PG_PID;;
      *) port=$KEEL_PORT; pid=$KEEL_PID;;
    esac
    echo "rate $rate rps, round $round/$ROUNDS, $CONNS connections, $n requests -> $target"
    cpu0=; if [ -n "$pid" ]; then cpu0=$(cpu_seconds "$pid"); fi
    start=$(date +%s.%N)
    if [ "$API" = stream ]; then
      hdr=()
      if [ ${#AUTH[@]} -gt 0 ]; then hdr=(--header "${AUTH[1]}"); fi
      "$LOADER" --url "http://127.0.0.1:$port$ENDPOINT" --body "$WORK/body.json" "${hdr[@]}" \
        --rate "$rate" --seconds "$SECS" > "$WORK/$target-$rate-$round.json"
    else
      oha -n "$n" -c "$CONNS" -q "$rate" --latency-correction --no-tui -m POST \
        -H 'content-type: application/json' "${AUTH[@]}" -D "$WORK/body.json" --output-format json \
        "http://127.0.0.1:$port$ENDPOINT" > "$WORK/$target-$rate-$round.json"
    fi
    end=$(date +%s.%N)
    # The CPU the proxy used for the round: read after a short pause, so the trace
    # writer's last batch of the round counts in it (the load tool and mock are apart).
    cpu=; if [ -n "$pid" ]; then sleep 0.3; cpu=$(awk -v a="$cpu0" -v b="$(cpu_seconds "$pid")" 'BEGIN { printf "%.2f", b - a }'); fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$target" "$round" "$n" "$start" "$end" "$cpu" >> "$WORK/runs.tsv"
  done
 done
done

# Stop Keel cleanly (drains the trace queue), then count traces.
kill -TERM "$KEEL_PID"; wait "$KEEL_PID" || true; KEEL_PID=
if [ -n "${KEEL_PG_PID:-}" ]; then kill -TERM "$KEEL_PG_PID"; wait "$KEEL_PG_PID" || true; KEEL_PG_PID=; fi
python3 "$ROOT/bench/analyze.py" "$WORK" "$ROOT/bench/RESULTS.md" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" "${PROFILE_LABEL:-$PROFILE}" "$ENDPOINT"
