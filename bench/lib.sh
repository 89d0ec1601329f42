# Shared by the bench scripts (sourced): a free port, and the plain profile's config —
# one model on the mock upstream, tracing on with full capture — that every benchmark
# starts from, so they all measure the same gateway.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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
