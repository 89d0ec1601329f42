#!/usr/bin/env python3
"""How long a Keel's request threads wait for a core, and who held it.

Reads `perf sched timehist` output (one line per task switched out: time, cpu,
task[tid/pid], wait time, scheduling delay, run time) on stdin. For the threads of
process PID whose name starts with PREFIX (by default `tokio-rt-worker`, tokio's
request workers) it prints the scheduling delay's distribution (from wake-up to running) and, for delays
over 0.1 ms, which tasks ran on that core just before the worker got it. Then the CPU
time of every task group over the recording, so the extra work of one store shows.

Usage: perf sched timehist -i perf.data | python3 bench/sched_delay.py PID [PREFIX]
A diagnostic for bench/context_switches.sh (SCHED=1); prints, records nothing.
"""

import re
import sys
from collections import defaultdict

LINE = re.compile(
    r"^\s*(?P<t>\d+\.\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<task>.+?)\s+"
    r"(?P<wait>\d+\.\d+)\s+(?P<delay>\d+\.\d+)\s+(?P<run>\d+\.\d+)\s*$"
)
TASK = re.compile(r"^(?P<comm>.*)\[(?P<tid>\d+)(?:/(?P<pid>\d+))?\]$")


def group(comm: str) -> str:
    """All of PostgreSQL's processes under one name; any other task under its own."""
    if comm.startswith("postgres"):
        return "postgres (server)"
    return comm


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))
    return sorted_values[i]


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: perf sched timehist -i FILE | sched_delay.py PID [PREFIX]")
    pid = sys.argv[1]
    prefix = sys.argv[2] if len(sys.argv) > 2 else "tokio-rt-worker"
    before = {}  # cpu -> the group name of the task that last ran there
    delays = []
    blamed = defaultdict(float)  # group of the task that ran before a delayed worker
    cpu_ms = defaultdict(float)
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        t = TASK.match(m["task"])
        if not t:
            continue
        comm, owner = t["comm"], t["pid"] or t["tid"]
        mine = owner == pid
        name = group(comm) + (" (this keel)" if mine else "")
        cpu_ms[name] += float(m["run"])
        delay = float(m["delay"])
        if mine and comm.startswith(prefix):
            delays.append(delay)
            if delay > 0.1 and m["cpu"] in before:
                blamed[before[m["cpu"]]] += delay
        before[m["cpu"]] = name
    delays.sort()
    n = len(delays)
    print(
        f"  {prefix}* of pid {pid}: {n} runs; scheduling delay ms p50 {percentile(delays, 0.5):.3f}"
        f" p99 {percentile(delays, 0.99):.3f} p99.9 {percentile(delays, 0.999):.3f}"
        f" max {delays[-1] if delays else 0:.3f}; runs delayed > 0.1 ms: {sum(d > 0.1 for d in delays)}"
    )
    top = sorted(blamed.items(), key=lambda kv: -kv[1])[:6]
    print("  ran before a delayed run (ms of delay): " + ", ".join(f"{k} {v:.1f}" for k, v in top))
    busy = sorted(cpu_ms.items(), key=lambda kv: -kv[1])[:8]
    print("  CPU ms over the recording: " + ", ".join(f"{k} {v:.0f}" for k, v in busy))


if __name__ == "__main__":
    main()
