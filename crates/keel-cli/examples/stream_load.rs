//! Open-loop load of streamed calls, for `BENCH_API=stream bash bench/run.sh` (issue 21,
//! item 3). oha times whole responses; a stream needs two other figures: the time to the
//! first byte of the body, and the gaps between the events after it. This client starts
//! `--rate` streams a second for `--seconds` (each at its scheduled time, however late
//! the previous ones run), reads every stream to its end, and prints one JSON object:
//! streams sent, answered 200 and read whole (`[DONE]` seen), failed (and of those,
//! unanswered: no response at all, e.g. refused past `max_connections`), the achieved rate,
//! time to first byte measured from the scheduled start (so a stalled client or server
//! cannot hide its queueing, as oha's latency correction), and the gaps between
//! consecutive `data:` events, in milliseconds with p50, p99, p99.9 and max.
//!
//! Usage: stream_load --url URL --body FILE [--header 'name: value']... [--rate 1000]
//!        [--seconds 10]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    /// The request body, a JSON file (with `"stream": true`).
    #[arg(long)]
    body: String,
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Streams started per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    #[arg(long, default_value_t = 10)]
    seconds: u32,
}

#[derive(Default)]
struct Samples {
    ok: u64,
    failed: u64,
    /// Failed before any response arrived (refused or reset: never reached Keel's
    /// pipeline, so never traced).
    unanswered: u64,
    events: u64,
    ttfb_us: Vec<u64>,
    gaps_us: Vec<u64>,
    first_error: Option<String>,
}

/// One stream: the time to its first body byte (from `scheduled`) and the gaps between
/// its `data:` events; `Err` when it did not answer 200 or ended without `[DONE]`.
async fn one(req: reqwest::RequestBuilder, scheduled: Instant) -> Result<(u64, Vec<u64>), String> {
    let mut resp = req.send().await.map_err(|e| format!("send: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let mut ttfb = None;
    let mut last: Option<Instant> = None;
    let mut gaps = Vec::with_capacity(80);
    let mut pending = Vec::new();
    let mut done = false;
    while let Some(bytes) = resp.chunk().await.map_err(|e| format!("read: {e}"))? {
        let now = Instant::now();
        ttfb.get_or_insert_with(|| now.duration_since(scheduled));
        pending.extend_from_slice(&bytes);
        // Every complete event in what arrived counts as arriving now.
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            if !event.starts_with(b"data:") {
                continue;
            }
            if event.starts_with(b"data: [DONE]") {
                done = true;
            }
            if let Some(prev) = last {
                gaps.push(duration_us(now.duration_since(prev)));
            }
            last = Some(now);
        }
    }
    if !done {
        return Err("the stream ended without [DONE]".into());
    }
    Ok((ttfb.map_or(0, duration_us), gaps))
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn percentiles(mut v: Vec<u64>) -> serde_json::Value {
    v.sort_unstable();
    let at = |q: f64| {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i.min(v.len() - 1)] as f64 / 1000.0
    };
    json!({"count": v.len(), "p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)})
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let body = std::fs::read(&args.body)?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("content-type", "application/json".parse()?);
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?} is not `name: value`"))?;
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())?,
            value.trim().parse()?,
        );
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .build()?;
    let samples = Arc::new(Mutex::new(Samples::default()));
    let total = u64::from(args.rate) * u64::from(args.seconds);
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let samples = samples.clone();
        let req = client.post(&args.url).body(body.clone());
        tasks.push(tokio::spawn(async move {
            let got = one(req, scheduled).await;
            let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
            match got {
                Ok((ttfb, gaps)) => {
                    s.ok += 1;
                    s.events += gaps.len() as u64 + 1;
                    s.ttfb_us.push(ttfb);
                    s.gaps_us.extend(gaps);
                }
                Err(e) => {
                    s.failed += 1;
                    s.unanswered += u64::from(e.starts_with("send:"));
                    s.first_error.get_or_insert(e);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let s = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    let out = json!({
        "sent": total,
        "ok": s.ok,
        "failed": s.failed,
        "unanswered": s.unanswered,
        "first_error": s.first_error,
        "achieved_rps": if elapsed > 0.0 { s.ok as f64 / elapsed } else { 0.0 },
        "events_per_stream": if s.ok > 0 { s.events as f64 / s.ok as f64 } else { 0.0 },
        "ttfb_ms": percentiles(s.ttfb_us),
        "gap_ms": percentiles(s.gaps_us),
    });
    println!("{out}");
    Ok(())
}
