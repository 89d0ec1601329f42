#!/usr/bin/env bash
# The whole test suite, as the README gives it and CI runs it:
#   formatting, lints, unit + in-process integration tests, then end-to-end tests that
#   drive the built `keel` binary with the official openai and anthropic Python SDKs
#   (installed into a venv by tests/e2e/run.sh; every suite a second time with the store
#   on PostgreSQL at 127.0.0.1:5432), then the dashboard in headless Chromium, on SQLite
#   and on PostgreSQL (tests/browser/run.sh installs Debian's chromium when missing;
#   screenshots are kept in target/browser-artifacts/).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

# The Redis-backed tests (shared limits across replicas) need Redis at 127.0.0.1:6379;
# start it when it is installed but not running.
if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 \
    && command -v redis-server >/dev/null; then
  step "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  sleep 1
fi

step "cargo test (unit + integration)"
cargo test --workspace

step "end-to-end (official SDKs against the built binary)"
cargo build -p keel-cli
KEEL_BIN="$PWD/target/debug/keel" bash tests/e2e/run.sh

step "end-to-end, the store on PostgreSQL (every suite; a database per gateway and per copied example)"
KEEL_E2E_STORE=postgres KEEL_BIN="$PWD/target/debug/keel" bash tests/e2e/run.sh

step "dashboard in a real browser (headless Chromium against the built binary)"
KEEL_BIN="$PWD/target/debug/keel" bash tests/browser/run.sh

step "dashboard in a real browser, the store on PostgreSQL"
KEEL_E2E_STORE=postgres KEEL_BIN="$PWD/target/debug/keel" bash tests/browser/run.sh
