"""Summarise a bench/run.sh run and append it to bench/RESULTS.md.

Reads oha's JSON for each (rate, target): p50/p99 latency and achieved throughput; compares Keel with the direct upstream as added latency and
ratio, and checks the trace store holds exactly one trace per request sent via Keel.
"""
import json
import datetime
import os
import platform
import sqlite3
import subprocess
import statistics
import sys


STREAM = os.environ.get("BENCH_API") == "stream"


def load(path):
    with open(path) as f:
        d = json.load(f)
    if STREAM:
        # stream_load's JSON: time to first byte and gaps between events, in ms.
        t, g = d["ttfb_ms"], d["gap_ms"]
        return dict(ok=d["ok"], errors=d["failed"] + (d["sent"] - d["ok"] - d["failed"]),
                    unanswered=d.get("unanswered", 0),
                    rps=d["achieved_rps"], p50=t["p50"], p99=t["p99"],
                    gap50=g["p50"], gap99=g["p99"], gap999=g["p999"], events=d["events_per_stream"])
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
    profile = sys.argv[4] if len(sys.argv) > 4 else "plain"
    endpoint = sys.argv[5] if len(sys.argv) > 5 else "/v1/chat/completions"
    profiles = {
        "plain": "Profile: plain (one model, no auth or limits).",
        "governed": "Profile: governed (virtual-key auth on every request, a hard budget per tenant, "
        "rpm/tpm limits per key, retries + a fallback + a circuit breaker; limits in-process).",
        "guarded": "Profile: guarded (a typical guardrail policy on the model: PII redaction with restore and "
        "injection detection on input, secrets blocked both ways, card numbers blocked on output).",
        "online": "Profile: online (plain + an online eval judging every call, sample_rate = 1.0, with "
        "not-is-refusal and word-count: sampling, the bounded queue and the judging pool writing scores).",
        "governed-redis": "Profile: governed-redis (as governed, with budgets and rate limits in Redis "
        "at 127.0.0.1:6379, atomic Lua scripts).",
        "plain-postgres": "Profile: plain-postgres (plain, with the store on PostgreSQL at 127.0.0.1:5432: "
        "the same batched writer, batches pipelined, one transaction each).",
    }
    runs = {}
    with open(os.path.join(work, "runs.tsv")) as f:
        for line in f:
            rate, target, rnd, n, start, end, *cpu = line.rstrip("\n").split("\t")
            cpu = float(cpu[0]) if cpu and cpu[0] else None
            runs.setdefault((int(rate), target), []).append((int(rnd), int(n), cpu))
    rows, sent_via_keel, rounds, unanswered = [], 0, 0, 0
    nginx_rows = []  # (rate, direct, nginx, keel) when nginx ran in the same rounds
    pg_rows = []  # (rate, direct, keel, keel-pg) when a Keel on PostgreSQL ran beside it
    cpu_lines = []  # per rate: each proxy's CPU per call (or per stream and event)
    sent_via_pg = 0
    for rate in sorted({r for r, _ in runs}):
        stats = {}
        for target in [t for t in ("direct", "nginx", "keel", "keel-pg") if (rate, t) in runs]:
            results = []
            for rnd, n, cpu in runs[(rate, target)]:
                results.append(load(os.path.join(work, f"{target}-{rate}-{rnd}.json")))
                # The proxy's CPU per call (or per stream), in µs: calls sent, not
                # completed, so a round that fell behind does not look cheaper.
                results[-1]["cpu_us"] = cpu * 1e6 / n if cpu is not None else None
                if target == "keel-pg":
                    sent_via_pg += n
                if target == "keel":
                    sent_via_keel += n
                    unanswered += results[-1].get("unanswered", 0)
            rounds = len(results)
            keys = ("rps", "p50", "p99") + (("gap50", "gap99", "gap999", "events") if STREAM else ())
            stats[target] = {key: statistics.median(r[key] for r in results) for key in keys}
            stats[target]["errors"] = sum(r["errors"] for r in results)
            stats[target]["p99_all"] = [r["p99"] for r in results]
            cpus = [r["cpu_us"] for r in results if r["cpu_us"] is not None]
            stats[target]["cpu_us"] = statistics.median(cpus) if cpus else None
        parts = []
        for target, name in (("nginx", "nginx"), ("keel", "Keel"), ("keel-pg", "Keel on PostgreSQL")):
            st = stats.get(target)
            if st and st["cpu_us"] is not None:
                per_event = f"{st['cpu_us'] / st['events']:.1f} µs an event" if st.get("events") else "no events"
                per = f"{st['cpu_us']:.0f} µs a stream, {per_event}" if STREAM else f"{st['cpu_us']:.1f} µs a call"
                parts.append(f"{name} {per}")
        if parts:
            cpu_lines.append(f"{rate} {'streams/s' if STREAM else 'rps'}: " + "; ".join(parts))
        rows.append((rate, stats["direct"], stats["keel"]))
        if "nginx" in stats:
            nginx_rows.append((rate, stats["direct"], stats["nginx"], stats["keel"]))
        if "keel-pg" in stats:
            pg_rows.append((rate, stats["direct"], stats["keel"], stats["keel-pg"]))
    store_url = os.environ.get("BENCH_STORE_URL")
    if store_url:
        # The store on PostgreSQL: counted with psql (no driver needed here).
        traces = int(subprocess.run(["psql", store_url, "-tAc", "select count(*) from traces"],
                                    capture_output=True, text=True, check=True).stdout.strip())
        db = None
    else:
        db = sqlite3.connect(os.path.join(work, "bench.db"))
        traces = db.execute("select count(*) from traces").fetchone()[0]
    judged = None
    if profile == "online" and db is not None:
        judged = db.execute("select count(distinct trace_id) from scores").fetchone()[0]
    if db is not None:
        db.close()

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"\n## {now} — commit {commit} — {profile}"
        + ("" if endpoint == "/v1/chat/completions" else f", {endpoint}")
        + (", streamed" if STREAM else "")
        + (f", worker_threads = {os.environ['BENCH_WORKER_THREADS']}"
           if os.environ.get("BENCH_WORKER_THREADS") else "") + "\n",
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()}. "
        "Load tool: oha (global fixed rate, latency correction). Keel: release build, tracing ON "
        f"({'PostgreSQL on this machine' if store_url else 'SQLite WAL'}, full capture). "
        "Upstream: `keel mock-provider` (16-token replies, no added latency). Client, Keel and mock share the machine. "
        f"Each figure is the median of {rounds} interleaved rounds per rate. {profiles.get(profile, profile)} "
        f"Endpoint: `POST {endpoint}` on both.\n",
        "| target rps | direct achieved rps | Keel achieved rps | direct p50 ms | Keel p50 ms | direct p99 ms | Keel p99 ms | added p50 ms | added p99 ms | p99 ratio | errors direct/Keel |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if STREAM:
        lines[1] = lines[1].replace("(16-token replies, no added latency)", "(streams of "
                                    f"{rows[0][1]['events']:.0f} events: 64 content events of 4 tokens "
                                    f"{os.environ.get('BENCH_CHUNK_DELAY_MS', '1')} ms apart, role, finish, usage, [DONE])")
        lines[1] = lines[1].replace("Load tool: oha (global fixed rate, latency correction)",
                                    "Load tool: stream_load (open loop, streams started at a fixed rate; "
                                    "time to first byte from each stream's scheduled start)")
        lines[2:] = [
            "| streams/s | direct achieved | Keel achieved | direct TTFB p50 ms | Keel TTFB p50 ms | direct TTFB p99 ms "
            "| Keel TTFB p99 ms | added TTFB p99 ms | direct gap p99 ms | Keel gap p99 ms | added gap p99 ms "
            "| direct / Keel gap p99.9 ms | errors direct/Keel |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for rate, d, k in rows:
            lines.append(
                f"| {rate} | {d['rps']:.0f} | {k['rps']:.0f} | {d['p50']:.2f} | {k['p50']:.2f} | {d['p99']:.2f} "
                f"| {k['p99']:.2f} | {k['p99'] - d['p99']:+.2f} | {d['gap99']:.3f} | {k['gap99']:.3f} "
                f"| {k['gap99'] - d['gap99']:+.3f} | {d['gap999']:.3f} / {k['gap999']:.3f} | {d['errors']}/{k['errors']} |"
            )
        rows_for_p99 = []
    else:
        rows_for_p99 = rows
    for rate, d, k in rows_for_p99:
        lines.append(
            f"| {rate} | {d['rps']:.0f} | {k['rps']:.0f} | {d['p50']:.2f} | {k['p50']:.2f} | {d['p99']:.2f} | {k['p99']:.2f} "
            f"| {k['p50'] - d['p50']:+.2f} | {k['p99'] - d['p99']:+.2f} | {k['p99'] / d['p99']:.2f} | {d['errors']}/{k['errors']} |"
        )
    lines.append("\nPer-round " + ("TTFB " if STREAM else "") + "p99 (ms), direct | Keel: " + "; ".join(
        f"{rate} rps: {', '.join(f'{v:.2f}' for v in d['p99_all'])} | {', '.join(f'{v:.2f}' for v in k['p99_all'])}"
        for rate, d, k in rows))
    # A request refused before it reached the pipeline (past max_connections) has no
    # trace; stream_load counts those apart (no response at all).
    complete = sent_via_keel - unanswered <= traces <= sent_via_keel
    if nginx_rows and STREAM:
        lines += [
            "\nThe same rounds through nginx (`proxy_pass` with keep-alive to the same mock, `proxy_buffering off`: "
            "each event passed on as it comes): the thinnest real proxy hop, for reference.\n",
            "| streams/s | nginx achieved | nginx added TTFB p50 ms | nginx added TTFB p99 ms | Keel added TTFB p99 ms "
            "| nginx added gap p99 ms | Keel added gap p99 ms | errors nginx/Keel |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for rate, d, n, k in nginx_rows:
            lines.append(
                f"| {rate} | {n['rps']:.0f} | {n['p50'] - d['p50']:+.2f} | {n['p99'] - d['p99']:+.2f} "
                f"| {k['p99'] - d['p99']:+.2f} | {n['gap99'] - d['gap99']:+.3f} | {k['gap99'] - d['gap99']:+.3f} "
                f"| {n['errors']}/{k['errors']} |"
            )
        lines.append("\nPer-round TTFB p99 (ms), nginx: " + "; ".join(
            f"{rate} streams/s: {', '.join(f'{v:.2f}' for v in n['p99_all'])}" for rate, d, n, k in nginx_rows))
    elif nginx_rows:
        lines += [
            "\nThe same rounds through nginx (`proxy_pass` with keep-alive to the same mock, no buffering): "
            "the thinnest real proxy hop, for reference.\n",
            "| target rps | nginx achieved rps | nginx added p50 ms | nginx added p99 ms | Keel added p50 ms "
            "| Keel added p99 ms | Keel p99 − nginx p99 ms | errors nginx/Keel |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for rate, d, n, k in nginx_rows:
            lines.append(
                f"| {rate} | {n['rps']:.0f} | {n['p50'] - d['p50']:+.2f} | {n['p99'] - d['p99']:+.2f} "
                f"| {k['p50'] - d['p50']:+.2f} | {k['p99'] - d['p99']:+.2f} | {k['p99'] - n['p99']:+.2f} "
                f"| {n['errors']}/{k['errors']} |"
            )
    if cpu_lines:
        lines.append("\nCPU used by the proxy process (user + system, all threads and worker processes, read "
                     "before and 0.3 s after each round; median of the rounds) per " + ("stream sent" if STREAM else "call sent")
                     + " — a figure the VM's latency swings do not move much: " + " · ".join(cpu_lines))
    pg_complete = True
    if pg_rows:
        pg_traces = int(subprocess.run(["psql", os.environ["BENCH_PG_STORE_URL"], "-tAc", "select count(*) from traces"],
                                       capture_output=True, text=True, check=True).stdout.strip())
        pg_complete = pg_traces == sent_via_pg
        lines += [
            "\nThe same rounds through a second Keel, its store on PostgreSQL (127.0.0.1:5432, same machine; "
            "`BENCH_STORE=both`): the two stores compared on the same minutes of the VM.\n",
            "| target rps | Keel-PG achieved rps | SQLite added p50 ms | PostgreSQL added p50 ms "
            "| SQLite added p99 ms | PostgreSQL added p99 ms | PostgreSQL p99 − SQLite p99 ms | errors SQLite/PostgreSQL |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for rate, d, k, g in pg_rows:
            lines.append(
                f"| {rate} | {g['rps']:.0f} | {k['p50'] - d['p50']:+.2f} | {g['p50'] - d['p50']:+.2f} "
                f"| {k['p99'] - d['p99']:+.2f} | {g['p99'] - d['p99']:+.2f} | {g['p99'] - k['p99']:+.2f} "
                f"| {k['errors']}/{g['errors']} |"
            )
        lines.append("\nPer-round p99 (ms), Keel on PostgreSQL: " + "; ".join(
            f"{rate} rps: {', '.join(f'{v:.2f}' for v in g['p99_all'])}" for rate, d, k, g in pg_rows))
        lines.append(f"\nTraces on PostgreSQL: {sent_via_pg} requests sent, {pg_traces} traces stored — "
                     f"{'OK' if pg_complete else 'MISMATCH'} ({max(sent_via_pg - pg_traces, 0)} lost).")
    verdict = "OK" if complete else "MISMATCH"
    refused = f"; {unanswered} never answered (refused at the connection), so not traced" if unanswered else ""
    lines.append(f"\nTraces: {sent_via_keel} requests sent through Keel, {traces} traces stored{refused} — {verdict} "
                 f"({max(sent_via_keel - unanswered - traces, 0)} lost).\n")
    if judged is not None:
        lines.append(f"Online eval: {judged} of {traces} calls judged and scored; the rest were dropped "
                     "at the full queue (counted) or still queued at shutdown (counted as skipped).\n")
    text = "\n".join(lines) + "\n"
    print(text)
    new = not os.path.exists(results_md)
    with open(results_md, "a") as f:
        if new:
            f.write("# Benchmark results\n\nAppended by `bash bench/run.sh`. Each run measures direct-to-upstream and "
                    "through-Keel in the same run, at fixed request rates.\n")
        f.write(text)
    if not (complete and pg_complete):
        sys.exit(1)


if __name__ == "__main__":
    main()
