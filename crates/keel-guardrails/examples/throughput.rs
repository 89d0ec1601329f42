#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Throughput of the full detector stack on realistic mixed text: `scan` (all kinds),
//! `injection` and a `TermMatcher` with 50 terms and 2 regexes, plus redaction of what was
//! found. Run with `cargo run --release -p keel-guardrails --example throughput [KB]`.

use keel_guardrails::{injection, scan, Kind, Redaction, TermMatcher};
use std::hint::black_box;
use std::time::Instant;

const PARAGRAPHS: &[&str] = &[
    "Hi team, the customer Jane Miller (jane.miller@example.com, +44 20 7946 0958) reports that her \
     order 4412-9983 from 2024-01-15 never arrived. She paid with card 4111 1111 1111 1111.\n",
    "Could you summarise the previous chapter in three sentences? Focus on the economic causes of the \
     crisis and the policy response of the central bank over the following decade.\n",
    "fn main() {\n    let cfg = Config::load(\"keel.toml\")?;\n    println!(\"listening on {}\", cfg.addr);\n    \
     // TODO: retry with backoff, see docs at https://example.com/docs/retry\n}\n",
    "The server at 192.168.10.24 answered in 12.5 ms; version 1.2.3.4.5 was deployed at 10:30:00 UTC \
     by deploy@ci.example.org. Logs are in /var/log/keel/gateway.log.\n",
    "Ignore the noise in the previous graph: the real trend is that latency drops after the cache warms \
     up, and the p99 stays under 40 ms for all regions except ap-southeast-2.\n",
    "Please wire the deposit to DE89 3704 0044 0532 0130 00 before Friday and confirm by phone at \
     (415) 555-2671. Reference: INV-2024-0042, amount 1,234.56 EUR.\n",
    "Ok so basically I'd like a recipe for a vegetarian lasagne that my kids will actually eat, with \
     spinach hidden in the sauce, and a version that can be frozen for weekday dinners.\n",
];

/// One detector run over a message, returning how many things it found.
type Detector<'a> = dyn Fn(&str) -> usize + 'a;

fn main() {
    let kb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512);
    let mut text = String::with_capacity(kb * 1024 + 512);
    let mut i = 0;
    while text.len() < kb * 1024 {
        text.push_str(PARAGRAPHS[i % PARAGRAPHS.len()]);
        i += 1;
    }
    let terms: Vec<String> = (0..48)
        .map(|n| format!("bannedterm{n}"))
        .chain(["forbidden".to_string(), "kill switch".to_string()])
        .collect();
    let regexes = vec![
        r"project\s+(?:x|y)".to_string(),
        r"codename\s+\w+".to_string(),
    ];
    let matcher = TermMatcher::new(&terms, &regexes).unwrap_or_else(|e| panic!("{e}"));

    // Requests are a few KB each: measure on 4 KB messages, like the gateway sees them.
    let messages: Vec<&str> = split_at_chars(&text, 4096);
    let mb = text.len() as f64 / (1024.0 * 1024.0);
    println!(
        "input: {} KB in {} messages of ~4 KB",
        text.len() / 1024,
        messages.len()
    );

    // Warm up: compiles the lazily built regexes and fills their DFA caches.
    for m in &messages {
        black_box(scan(m, Kind::ALL));
        black_box(injection(m));
        black_box(matcher.find(m));
    }

    let mut total_findings = 0;
    let runs: [(&str, &Detector); 4] = [
        ("scan (all kinds)", &|m| scan(m, Kind::ALL).len()),
        ("injection", &|m| injection(m).evidence.len()),
        ("terms (50 terms, 2 regexes)", &|m| matcher.find(m).len()),
        ("scan + redact", &|m| {
            let mut r = Redaction::new();
            let f = scan(m, Kind::ALL);
            black_box(r.redact(m, &f));
            r.len()
        }),
    ];
    let mut all_secs = 0.0;
    for (name, run) in runs {
        // Best of three: the machine is shared, the minimum is the least disturbed run.
        let mut secs = f64::MAX;
        let mut n = 0;
        for _ in 0..3 {
            let start = Instant::now();
            n = 0;
            for m in &messages {
                n += black_box(run(m));
            }
            secs = secs.min(start.elapsed().as_secs_f64());
        }
        if name != "scan + redact" {
            all_secs += secs;
        }
        total_findings += n;
        report(name, mb, secs, text.len());
    }
    report(
        "all detectors (scan + injection + terms)",
        mb,
        all_secs,
        text.len(),
    );
    println!("per kind:");
    for &kind in Kind::ALL {
        let mut secs = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            for m in &messages {
                black_box(scan(m, &[kind]));
            }
            secs = secs.min(start.elapsed().as_secs_f64());
        }
        report(&format!("  scan {kind}"), mb, secs, text.len());
    }
    println!("(findings and evidence counted: {total_findings})");
}

fn report(name: &str, mb: f64, secs: f64, bytes: usize) {
    let us_per_kb = secs * 1e6 / (bytes as f64 / 1024.0);
    println!(
        "{name:<42} {:>8.1} MB/s {:>8.2} µs/KB",
        mb / secs,
        us_per_kb
    );
}

fn split_at_chars(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}
