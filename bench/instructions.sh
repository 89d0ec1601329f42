#!/usr/bin/env bash
# CPU instructions per proxied call, counted by valgrind's callgrind over every thread of
# `keel serve` — a figure that does not swing with the shared VM the way latency does.
#
# Method: Keel (release build, tracing and rollups on, full capture, the plain profile of
# bench/run.sh) runs under callgrind against the mock upstream (not under valgrind). After
# WARMUP calls (connections made, lazy state built), the counters are zeroed, CALLS calls
# are sent at concurrency 4 by a keep-alive client outside valgrind, the writer is given
# SETTLE seconds to store them, and the counters are dumped. The same wait with no calls
# gives the idle cost (timers, the writer's ticks), which is subtracted:
#
#   instructions per call = (total with CALLS calls - total idle) / CALLS
#
# The dump is summarised by callgrind_annotate: the top functions by inclusive cost, and
# the shares of the trace writer (`keel_store::writer` and below: inserts, rollups,
# commits) and of everything else (the request path: HTTP, routing, the upstream call,
# pricing, the trace handed to the writer). Prints a report and, unless --no-record, appends it
# to bench/RESULTS.md and writes the full summary to bench/profiles/instructions-plain.txt.
#
# SETTLE is longer than the model-version watch's interval (10 s), so every measured trace
# is read by exactly one of its passes inside the window: with a shorter wait the watch's
# share (~10k instructions per call) was in some runs and not in others.
#
# The writer's cost per call depends on how many traces share a batch, and that follows
# valgrind's pace: a second run at concurrency 1 (smaller batches) gives its per-trace and
# per-batch costs, and the report adds the total at a fixed batch of 32 traces.
#
# Usage: bash bench/instructions.sh [--no-record]    (CALLS=2000 WARMUP=200 SETTLE=11;
#        KEEL_BIN=path measures that binary instead of a build of the working tree)
set -euo pipefail
# KEEL_BIN as an absolute path, before the cd below changes what a relative one means.
if [ -n "${KEEL_BIN:-}" ]; then
  KEEL_BIN=$(realpath "$KEEL_BIN")
  [ "${1:-}" = --no-record ] || { echo "KEEL_BIN measures another build: add --no-record (a record is labelled with this checkout's commit)"; exit 2; }
fi
cd "$(dirname "$0")/.."
ROOT=$PWD
CALLS=${CALLS:-2000}
WARMUP=${WARMUP:-200}
SETTLE=${SETTLE:-11}
RECORD=${1:-}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 2; }
if [ -n "${KEEL_BIN:-}" ]; then
  KEEL=$KEEL_BIN  # an A/B: measure that binary (another commit's build) as it is
else
  cargo build --release --quiet -p keel-cli
  KEEL=${CARGO_TARGET_DIR:-$ROOT/target}/release/keel
fi

WORK=$(mktemp -d)
source "$ROOT/bench/lib.sh"
MOCK_PORT=$(free_port)
KEEL_PORT=$(free_port)
plain_config "$KEEL_PORT" "$MOCK_PORT" "$WORK/bench.db" > "$WORK/keel.toml"

cleanup() { kill "${KEEL_PID:-}" "${MOCK_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
start_mock
KEEL_LOG=${KEEL_LOG:-warn} valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
  "$KEEL" serve --config "$WORK/keel.toml" > "$WORK/keel.log" 2>&1 &
KEEL_PID=$!
wait_healthy 600 "http://127.0.0.1:$MOCK_PORT/health" "http://127.0.0.1:$KEEL_PORT/health"

# A keep-alive client outside valgrind (lib.sh); $2 = connections (default 4).
load() { keepalive_load "$KEEL_PORT" "$1" "${2:-4}"; }

# Traces written and batches flushed so far: "written flushes".
writer_counts() {
  curl -s "http://127.0.0.1:$KEEL_PORT/metrics" | python3 -c '
import re, sys
m = sys.stdin.read()
v = lambda n: (re.search(r"^keel_" + n + r"_total (\d+)", m, re.M) or [0, 0])[1]
print(v("traces_written"), v("trace_flushes"))'
}

# The total of a dump: the `summary:` (or `totals:`) line of the newest file.
total() { grep -h -E '^(summary|totals):' "$(ls -t "$WORK"/cg.* | head -1)" | head -1 | awk '{print $2}'; }

measure() { # $1 = calls (0 = idle); leaves the dump as $WORK/$2; $3 = connections
  callgrind_control -z "$KEEL_PID" >/dev/null
  local start; start=$(date +%s.%N)
  [ "$1" -gt 0 ] && load "$1" "${3:-4}"
  local elapsed; elapsed=$(python3 -c "import time; print(time.time() - $start)")
  sleep "$SETTLE"
  # The idle measurement waits as long as the loaded one took in all.
  [ "$1" -eq 0 ] && sleep "${LOADED_SECS:-0}"
  callgrind_control -d "$KEEL_PID" >/dev/null
  sleep 1
  cp "$(ls -t "$WORK"/cg.* | head -1)" "$WORK/$2"
  echo "$elapsed"
}

echo "warming up ($WARMUP calls)..." >&2
load "$WARMUP"
sleep "$SETTLE"
echo "measuring $CALLS calls at concurrency 4 under callgrind..." >&2
COUNTS_0=$(writer_counts)
LOADED_SECS=$(measure "$CALLS" loaded)
COUNTS_1=$(writer_counts)
echo "measuring the same time idle..." >&2
measure 0 idle >/dev/null
# The writer's cost per call is a per-trace cost plus a per-batch cost shared by the
# batch, and batch sizes follow valgrind's pace (12 to 36 traces a batch on the same
# command, 2026-12-07). A second run at concurrency 1 writes smaller batches; the two
# give the per-trace and per-batch costs, and the total at a fixed batch size.
echo "measuring $CALLS calls at concurrency 1 (smaller batches)..." >&2
measure "$CALLS" serial 1 >/dev/null
COUNTS_2=$(writer_counts)
callgrind_annotate --inclusive=yes --threshold=99 "$WORK/serial" > "$WORK/annotate-serial.txt" 2>/dev/null || true
LOADED=$(grep -h -E '^(summary|totals):' "$WORK/loaded" | head -1 | awk '{print $2}')
IDLE=$(grep -h -E '^(summary|totals):' "$WORK/idle" | head -1 | awk '{print $2}')
callgrind_annotate --inclusive=yes --threshold=99 "$WORK/loaded" > "$WORK/annotate.txt" 2>/dev/null || true
callgrind_annotate --tree=caller --inclusive=yes --auto=no "$WORK/loaded" > "$WORK/self.txt" 2>/dev/null || true
[ -n "${KEEP_PROFILE:-}" ] && cp "$WORK/loaded" "$WORK/annotate.txt" "$WORK/self.txt" "$WORK/keel.log" "$KEEP_PROFILE"/
STORED=$(sqlite3 "$WORK/bench.db" 'SELECT COUNT(*) FROM traces' 2>/dev/null || echo "?")
python3 - "$WORK/annotate.txt" "$LOADED" "$IDLE" "$CALLS" "$LOADED_SECS" "$RECORD" "$ROOT" "$STORED" "$WARMUP" "$COUNTS_0 $COUNTS_1 $COUNTS_2" <<'PY'
import datetime, os, platform, re, subprocess, sys
ann, loaded, idle, calls, secs, record, root, stored, warmup, counts = sys.argv[1:]
w0, f0, w1, f1, w2, f2 = (int(x) for x in counts.split())
loaded, idle, calls = int(loaded), int(idle), int(calls)
per_call = (loaded - idle) / calls
def read_rows(path):
    rows = []
    for line in open(path, errors="replace"):
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S.*?)(?: \[[^\]]*\])?$", line)
        if m:
            name = re.sub(r"^(/root/\.cargo/registry/src/[^/]+/|/rustc/[0-9a-f]+/|/work/main/)", "", m.group(3).strip())
            if not any(r[2] == name for r in rows):
                rows.append((int(m.group(1).replace(",", "")), float(m.group(2)), name))
    return rows
rows = read_rows(ann)
def share(pattern, rows=rows):
    vals = [r[0] for r in rows if re.search(pattern, r[2])]
    return max(vals) if vals else 0
# The writer thread's entry (its function names moved with the code: match either).
WRITER = r":keel_store::writer::run$|store/src/writer(_sink)?\.rs:std::sys::backtrace::__rust_begin_short_backtrace$"
writer = share(WRITER)
# The writer's per-trace and per-batch costs from the two runs (writer per call =
# per trace + per batch / traces per batch).
serial_writer = share(WRITER, read_rows(os.path.join(os.path.dirname(ann), "annotate-serial.txt")))
n4 = (w1 - w0) / (f1 - f0) if f1 > f0 else 0
n1 = (w2 - w1) / (f2 - f1) if f2 > f1 else 0
per_trace = per_batch = None
if n4 and n1 and abs(1 / n1 - 1 / n4) > 1e-9:
    per_batch = (serial_writer / calls - writer / calls) / (1 / n1 - 1 / n4)
    per_trace = writer / calls - per_batch / n4
FIXED_BATCH = 32
rollups = share(r":keel_store::rollup::RollupBatch::(write|add)$")
inserts = share(r":keel_store::sql::db::Db::execute_rows$")
watch = share(r":keel_gateway::model_watch::run_once$")
boxed = share(r"boxed\.rs:<tower::util::map_future::MapFuture<S,F> as tower_service::Service<R>>::call$")
handler = share(r"keel-gateway/src/handlers/chat.rs:")
# Routing and the upstream call (the provider's future is inlined into the route's).
upstream = share(r":keel_gateway::pipeline::route::call_routed::\{\{closure\}\}$")
sending = share(r"openai\.rs:keel_providers::openai::OpenAiProvider::send::\{\{closure\}\}$|:keel_providers::client::HttpClient::post::\{\{closure\}\}$")
prepare = share(r":sqlite3Prepare$")
# Allocations: the calls into the allocator's entry point, from the caller tree (each
# block lists a function's callers, `< caller (Nx)`, above its `*` line).
allocs, block = 0, []
for line in open(os.path.join(os.path.dirname(ann), "self.txt"), errors="replace"):
    if not line.strip():
        block = []
    elif re.search(r"\*\s+\S*:__rustc::__rust_alloc(\s|$)", line):
        allocs = sum(int(c.replace(",", "")) for c in re.findall(r"\(([\d,]+)x\)", "".join(block)))
        break
    else:
        block.append(line)
commit = share(r"sqlite3VdbeHalt|sqlite3PagerCommitPhaseOne")
commit_id = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root).stdout.strip()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
pct = lambda v: f"{100 * v / loaded:.1f} %" if loaded else "?"
lines = [
    f"## {now} — commit {commit_id} — instructions per call (callgrind)",
    "",
    f"Machine: {platform.machine()}, Linux {platform.release()}. `bash bench/instructions.sh`: Keel "
    f"(release, tracing and rollups on, full capture, plain profile) under callgrind, all threads; "
    f"{warmup} warm-up calls, then {calls} calls at concurrency 4 (keep-alive client outside valgrind, "
    f"{float(secs):.1f} s under valgrind), minus the same wait idle. Traces stored: {stored}; {n4:.1f} per batch while the calls were measured.",
    "",
    "| figure | value |",
    "|---|---:|",
    f"| instructions, {calls} calls | {loaded:,} |",
    f"| instructions, idle for as long | {idle:,} |",
    f"| **instructions per call** | **{per_call:,.0f}** |",
    f"| trace writer thread (inserts, rollups, commits) | {pct(writer)} ({writer / calls:,.0f} per call) |",
    f"| of which the trace rows (their inserts) | {pct(inserts)} ({inserts / calls:,.0f} per call) |",
    f"| of which the rollup rows | {pct(rollups)} ({rollups / calls:,.0f} per call) |",
    f"| request path: the chat handler (parse, route, upstream call, respond) | {pct(handler)} ({handler / calls:,.0f} per call) |",
    f"| of which routing and the upstream call (HTTP client, JSON decode) | {pct(upstream)} ({upstream / calls:,.0f} per call) |",
    f"| of which sending it and reading the answer's head (the HTTP client) | {pct(sending)} ({sending / calls:,.0f} per call) |",
    f"| the model-version watch (reads each new trace once, off the request path) | {pct(watch)} ({watch / calls:,.0f} per call) |",
    f"| everything else (hyper accept/IO, timers, other background tasks) | {pct(loaded - writer - handler - watch)} |",
    f"| of which moving the handler's future to the heap (axum's boxed route future: a memcpy) | {pct(boxed)} |",
    f"| SQLite statement compilation (`sqlite3Prepare`) | {pct(prepare)} |",
    f"| heap allocations per call, all threads (`__rust_alloc` calls / calls) | {allocs / calls:,.0f} |",
    f"| traces per batch: concurrency 4 / concurrency 1 (the second run) | {n4:.1f} / {n1:.1f} |",
    f"| writer per call at concurrency 1 | {serial_writer / calls:,.0f} |",
]
if per_trace is not None:
    lines += [
        f"| the writer's cost per trace / per batch (fitted from the two runs) | {per_trace:,.0f} / {per_batch:,.0f} |",
        f"| **instructions per call at {FIXED_BATCH} traces a batch** (the first run's, its writer share at that batch size) | **{per_call - writer / calls + per_trace + per_batch / FIXED_BATCH:,.0f}** |",
    ]
lines += [
    "",
    "Top functions by inclusive cost (callgrind_annotate, loaded dump):",
    "",
    "```",
]
lines += [f"{r[1]:5.1f} %  {r[2][:110]}" for r in rows[:25]]
lines += ["```", ""]
text = "\n".join(lines)
print(text)
if record != "--no-record":
    os.makedirs(os.path.join(root, "bench/profiles"), exist_ok=True)
    with open(os.path.join(root, "bench/profiles/instructions-plain.txt"), "w") as f:
        f.write(f"# {now}, commit {commit_id}: the 150 costliest functions by inclusive cost\n")
        f.write(f"# (callgrind_annotate --inclusive=yes) over {calls} calls, plain profile; paths shortened.\n")
        f.write(f"# Instructions per call: {per_call:,.0f}.\n\n")
        for n, p, name in rows[:150]:
            f.write(f"{n:>14,} {p:5.1f} %  {name}\n")
    with open(os.path.join(root, "bench/RESULTS.md"), "a") as f:
        f.write("\n" + text)
PY
