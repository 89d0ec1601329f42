#!/usr/bin/env bash
# Dashboard at scale: the overview and filtered trace searches on a store of COUNT
# generated traces (default 10,000,000, spread over 30 days).
#
# Builds Keel in release mode, generates the traces straight into a fresh SQLite store
# with `keel dev gen-traces` (the writer's own insert, so the rollups are built as in
# production), starts `keel serve` on that store, and times each page with curl
# (time_total): the first fetch (cold) and then RUNS more (median and max). Appends the
# figures to bench/RESULTS.md with the date, commit and machine, and prints them. It also
# times `keel dev rebuild-rollups` (migration 0015's backfill) on the generated store. The
# store is deleted afterwards (KEEP_STORE=1 keeps it; BENCH_DIR picks where it goes,
# default /tmp; the 10M store takes about 9 GB, checked against free space first).
#
# BENCH_STORE=postgres puts the store in a database of its own on the server at
# 127.0.0.1:5432 (user postgres; BENCH_PG overrides the server URL without a database),
# created for the run and dropped after (KEEP_STORE=1 keeps it).
#
# Usage: bash bench/dashboard_scale.sh [COUNT]
#        RUNS=9 KEEP_STORE=1 BENCH_DIR=/tmp bash bench/dashboard_scale.sh 1000000
#        BENCH_STORE=postgres bash bench/dashboard_scale.sh
#
# REUSE_STORE=<path or postgres URL> times the pages on a store an earlier KEEP_STORE=1
# run left (generation and the rollup rebuild are skipped; the store is kept), so a
# change can be measured before and after on the same data.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COUNT=${1:-10000000}
RUNS=${RUNS:-7}
BENCH_DIR=${BENCH_DIR:-/tmp}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
STORE_KIND=${BENCH_STORE:-sqlite}
case "$STORE_KIND" in sqlite|postgres) ;; *) echo "BENCH_STORE must be sqlite or postgres (got $STORE_KIND)" >&2; exit 2;; esac
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
PGDB="keel_bench_scale_$$"
export PATH="$HOME/.cargo/bin:$PATH"

# About 1 KB per trace with its indexes, WAL and rollups, plus a margin.
need_kb=$(( COUNT + 2 * 1024 * 1024 ))
free_kb=$(df -Pk "$BENCH_DIR" | awk 'NR==2 {print $4}')
if [ "$free_kb" -lt "$need_kb" ]; then
  echo "not enough space in $BENCH_DIR: $((free_kb / 1024)) MB free, need about $((need_kb / 1024)) MB" >&2
  exit 2
fi

# The commit measured: the one built now (the tree may move on while the run goes).
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cargo build --release -p keel-cli
KEEL=$TARGET/release/keel

WORK=$(mktemp -d "$BENCH_DIR/keel-scale.XXXXXX")
KEEL_PID=
cleanup() {
  if [ -n "$KEEL_PID" ]; then kill "$KEEL_PID" 2>/dev/null || true; wait "$KEEL_PID" 2>/dev/null || true; fi
  if [ "${KEEP_STORE:-0}" = 1 ]; then
    echo "store kept in $STORE"
  else
    rm -rf "$WORK"
    if [ "$STORE_KIND" = postgres ]; then
      psql "$PG/test" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
  fi
}
trap cleanup EXIT

if [ -n "${REUSE_STORE:-}" ]; then
  STORE=$REUSE_STORE
  KEEP_STORE=1
  case "$STORE" in postgres://*|postgresql://*) STORE_KIND=postgres; PGDB=${STORE##*/}; PGDB=${PGDB%%\?*} ;; *) STORE_KIND=sqlite ;; esac
elif [ "$STORE_KIND" = postgres ]; then
  psql "$PG/test" -qc "CREATE DATABASE $PGDB" >/dev/null
  STORE="$PG/$PGDB"
else
  STORE="$WORK/scale.db"
fi

if [ -n "${REUSE_STORE:-}" ]; then
  echo "reusing the store $STORE"
  gen_secs="(reused)"
else
  echo "generating $COUNT traces into $STORE"
  gen_start=$(date +%s.%N)
  "$KEEL" dev gen-traces --store "$STORE" --count "$COUNT" --days 30
  gen_secs=$(python3 -c "print(round($(date +%s.%N) - $gen_start, 1))")
fi
if [ "$STORE_KIND" = postgres ]; then
  store_size=$(psql "$PG/test" -tAc "SELECT pg_size_pretty(pg_database_size('$PGDB'))")
else
  # Fold the WAL into the database so the size below is the store's.
  python3 - "$STORE" <<'PY'
import sqlite3, sys
sqlite3.connect(sys.argv[1]).execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
  store_size=$(du -sh "$STORE" | cut -f1)
fi
# What migration 0015's backfill costs on a store this size (the same code).
if [ -n "${REUSE_STORE:-}" ]; then
  rebuild_secs="(not rerun)"
else
  rebuild_start=$(date +%s.%N)
  "$KEEL" dev rebuild-rollups --store "$STORE"
  rebuild_secs=$(python3 -c "print(round($(date +%s.%N) - $rebuild_start, 1))")
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/keel.toml" <<TOML
[gateway]
listen = "127.0.0.1:$PORT"
store = "$STORE"

[providers.local]
kind = "mock"

[models.mock-1]
provider = "local"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
TOML
open_start=$(date +%s.%N)
"$KEEL" serve --config "$WORK/keel.toml" > "$WORK/serve.log" 2>&1 &
KEEL_PID=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 "$KEEL_PID" 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
  sleep 0.1
done
open_secs=$(python3 -c "print(round($(date +%s.%N) - $open_start, 1))")

PAGES=(
  "/"
  "/?since=1h"
  "/?since=24h"
  "/?since=7d"
  "/?since=30d"
  "/ui/functions"
  "/ui/functions?since=7d"
  "/ui/traces"
  "/ui/traces?tenant=tenant-07&status=error&since=7d"
  "/ui/traces?user=user-00-123"
  "/ui/traces?model=claude-sonnet&feature=search"
  "/ui/traces?function=support-answer&variant=candidate&since=24h"
  "/ui/traces?origin=eval&error_class=upstream_timeout"
  "/ui/traces?status=client_disconnected&tenant=tenant-12"
  "/ui/traces?min_latency=5000&since=24h"
  "/ui/traces?min_cost=0.05&max_latency=800&since=7d"
  "/ui/traces?tenant=tenant-00&page=20"
  "/ui/traces?min_cost=5"
)
: > "$WORK/times.tsv"
for path in "${PAGES[@]}"; do
  for run in $(seq 0 "$RUNS"); do
    out=$(curl -s -o "$WORK/body.html" -w '%{http_code} %{time_total}' "http://127.0.0.1:$PORT$path")
    code=${out% *}
    [ "$code" = 200 ] || { echo "GET $path: HTTP $code" >&2; head -c 500 "$WORK/body.html" >&2; exit 1; }
    matches=$(grep -o 'data-count="[0-9]*"' "$WORK/body.html" | grep -o '[0-9]*' || echo "-")
    stopped=$(grep -q 'id="search-stopped"' "$WORK/body.html" && echo yes || echo no)
    printf '%s\t%s\t%s\t%s\t%s\n' "$path" "$run" "${out#* }" "$matches" "$stopped" >> "$WORK/times.tsv"
  done
done
requests_24h=$(curl -s "http://127.0.0.1:$PORT/?since=24h" | python3 -c 'import re,sys; m=re.search(r"label\">requests</div><div class=\"value\">(\d+)", sys.stdin.read()); print(m.group(1) if m else "?")')

python3 - "$WORK/times.tsv" "$ROOT/bench/RESULTS.md" "$COMMIT" \
  "$COUNT" "$gen_secs" "$store_size" "$open_secs" "$requests_24h" "$RUNS" "$rebuild_secs" "$STORE_KIND" <<'PY'
import datetime, os, statistics, sys
tsv, results, commit, count, gen_secs, size, open_secs, req24, runs, rebuild_secs, kind = sys.argv[1:]
rows = {}
order = []
for line in open(tsv):
    path, run, secs, matches, stopped = line.rstrip("\n").split("\t")
    if path not in rows:
        rows[path] = {"cold": None, "warm": [], "matches": matches, "stopped": stopped}
        order.append(path)
    ms = float(secs) * 1000
    if run == "0":
        rows[path]["cold"] = ms
    else:
        rows[path]["warm"].append(ms)
        rows[path]["stopped"] = "yes" if "yes" in (rows[path]["stopped"], stopped) else "no"
mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
label = "dashboard at scale" + (" on PostgreSQL" if kind == "postgres" else "")
backend = "PostgreSQL 127.0.0.1:5432, same machine" if kind == "postgres" else "SQLite"
out = [f"## {now} — commit {commit} — {label}", ""]
out.append(
    f"Machine: {os.cpu_count()} cores ({cpu}), {mem_kb / 1048576:.1f} GiB RAM, {os.uname().sysname} {os.uname().release}. "
    f"Store: {backend}, {int(count):,} generated traces over 30 days (`keel dev gen-traces`: {gen_secs} s, {size} on disk; "
    f"{req24} live requests in the last 24 h; rebuilding every rollup from the traces, as migration 0015 does: {rebuild_secs} s). "
    f"`keel serve` up in {open_secs} s. Times: curl time_total on loopback, "
    f"first fetch (cold) then {runs} more (median, max)."
)
out += ["", "| page | traces shown | search stopped | cold ms | median ms | max ms |", "|---|---:|:---:|---:|---:|---:|"]
for p in order:
    r = rows[p]
    out.append(
        f"| `{p}` | {r['matches'] if r['matches'] != '-' else '—'} | {r['stopped'] if r['matches'] != '-' else '—'} | {r['cold']:.1f} | "
        f"{statistics.median(r['warm']):.1f} | {max(r['warm']):.1f} |"
    )
text = "\n".join(out) + "\n"
with open(results, "a") as f:
    f.write("\n\n" + text)
print(text)
PY
