"""Summarise a bench/run.sh run and append it to bench/RESULTS.md.

Reads oha's JSON for each (rate, target): p50/p99 latency and achieved throughput; compares Keel with the direct upstream as added latency and
ratio, and checks the trace store holds exactly one trace per request sent via Keel.
"""
import json
import datetime
import os
import platform
import sqlite3
import sys


def load(path):
    with open(path) as f:
        d = json.load(f)
    codes = d.get("statusCodeDistribution") or {}
    ok = int(codes.get("200", 0))
    errors = sum(int(v) for k, v in codes.items() if k != "200") + sum(int(v) for v in (d.get("errorDistribution") or {}).values())
    lat = d["latencyPercentiles"]
    return dict(ok=ok, errors=errors, rps=d["summary"]["requestsPerSec"],
                p50=(lat.get("p50") or 0) * 1000.0, p99=(lat.get("p99") or 0) * 1000.0)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    work, results_md, commit = sys.argv[1], sys.argv[2], sys.argv[3]
    runs = {}
    with open(os.path.join(work, "runs.tsv")) as f:
        for line in f:
            rate, target, n, start, end = line.split("\t")
            runs[(int(rate), target)] = (int(n), float(end) - float(start))
    rows, sent_via_keel = [], 0
    for rate in sorted({r for r, _ in runs}):
        stats = {}
        for target in ("direct", "keel"):
            n, secs = runs[(rate, target)]
            r = load(os.path.join(work, f"{target}-{rate}.json"))
            stats[target] = dict(n=n, **r)
            if target == "keel":
                sent_via_keel += n
        d, k = stats["direct"], stats["keel"]
        rows.append((rate, d, k))
    db = sqlite3.connect(os.path.join(work, "bench.db"))
    traces = db.execute("select count(*) from traces").fetchone()[0]
    db.close()

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"\n## {now} — commit {commit}\n",
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()}. "
        "Load tool: oha (global fixed rate, latency correction). Keel: release build, tracing ON (SQLite WAL, full capture). "
        "Upstream: `keel mock-provider` (16-token replies, no added latency). Client, Keel and mock share the machine.\n",
        "| target rps | direct achieved rps | Keel achieved rps | direct p50 ms | Keel p50 ms | direct p99 ms | Keel p99 ms | added p50 ms | added p99 ms | p99 ratio | errors direct/Keel |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate, d, k in rows:
        lines.append(
            f"| {rate} | {d['rps']:.0f} | {k['rps']:.0f} | {d['p50']:.2f} | {k['p50']:.2f} | {d['p99']:.2f} | {k['p99']:.2f} "
            f"| {k['p50'] - d['p50']:+.2f} | {k['p99'] - d['p99']:+.2f} | {k['p99'] / d['p99']:.2f} | {d['errors']}/{k['errors']} |"
        )
    verdict = "OK" if traces == sent_via_keel else "MISMATCH"
    lines.append(f"\nTraces: {sent_via_keel} requests sent through Keel, {traces} traces stored — {verdict} "
                 f"({sent_via_keel - traces} lost).\n")
    text = "\n".join(lines) + "\n"
    print(text)
    new = not os.path.exists(results_md)
    with open(results_md, "a") as f:
        if new:
            f.write("# Benchmark results\n\nAppended by `bash bench/run.sh`. Each run measures direct-to-upstream and "
                    "through-Keel in the same run, at fixed request rates.\n")
        f.write(text)
    if traces != sent_via_keel:
        sys.exit(1)


if __name__ == "__main__":
    main()
