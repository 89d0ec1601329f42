#!/usr/bin/env bash
# Guardrail cost on the request path: the detector stack (`scan` of every PII and secret
# kind, `injection`, a 50-term `TermMatcher`, redaction) over N KB of realistic mixed text
# (keel-guardrails' `throughput` example, release build, best of 3 per figure), appended to
# bench/RESULTS.md with the date, machine and commit. The gateway-level cost with a typical
# policy is measured by `BENCH_PROFILE=guarded bash bench/run.sh`.
#
# Usage: bash bench/guardrails.sh [KB]   (default 512)
set -euo pipefail
cd "$(dirname "$0")/.."
KB=${1:-512}
cargo build --release -p keel-guardrails --example throughput
OUT=$(./target/release/examples/throughput "$KB")
echo "$OUT"
{
  printf '\n## %s — commit %s — guardrail detectors\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf 'Machine: %s cores, %s, %s. `cargo run --release -p keel-guardrails --example throughput %s`: %s KB of mixed support, code, numeric and PII-bearing text in 4 KB messages; each figure the best of 3.\n\n' \
    "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(uname -sr)" "$KB" "$KB"
  echo '```'
  echo "$OUT"
  echo '```'
} >> bench/RESULTS.md
