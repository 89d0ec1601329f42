# Shared by the bench scripts (sourced): a free port, and the plain profile's config —
# one model on the mock upstream, tracing on with full capture — that every benchmark
# starts from, so they all measure the same gateway.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_seconds PID...: the CPU time (user + system) the processes have used so far, their
# threads and their live child processes (nginx's workers) included, in seconds.
cpu_seconds() {
  command -v pgrep >/dev/null || { echo "cpu_seconds needs pgrep (apt-get install procps)" >&2; return 1; }
  local pids=("$@") p
  for p in "$@"; do pids+=($(pgrep -P "$p" || true)); done
  # utime and stime are the 12th and 13th fields after the command name, which is in
  # parentheses and may hold spaces.
  for p in "${pids[@]}"; do cat "/proc/$p/stat" 2>/dev/null || true; done \
    | awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); s += $12 + $13 } END { printf "%.2f", s / hz }'
}

# ensure_oha: oha on the PATH (installed from crates.io when missing).
ensure_oha() {
  export PATH="$HOME/.cargo/bin:$PATH"
  command -v oha >/dev/null || { echo "installing oha (cargo install oha --locked; a few minutes)"; cargo install oha --locked; }
}

# build_keel: a release build of keel from the working tree; its path in $KEEL.
build_keel() {
  cargo build --release --quiet -p keel-cli
  KEEL=${CARGO_TARGET_DIR:-$ROOT/target}/release/keel
}

# counting_keel: a release build with `--features count-allocations` (a counting
# allocator and GET /debug/allocations; never a build for users), copied into a new
# $WORK (a plain release build would replace it) as $KEEL, with free $MOCK_PORT and
# $KEEL_PORT and the plain profile's config in $WORK/keel.toml.
counting_keel() {
  cargo build --release --quiet -p keel-cli --features count-allocations
  WORK=$(mktemp -d)
  cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/keel" "$WORK/keel-count"
  KEEL=$WORK/keel-count
  MOCK_PORT=$(free_port)
  KEEL_PORT=$(free_port)
  plain_config "$KEEL_PORT" "$MOCK_PORT" "$WORK/bench.db" > "$WORK/keel.toml"
}

# wait_healthy TRIES URL...: each URL answers within TRIES tenths of a second, or the
# servers' logs ($WORK/*.log) are shown and the script stops.
wait_healthy() {
  local tries=$1; shift
  for url in "$@"; do
    for _ in $(seq "$tries"); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
    curl -sf "$url" >/dev/null || { echo "server at $url did not start"; cat "$WORK"/*.log; exit 1; }
  done
}

# start_mock: the mock upstream (16-token replies) on $MOCK_PORT with $KEEL, logging to
# $WORK/mock.log; its pid in $MOCK_PID.
start_mock() {
  "$KEEL" mock-provider --listen "127.0.0.1:$MOCK_PORT" --output-tokens 16 > "$WORK/mock.log" 2>&1 &
  MOCK_PID=$!
}

# keepalive_load PORT N [CONNECTIONS]: N plain chat calls to 127.0.0.1:PORT over 4 (or
# CONNECTIONS) keep-alive connections (a Python client, so it runs outside whatever
# measures Keel); fails on any non-200.
keepalive_load() {
  python3 - "$1" "$2" "${3:-4}" <<'PY'
import http.client, json, sys, threading
port, n, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = json.dumps({"model": "bench-model", "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the benchmark."}], "max_tokens": 64})
bad = []
def worker(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(k):
        c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status != 200: bad.append(r.status)
threads = [threading.Thread(target=worker, args=(n // conns + (1 if i < n % conns else 0),)) for i in range(conns)]
[t.start() for t in threads]; [t.join() for t in threads]
if bad: sys.exit(f"{len(bad)} calls failed: {sorted(set(bad))}")
PY
}

# plain_config LISTEN_PORT MOCK_PORT STORE_PATH: the plain profile's keel.toml on stdout.
plain_config() {
  cat <<TOML
[gateway]
listen = "127.0.0.1:$1"
store = "$3"
capture = "full"
${BENCH_WORKER_THREADS:+worker_threads = $BENCH_WORKER_THREADS}

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:$2/v1"

[models.bench-model]
provider = "up"
upstream_model = "bench-model"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
TOML
}

# governed_config BACKEND [REDIS_PREFIX]: appended to plain_config's, the governed
# profiles — auth required (a virtual key on every call), a hard budget per tenant,
# rpm/tpm limits per key, retries with a fallback and a circuit breaker; limits counted
# in this process (BACKEND local) or in Redis at 127.0.0.1:6379 under REDIS_PREFIX.
governed_config() {
  local limits="backend = \"$1\""
  if [ "$1" = redis ]; then
    limits=$(printf '%s\nredis_url = "redis://127.0.0.1:6379"\nkey_prefix = "%s"' "$limits" "$2")
  fi
  cat <<TOML
retries = 2
retry_backoff = "50ms"
fallbacks = ["bench-fallback"]

[models.bench-model.circuit_breaker]
enabled = true

[models.bench-fallback]
provider = "up"
upstream_model = "bench-model"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

[auth]
mode = "required"

[limits]
$limits

[[budgets]]
name = "per-tenant"
scope = "tenant"
limit_usd = 10000
window = "month"

[[rate_limits]]
scope = "key"
rpm = 10000000
tpm = 10000000000
TOML
}

# nginx_config LISTEN_PORT MOCK_PORT DIR: an nginx.conf on stdout for the reference hop —
# proxy_pass with keep-alive connections to the mock, no buffering (streams pass as they
# come), no access log; pid, logs and temp files under DIR. Run it in the foreground with
# `nginx -c FILE -e DIR/nginx.log &`.
nginx_config() {
  mkdir -p "$3/nginx"
  cat <<NGINX
user root;
worker_processes auto;
daemon off;
pid $3/nginx/nginx.pid;
error_log $3/nginx.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $3/nginx/body;
  proxy_temp_path $3/nginx/proxy;
  upstream mock { server 127.0.0.1:$2; keepalive 128; }
  server {
    listen 127.0.0.1:$1;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
}
