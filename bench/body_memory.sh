#!/usr/bin/env bash
# Memory under large request bodies (issue 14, item 8): 32 concurrent 3.4 MB chat
# requests through `keel serve` (release) to a `keel mock-provider` upstream in its own
# process, whole (non-streamed) replies, full capture; the gateway's peak RSS (VmHWM) is
# read from /proc after the burst. Run it against another build with KEEL=path/to/keel
# (e.g. a build of the commit before a change) to compare; CAP=BYTES sets
# [gateway] max_inflight_body_bytes (default 256 MiB). Appends to bench/RESULTS.md.
#
# Usage: bash bench/body_memory.sh [CONCURRENCY] [BODY_MB]   (default: 32 3.4)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-32}
MB=${2:-3.4}
if [ -z "${KEEL:-}" ]; then
  cargo build --release -p keel-cli
  KEEL=$PWD/target/release/keel
fi
LABEL=${LABEL:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
MOCK_PORT=$((20000 + RANDOM % 10000))
GW_PORT=$((MOCK_PORT + 1))
"$KEEL" mock-provider --listen "127.0.0.1:$MOCK_PORT" >/dev/null 2>&1 &
pids+=($!)
cat > "$WORK/keel.toml" <<TOML
[gateway]
listen = "127.0.0.1:$GW_PORT"
store = "keel.db"
max_body_bytes = 8000000
${CAP:+max_inflight_body_bytes = $CAP}

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"

[models.mock-1]
provider = "up"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
TOML
(cd "$WORK" && exec "$KEEL" serve --config keel.toml >"$WORK/serve.log" 2>&1) &
GW_PID=$!
pids+=("$GW_PID")
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$GW_PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
idle=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status")
out=$(python3 - "$GW_PORT" "$N" "$MB" <<'PY'
import json, sys, threading, time, urllib.request
port, n, mb = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
text = ("lorem ipsum dolor sit amet " * int(mb * 1_000_000 / 27 + 1))[: int(mb * 1_000_000)]
body = json.dumps({"model": "mock-1", "max_tokens": 20,
                   "messages": [{"role": "user", "content": text}]}).encode()
codes, times = [], []
def one():
    t = time.time()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read(); codes.append(r.status)
    except urllib.error.HTTPError as e:
        codes.append(e.code)
    times.append(time.time() - t)
ts = [threading.Thread(target=one) for _ in range(n)]
start = time.time()
[t.start() for t in ts]; [t.join() for t in ts]
ok = sum(1 for c in codes if c == 200)
print(f"{ok} {len(codes) - ok} {time.time() - start:.1f} {len(body)}")
PY
)
read -r ok refused secs bytes <<<"$out"
peak=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")
echo "$N × $bytes B: $ok ok, $refused refused, ${secs} s; gateway RSS idle $((idle / 1024)) MiB, peak $((peak / 1024)) MiB"
{
  printf '\n## %s — %s — memory under large bodies\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$LABEL"
  printf 'Machine: %s cores, %s. `bash bench/body_memory.sh %s %s`: %s concurrent %s-byte chat requests (whole replies, full capture) through `keel serve` (release) to `keel mock-provider` in its own process; peak RSS is the gateway'"'"'s VmHWM.\n\n' "$(nproc)" "$(uname -sr)" "$N" "$MB" "$N" "$bytes"
  echo '| build | ok | refused (503) | wall | RSS idle | peak RSS |'
  echo '|---|---:|---:|---:|---:|---:|'
  echo "| $LABEL | $ok | $refused | $secs s | $((idle / 1024)) MiB | $((peak / 1024)) MiB |"
} >> bench/RESULTS.md
