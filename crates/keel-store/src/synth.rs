//! Synthetic traffic for the scale benchmark (`bench/dashboard_scale.sh`, through the
//! hidden `keel dev gen-traces`) and the tests that check the dashboard against it:
//! millions of realistic traces written straight into a store, fast.
//!
//! Realistic means what the dashboard's queries feel: traces spread evenly over the
//! last `days`, time-ordered ids (UUID v7, as the gateway makes them), a few models
//! (one unpriced), functions with variants, features, tenants of very different sizes
//! with their users, sessions and keys, ~3 % errors in a few classes, client
//! disconnects, streams with a time to first token, long-tailed latencies, short
//! captured input and output, and some eval traffic. Deterministic for a seed.
//!
//! Rows go through the trace writer's own insert (`trace_row::insert_batch`), so the
//! rollups are built exactly as in production, in large transactions.

use crate::error::StoreError;
use crate::sql::{Db, Dialect};
use crate::trace_row;
use keel_core::money::Nanos;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthOptions {
    pub count: u64,
    /// Traces start in `[now_ms - days, now_ms)`.
    pub days: u32,
    pub now_ms: i64,
    pub seed: u64,
    /// Traces per transaction.
    pub batch: usize,
}

/// (name, provider, upstream model, input and output price in nano-dollars per token
/// — `None`: unpriced —, median latency ms, weight).
type ModelSpec = (
    &'static str,
    &'static str,
    &'static str,
    Option<(i64, i64)>,
    f64,
    u32,
);

const MODELS: [ModelSpec; 5] = [
    (
        "gpt-4o-mini",
        "openai",
        "gpt-4o-mini-2024-07-18",
        Some((150, 600)),
        600.0,
        40,
    ),
    (
        "gpt-4o",
        "openai",
        "gpt-4o-2024-08-06",
        Some((2_500, 10_000)),
        1_400.0,
        20,
    ),
    (
        "claude-haiku",
        "anthropic",
        "claude-3-5-haiku-20241022",
        Some((800, 4_000)),
        800.0,
        20,
    ),
    (
        "claude-sonnet",
        "anthropic",
        "claude-3-5-sonnet-20241022",
        Some((3_000, 15_000)),
        2_000.0,
        15,
    ),
    (
        "llama-local",
        "vllm",
        "llama-3.1-8b-instruct",
        None,
        300.0,
        5,
    ),
];

/// (function, variants, prompt) — a third of the calls go through a function.
const FUNCTIONS: [(&str, [&str; 2], &str); 3] = [
    ("support-answer", ["control", "candidate"], "support/answer"),
    ("search-rerank", ["v1", "v2"], "search/rerank"),
    ("summarize-ticket", ["short", "long"], "summarize/ticket"),
];

const FEATURES: [&str; 6] = [
    "support",
    "search",
    "summarize",
    "chat",
    "extract",
    "classify",
];
const ERRORS: [(&str, u16); 4] = [
    ("upstream_rate_limit", 429),
    ("upstream_timeout", 504),
    ("upstream_server_error", 502),
    ("invalid_request", 400),
];
const TENANTS: u64 = 40;
const USERS_PER_TENANT: u64 = 500;

/// splitmix64: small, fast, good enough for synthetic data, and stable across versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly standard normal (Irwin–Hall of 4).
    fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.unit()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }

    /// An index drawn by `weights`.
    fn pick(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut at = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if at < u64::from(*w) {
                return i;
            }
            at -= u64::from(*w);
        }
        0
    }
}

/// Tenant sizes fall off like a power law: tenant 0 is the biggest.
fn tenant(rng: &mut Rng) -> u64 {
    let u = rng.unit();
    ((u * u * u) * TENANTS as f64) as u64
}

/// One synthetic trace started at `at`.
fn trace(rng: &mut Rng, at: i64) -> TraceRecord {
    let id = format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        (at >> 16) & 0xffff_ffff,
        at & 0xffff,
        rng.below(0x1000),
        0x8000 | rng.below(0x4000),
        rng.below(1 << 48)
    );
    let mut t = TraceRecord::new(id, at, "openai", "/v1/chat/completions");
    let tenant = tenant(rng);
    let user = rng.below(USERS_PER_TENANT);
    t.tenant = Some(format!("tenant-{tenant:02}"));
    t.user = Some(format!("user-{tenant:02}-{user:03}"));
    if rng.below(2) == 0 {
        t.session = Some(format!("sess-{tenant:02}-{user:03}-{}", at / 3_600_000));
    }
    t.key_id = Some(format!("k{tenant:02}{}", rng.below(2)));
    t.feature = Some(FEATURES[rng.below(FEATURES.len() as u64) as usize].to_string());
    let weights: Vec<u32> = MODELS.iter().map(|m| m.5).collect();
    let (model, provider, upstream, price, median, _) = MODELS[rng.pick(&weights)];
    t.model_requested = Some(model.into());
    t.provider = Some(provider.into());
    t.upstream_model = Some(upstream.into());
    t.served_model = Some(upstream.into());
    if rng.below(3) == 0 {
        let (function, variants, prompt) = FUNCTIONS[rng.below(FUNCTIONS.len() as u64) as usize];
        t.function = Some(function.into());
        t.variant = Some(variants[rng.below(2) as usize].into());
        t.prompt_name = Some(prompt.into());
        t.prompt_version = Some(1 + rng.below(4) as i64);
    }
    if rng.below(50) == 0 {
        t.origin = Origin::Eval;
    }
    t.stream = rng.below(10) < 4;
    let latency = (median * (0.7 * rng.normal()).exp()).max(5.0);
    t.latency_ms = latency as u64;
    if t.stream {
        t.ttft_ms = Some((latency * (0.1 + 0.3 * rng.unit())) as u64);
    }
    let input = 50 + rng.below(2_500);
    let roll = rng.below(1000);
    if roll < 28 {
        let (class, http) = ERRORS[rng.below(ERRORS.len() as u64) as usize];
        t.status = TraceStatus::Error;
        t.http_status = http;
        t.error_class = Some(class.into());
        t.error_message = Some(format!("{class} from {provider}"));
        t.latency_ms /= 4;
        t.ttft_ms = None;
    } else {
        let output = 10 + rng.below(700);
        t.input_tokens = Some(input);
        t.output_tokens = Some(output);
        t.cached_tokens = Some(if rng.below(4) == 0 { input / 2 } else { 0 });
        match price {
            Some((pin, pout)) => {
                t.cost = Some(Nanos(input as i64 * pin + output as i64 * pout));
            }
            None => t.unpriced = true,
        }
        t.output = Some(format!(
            "Synthetic answer {} about {}.",
            rng.below(1 << 20),
            model
        ));
        t.finish_reason = Some("stop".into());
        if roll < 33 {
            t.status = TraceStatus::ClientDisconnected;
            t.http_status = 499;
            t.error_class = Some("client_disconnected".into());
        }
    }
    t.input = Some(format!(
        "{{\"messages\":[{{\"role\":\"user\",\"content\":\"question {} from {}\"}}]}}",
        rng.below(1 << 20),
        t.feature.as_deref().unwrap_or("")
    ));
    t
}

/// Write `opts.count` synthetic traces (with their rollups) into the store behind
/// `db` (SQLite or PostgreSQL), calling `progress` with the running total after each
/// transaction. Returns the number written.
pub fn generate<'c>(
    db: impl Into<Db<'c>>,
    opts: &SynthOptions,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let db = db.into();
    // Bulk load: no fsync per transaction (a crash loses a benchmark store, which is
    // regenerated anyway); on SQLite also a big page cache for the indexes.
    match db.dialect() {
        Dialect::Sqlite => db.batch("PRAGMA cache_size = -1000000; PRAGMA synchronous = OFF;")?,
        Dialect::Postgres => db.batch("SET synchronous_commit = off")?,
    }
    let written = write_all(db, opts, &mut progress);
    // The connection goes back to its pool: its usual settings again, whatever happened.
    let reset = match db.dialect() {
        Dialect::Sqlite => db.batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -2000;"),
        Dialect::Postgres => db.batch("SET synchronous_commit = on"),
    };
    let written = written?;
    reset?;
    // Planner statistics, as a store that has been serving would have them (the writer
    // refreshes them hourly); sampled, so quick.
    match db.dialect() {
        Dialect::Sqlite => db.batch("PRAGMA analysis_limit = 1000; ANALYZE;")?,
        Dialect::Postgres => db.batch("ANALYZE")?,
    }
    Ok(written)
}

/// The traces of [`generate`], written in transactions of `opts.batch`.
fn write_all(
    db: Db<'_>,
    opts: &SynthOptions,
    progress: &mut impl FnMut(u64),
) -> Result<u64, StoreError> {
    let mut rng = Rng(opts.seed);
    let span = i64::from(opts.days.max(1)) * 86_400_000;
    let start = opts.now_ms - span;
    let count = opts.count.max(1);
    let batch = opts.batch.max(1);
    let mut written = 0u64;
    let mut traces: Vec<TraceRecord> = Vec::with_capacity(batch);
    while written < opts.count {
        traces.clear();
        while traces.len() < batch && written + (traces.len() as u64) < opts.count {
            let i = written + traces.len() as u64;
            // Evenly spread, in order, with a little jitter within the slot.
            let slot = span as f64 / count as f64;
            let at = start + (i as f64 * slot + rng.unit() * slot) as i64;
            traces.push(trace(&mut rng, at.min(opts.now_ms - 1)));
        }
        trace_row::insert_batch(db, &traces)?;
        written += traces.len() as u64;
        progress(written);
    }
    Ok(written)
}
