#!/usr/bin/env bash
# Where Keel's CPU goes at a fixed rate: a sampling profile of `keel serve` (release)
# while oha drives it, for the plain or the governed-redis profile of bench/run.sh.
#
# perf samples the CPU clock (this VM has no hardware counters) of the gateway process
# only, every thread, at 999 Hz, for the timed run; the report is flat (self time per
# function, grouped by binary: the kernel, keel, libc), because the release build has no
# frame pointers for call graphs. The kernel's stacks do unwind (`-g`): its share is
# broken down by the system call that entered it, and by how much of that went to
# waking another thread or to the loopback receiver's TCP input. It also reads the
# process's CPU time from /proc before and after, so the summary says how many
# microseconds of CPU one call costs. Written to bench/profiles/cpu-PROFILE-RATE.txt
# with the date, machine and commit.
#
# It also sums the keel binary's self time by crate. PERF_DWARF=1 unwinds user space
# from DWARF too and adds each Keel function's inclusive share; PERF_KEEP=FILE keeps
# perf.data (for `perf script` / `perf report` after).
#
# Usage: bash bench/cpu_profile.sh [plain|governed-redis] [RATE] [SECONDS]
#        (defaults: plain 5000 10; needs perf: apt-get install linux-perf)
set -euo pipefail
# A relative PERF_KEEP is the caller's, not the repository's.
if [ -n "${PERF_KEEP:-}" ]; then PERF_KEEP=$(realpath -m "$PERF_KEEP"); fi
cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=${1:-plain}
RATE=${2:-5000}
SECS=${3:-10}
case "$PROFILE" in plain|governed-redis) ;; *) echo "PROFILE must be plain or governed-redis (got $PROFILE)"; exit 2;; esac
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)"; exit 2; }
source "$ROOT/bench/lib.sh"
ensure_oha
build_keel
WORK=$(mktemp -d)
# PERF_DWARF=1: unwind user space from DWARF (the release build carries debug info), so
# the summary can also say the inclusive share of each Keel function (~10x the data).
if [ "${PERF_DWARF:-0}" = 1 ]; then CALL_GRAPH=(--call-graph dwarf,16384); else CALL_GRAPH=(-g); fi
REDIS_PREFIX="keel-profile-$$:"
MOCK_PORT=$(free_port)
KEEL_PORT=$(free_port)
plain_config "$KEEL_PORT" "$MOCK_PORT" "$WORK/bench.db" > "$WORK/keel.toml"
AUTH=()
if [ "$PROFILE" = governed-redis ]; then
  governed_config redis "$REDIS_PREFIX" >> "$WORK/keel.toml"
  KEY=$("$KEEL" keys create --config "$WORK/keel.toml" --tenant bench --reason profile --json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  AUTH=(-H "authorization: Bearer $KEY")
fi
cleanup() {
  kill "${KEEL_PID:-}" "${MOCK_PID:-}" 2>/dev/null || true
  if [ "$PROFILE" = governed-redis ]; then
    redis-cli --scan --pattern "${REDIS_PREFIX}*" | xargs -r -d '\n' redis-cli del >/dev/null || true
  fi
  if [ -n "${PERF_KEEP:-}" ] && [ -f "$WORK/perf.data" ]; then
    cp "$WORK/perf.data" "$PERF_KEEP" || echo "cannot keep perf.data at $PERF_KEEP" >&2
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
start_mock
KEEL_LOG=warn "$KEEL" serve --config "$WORK/keel.toml" > "$WORK/keel.log" 2>&1 &
KEEL_PID=$!
wait_healthy 100 "http://127.0.0.1:$MOCK_PORT/health" "http://127.0.0.1:$KEEL_PORT/health"
BODY='{"model":"bench-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}'
echo "$BODY" > "$WORK/body.json"
drive() { # $1 = calls, $2 = rate
  oha -n "$1" -c 64 -q "$2" --latency-correction --no-tui -m POST -H 'content-type: application/json' \
      "${AUTH[@]}" -D "$WORK/body.json" --output-format json \
      "http://127.0.0.1:$KEEL_PORT/v1/chat/completions"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$KEEL_PID/stat"; }
echo "warming up..." >&2
drive 2000 2000 > /dev/null
echo "profiling $PROFILE at $RATE rps for $SECS s..." >&2
T0=$(cpu_ticks)
perf record -e cpu-clock -F 999 "${CALL_GRAPH[@]}" -p "$KEEL_PID" -o "$WORK/perf.data" -- sleep $((SECS + 1)) 2> "$WORK/perf.log" &
PERF_PID=$!
sleep 0.5
drive $((RATE * SECS)) "$RATE" > "$WORK/oha.json"
T1=$(cpu_ticks)
wait "$PERF_PID" || true
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2> /dev/null | grep '%' | grep -v '^#' > "$WORK/dso.txt" || true
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2> /dev/null | grep '%' | grep -v '^#' | head -60 > "$WORK/symbols.txt" || true
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2> /dev/null | grep '%' | grep -v '^#' > "$WORK/all_symbols.txt" || true
perf script -i "$WORK/perf.data" -F ip,sym,dso 2> /dev/null > "$WORK/stacks.txt" || true
: > "$WORK/children.txt"
if [ "${PERF_DWARF:-0}" = 1 ]; then
  perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none --dsos keel 2> /dev/null \
    | grep '%' | grep -v '^#' | head -80 > "$WORK/children.txt" || true
fi

OUT="$ROOT/bench/profiles/cpu-$PROFILE-$RATE.txt"
python3 - "$WORK" "$T0" "$T1" "$((RATE * SECS))" "$PROFILE" "$RATE" "$OUT" "${PERF_DWARF:-0}" <<'PY'
import datetime, json, os, platform, subprocess, sys
work, t0, t1, calls, profile, rate, out, dwarf = sys.argv[1:]


def kernel_by_syscall(path):
    """The kernel's samples by the system call that entered it (the outermost
    `__x64_sys_*` / `__do_sys_*` frame; none: an interrupt or a fault), and the part of
    each spent waking another thread (`try_to_wake_up`) or in the loopback receiver's
    TCP input (`tcp_v4_rcv`, run by the sender's `writev`, waking the reader included).
    Rust's std and parking_lot enter futex through libc's generic `syscall()`: a sample
    taken on that way in or out has no `sys_futex` frame and is counted as futex."""
    import collections, re
    total, kernel = 0, collections.Counter()
    wakes, peer = collections.Counter(), collections.Counter()
    for sample in open(path).read().split("\n\n"):
        frames = [l.split(None, 1)[1] if " " in l.strip() else l for l in sample.strip().splitlines()]
        if not frames:
            continue
        total += 1
        if "kernel.kallsyms" not in frames[0]:
            continue
        call = None
        for f in frames:
            m = re.search(r"__(?:x64|do)_sys_(\w+)", f)
            if m:
                call = m.group(1)
        stack = " ".join(frames)
        if call in ("write", None) and "eventfd_write" in stack:
            call = "write to an eventfd (waking the worker that waits in epoll_wait)"
        elif call is None and "page_fault" in stack:
            call = "(page fault)"
        elif call is None and ("asm_sysvec" in stack or "asm_common_interrupt" in stack):
            call = "(interrupt)"
        elif call is None:
            # Sampled on the way in or out (no `sys_*` frame): the libc wrapper names it.
            user = [f for f in frames if "kernel.kallsyms" not in f]
            name = user[0].split(" (")[0] if user else ""
            call = re.sub(r"^(__GI___|__libc_|__)+(libc_)?", "", name) or "(other)"
            if call == "syscall":
                call = "futex"
        kernel[call] += 1
        wakes[call] += "try_to_wake_up" in stack
        peer[call] += "tcp_v4_rcv" in stack
    if not total or not kernel:
        return []
    pct = lambda n: f"{100 * n / total:5.1f} %"
    lines = ["", "## Kernel time by system call (share of all samples)", ""]
    for call, n in kernel.most_common(12):
        extra = []
        if 1000 * wakes[call] >= total:
            extra.append(f"waking another thread {pct(wakes[call]).strip()}")
        if 1000 * peer[call] >= total:
            extra.append(f"the loopback receiver's TCP input {pct(peer[call]).strip()}")
        lines.append(f"{pct(n)}  {call}" + (f"  ({'; '.join(extra)})" if extra else ""))
    return lines

def by_crate(path):
    """Self time in the keel binary summed by the crate of each function (the first path
    segment of its demangled name; `<T as Trait>` names count for T's crate): where the
    user-space time goes when no single function stands out."""
    import collections, re
    crates = collections.Counter()
    for line in open(path):
        m = re.match(r"\s*([\d.]+)%\s+keel\s+\[\.\]\s+(.*?)(\s+-\s+-)?\s*$", line)
        if not m:
            continue
        name = m.group(2).lstrip("<&*( ").removeprefix("mut ").removeprefix("dyn ")
        crate = re.split(r"::|<|\s", name, maxsplit=1)[0] or "?"
        if crate.startswith(("mi_", "_mi_")):
            crate = "mimalloc"
        elif crate.startswith("sqlite3"):
            crate = "sqlite"
        crates[crate] += float(m.group(1))
    if not crates:
        return []
    return ["", "## Self time in the keel binary, by crate (share of all samples)", ""] + [
        f"{v:6.2f} %  {k}" for k, v in crates.most_common(25)]


def children(path):
    lines = [" ".join(l.split()) for l in open(path)]
    if not lines:
        return []
    return ["", "## Inclusive time of Keel's functions (children included; share of all samples)",
            ""] + lines


hz = os.sysconf("SC_CLK_TCK")
cpu_s = (int(t1) - int(t0)) / hz
d = json.load(open(os.path.join(work, "oha.json")))
lat = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution") or {}
ok = int(codes.get("200", 0))
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
lines = [
    f"# {now}, commit {commit}: `bash bench/cpu_profile.sh {profile} {rate}` on {os.cpu_count()} cores, "
    f"Linux {platform.release()}",
    f"# {calls} calls at {rate} rps (oha, 64 connections; the mock and oha on the same machine): "
    f"{ok} answered 200, p50 {lat['p50'] * 1000:.2f} ms, p99 {lat['p99'] * 1000:.2f} ms.",
    f"# keel serve used {cpu_s:.2f} s of CPU: {cpu_s / int(calls) * 1e6:.0f} µs per call "
    f"({cpu_s / (int(calls) / int(rate)):.2f} cores).",
    ("# perf record -e cpu-clock -F 999 --call-graph dwarf (self time, and the inclusive time of "
     "Keel's functions below)." if dwarf == "1" else
     "# perf record -e cpu-clock -F 999 -g (self time; flat in user space: no frame pointers in the\n"
     "# release build; the kernel's stacks unwind)."),
    "",
    "## By binary",
    "",
] + [l.rstrip() for l in open(os.path.join(work, "dso.txt"))] + kernel_by_syscall(
    os.path.join(work, "stacks.txt")) + [
    "",
    "## Top functions (self)",
    "",
] + [" ".join(l.split()) for l in open(os.path.join(work, "symbols.txt"))] + by_crate(
    os.path.join(work, "all_symbols.txt")) + children(os.path.join(work, "children.txt"))
os.makedirs(os.path.dirname(out), exist_ok=True)
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines[:30]))
print(f"written to {out}")
PY
