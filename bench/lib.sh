# Shared by the bench scripts (sourced): a free port, and the plain profile's config —
# one model on the mock upstream, tracing on with full capture — that every benchmark
# starts from, so they all measure the same gateway.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_healthy TRIES URL...: each URL answers within TRIES tenths of a second, or the
# servers' logs ($WORK/*.log) are shown and the script stops.
wait_healthy() {
  local tries=$1; shift
  for url in "$@"; do
    for _ in $(seq "$tries"); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
    curl -sf "$url" >/dev/null || { echo "server at $url did not start"; cat "$WORK"/*.log; exit 1; }
  done
}

# plain_config LISTEN_PORT MOCK_PORT STORE_PATH: the plain profile's keel.toml on stdout.
plain_config() {
  cat <<TOML
[gateway]
listen = "127.0.0.1:$1"
store = "$3"
capture = "full"

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
