#!/usr/bin/env python3
"""Where the request path's heap allocations come from (issue 21, item 5).

Reads heaptrack's folded allocation stacks (`heaptrack_print --flamegraph-cost-type
allocations -F stacks.txt`, demangled with c++filt) and keeps the stacks that pass
through `alloc_count::Measured` -- the same allocations `GET /debug/allocations` counts
(the request's own thread while its handler runs). Each is put in one group by the
frames it passes through, then listed by its innermost frames.

Usage: allocation_sites.py STACKS CALLS   (CALLS: requests served while heaptrack ran)
"""
import collections
import re
import sys

# Legacy Rust mangling left by heaptrack's symbolizer (`_$LT$...$GT$..`).
ESCAPES = [("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$u7b$", "{"), ("$u7d$", "}"),
           ("$RF$", "&"), ("$BP$", "*"), ("$C$", ","), ("$u27$", "'"), ("$u5b$", "["),
           ("$u5d$", "]"), ("$u3b$", ";"), ("$u21$", "!"), ("$u3d$", "="), ("$u2b$", "+"),
           ("$LP$", "("), ("$RP$", ")")]
# Frames that say nothing about who asked for memory.
PLUMBING = re.compile(r"core::ptr|alloc::alloc|RawVec|raw_vec|__rust|malloc|CountingAllocator|"
                      r"alloc::boxed|alloc::vec|hashbrown::raw|alloc::string|Global|<alloc\[|"
                      r"core::ops::function|core::future::future|Pin<P>|alloc::sync|alloc::fmt|"
                      r"core::fmt|alloc_count")
# First match wins: the group of a stack.
GROUPS = [
    ("upstream HTTP client (keel-providers' client/ over hyper: the request and its headers, "
     "the pool checkout, the dispatch to the connection; reqwest until 2026-12-07)",
     re.compile(r"reqwest::|OpenAiProvider::(send|post)|keel_providers::client|hyper_util::client|"
                r"hyper::client")),
    ("JSON parsed into owned structs (the request, the upstream reply)", re.compile(r"serde_json::de|Deserialize for")),
    ("response built (JSON body, headers)", re.compile(r"handlers::common::(json_response|respond_whole|insert_header)|axum_core::body")),
    ("trace recorded (TraceRecord, the writer's queue)", re.compile(r"TraceRecord|TraceWriter|record_reply|captured_output")),
    ("request body read", re.compile(r"body::read_limited|http_body_util")),
]


def demangle(frame):
    for a, b in ESCAPES:
        frame = frame.replace(a, b)
    frame = re.sub(r"\.\.", "::", frame)
    frame = re.sub(r"::h[0-9a-f]{16}", "", frame)
    frame = re.sub(r"\[[0-9a-f]{16}\]", "", frame)
    return frame.strip().lstrip("_").strip()


def main():
    path, calls = sys.argv[1], int(sys.argv[2])
    groups, sites = collections.Counter(), collections.Counter()
    total = measured = 0
    for line in open(path, encoding="utf-8", errors="replace"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not count.isdigit():
            continue
        count = int(count)
        total += count
        frames = [demangle(f) for f in stack.split(";")]
        if not any("alloc_count::Measured" in f for f in frames):
            continue
        measured += count
        group = next((g for g, rx in GROUPS if any(rx.search(f) for f in frames)), "other")
        groups[group] += count
        inner = [f[:100] for f in frames if not PLUMBING.search(f)][-3:]
        sites[(group, " > ".join(inner))] += count
    print(f"allocations per call, all threads (heaptrack): {total / calls:.1f}")
    print(f"allocations per call on the request path (alloc_count::Measured): {measured / calls:.1f}\n")
    print("## By group (per call)\n")
    for g, c in groups.most_common():
        print(f"{c / calls:6.1f}  {g}")
    print("\n## Sites (per call, innermost frames; >= 0.5)\n")
    for (_, s), c in sites.most_common():
        if c / calls >= 0.5:
            print(f"{c / calls:6.1f}  {s}")


if __name__ == "__main__":
    main()
