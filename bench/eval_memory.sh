#!/usr/bin/env bash
# Eval runner memory: `keel eval run` on the quickstart's function over 1,000 and 20,000
# generated cases (the 50 support questions cycled, each with its own id and assertion),
# measuring peak RSS with GNU time. Results stream to the store as they come, so the peak
# should grow far less than the case count. Appends the figures to bench/RESULTS.md.
#
# Usage: bash bench/eval_memory.sh [CASES...]   (default: 1000 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZES=${*:-"1000 20000"}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install -y time)"; exit 2; }
cargo build --release -p keel-cli
KEEL=$ROOT/target/release/keel
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r examples/quickstart/. "$WORK/"
rm -f "$WORK"/keel.db*
rows=""
for n in $SIZES; do
  python3 - "$WORK/evals/support.jsonl" "$WORK/evals/big.jsonl" "$n" <<'PY'
import json, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cases = [json.loads(l) for l in open(src) if l.strip()]
with open(dst, "w") as f:
    for i in range(n):
        c = dict(cases[i % len(cases)])
        c["id"] = f"{c['id']}-{i}"
        f.write(json.dumps(c) + "\n")
PY
  cat > "$WORK/evals/big.toml" <<TOML
description = "memory benchmark: $n generated cases"
[target]
function = "support-answer"
variant = "control"
[dataset]
path = "big.jsonl"
[run]
concurrency = 8
[gate]
min_pass_rate = 0.0
TOML
  (cd "$WORK" && "$KEEL" eval lock big --reason "memory benchmark" >/dev/null)
  start=$(date +%s.%N)
  (cd "$WORK" && /usr/bin/time -v "$KEEL" eval run big --no-cache --json > "$WORK/out-$n.json" 2> "$WORK/time-$n.txt")
  end=$(date +%s.%N)
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time-$n.txt")
  secs=$(python3 -c "print(f'{$end-$start:.1f}')")
  echo "$n cases: peak RSS ${rss} KB, ${secs} s"
  rows="$rows| $n | $((rss / 1024)) MiB | $secs s |"$'\n'
done
{
  printf '\n## %s — commit %s — eval runner memory\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf 'Machine: %s cores, %s. `bash bench/eval_memory.sh`: `keel eval run` (release) on the quickstart function, in-process mock, concurrency 8, no cache; peak RSS from GNU time.\n\n' "$(nproc)" "$(uname -sr)"
  echo '| cases | peak RSS | wall time |'
  echo '|---:|---:|---:|'
  printf '%s' "$rows"
} >> bench/RESULTS.md
