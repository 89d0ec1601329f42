#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Shadow isolation, in-process: a slow shadow model does not delay the live answer,
//! shadows in flight are capped per function (the excess is skipped and counted in
//! `keel_shadow_skipped_total`), and shadow calls never count against the caller's
//! rate limits.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Options};
use keel_core::trace::Origin;
use keel_store::Store;
use serde_json::json;

/// The shadow model answers after this long.
const SHADOW_LATENCY_MS: u64 = 1_500;

fn extra(max_concurrent: u32, limits: &str) -> String {
    format!(
        r#"
[providers.sluggish]
kind = "mock"
[providers.sluggish.mock]
latency_ms = {SHADOW_LATENCY_MS}
[models.sluggish]
provider = "sluggish"
upstream_model = "mock-sluggish"

[registry]
refresh = "100ms"

# The same live variant, with and without a slow shadow.
[functions.mirrored]
shadow = {{ variant = "candidate", sample = 1.0, max_concurrent = {max_concurrent} }}
[[functions.mirrored.variants]]
name = "control"
prompt = "ask"
model = "local"
weight = 1
[[functions.mirrored.variants]]
name = "candidate"
prompt = "ask"
model = "sluggish"
weight = 0

[functions.plain]
[[functions.plain.variants]]
name = "control"
prompt = "ask"
model = "local"
weight = 1

{limits}
"#
    )
}

async fn start(max_concurrent: u32, limits: &str) -> Harness {
    let h = Harness::with(Options {
        extra: extra(max_concurrent, limits),
        ..Options::default()
    })
    .await;
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    let text = "[[messages]]\nrole = \"user\"\ncontent = \"why?\"\n";
    let p = keel_registry::parse_prompt("ask", std::path::Path::new("ask.toml"), text).unwrap();
    keel_store::push_version(
        &conn,
        "ask",
        &p.content_hash(),
        &p.to_json().to_string(),
        "t",
        "t",
        None,
    )
    .unwrap();
    keel_store::set_label(&conn, "ask", 1, "production", "t", "t").unwrap();
    // Wait for the refresher to serve it (a 503 until then), without mirroring anything.
    let started = Instant::now();
    while call(&h, "plain", "warm-up").await.status() == 503 {
        assert!(started.elapsed() < Duration::from_secs(5), "never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h
}

async fn call(h: &Harness, function: &str, tenant: &str) -> reqwest::Response {
    h.post_json(
        "/v1/chat/completions",
        &json!({"model": function}),
        &[("x-keel-tenant", tenant)],
    )
    .await
}

/// The slowest of `n` sequential calls to `function`.
async fn slowest(h: &Harness, function: &str, n: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let started = Instant::now();
        let resp = call(h, function, "t").await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
        worst = worst.max(started.elapsed());
    }
    worst
}

#[tokio::test]
async fn a_slow_shadow_does_not_delay_the_live_answer() {
    let h = start(64, "").await;
    let without = slowest(&h, "plain", 10).await;
    let with = slowest(&h, "mirrored", 10).await;
    // Each mirrored call started a shadow that takes 1.5 s; the live answers do not wait.
    assert!(
        with < without + Duration::from_millis(500),
        "live latency with a slow shadow {with:?}, without {without:?}"
    );
    assert!(with < Duration::from_millis(SHADOW_LATENCY_MS), "{with:?}");
    tokio::time::sleep(Duration::from_millis(SHADOW_LATENCY_MS + 500)).await;
    let (_, traces) = h.finish().await;
    let shadows = traces.iter().filter(|t| t.origin == Origin::Shadow).count();
    assert_eq!(shadows, 10, "every mirrored call had its shadow");
}

#[tokio::test]
async fn shadows_in_flight_are_capped_and_the_excess_is_counted() {
    let h = start(2, "").await;
    for _ in 0..10 {
        assert_eq!(call(&h, "mirrored", "t").await.status(), 200);
    }
    // Ten calls within far less than the shadow's 1.5 s: two shadows run, eight are skipped.
    let metrics = h.metrics().await;
    assert_eq!(
        common::metric(
            &metrics,
            "keel_shadow_skipped_total",
            &[("function", "mirrored")]
        ),
        Some(8.0),
        "{metrics}"
    );
    // Once they finish, the slots are free again.
    tokio::time::sleep(Duration::from_millis(SHADOW_LATENCY_MS + 500)).await;
    assert_eq!(call(&h, "mirrored", "t").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(SHADOW_LATENCY_MS + 500)).await;
    let metrics = h.metrics().await;
    assert_eq!(
        common::metric(
            &metrics,
            "keel_shadow_skipped_total",
            &[("function", "mirrored")]
        ),
        Some(8.0)
    );
    let (_, traces) = h.finish().await;
    let shadows = traces.iter().filter(|t| t.origin == Origin::Shadow).count();
    assert_eq!(shadows, 3);
}

#[tokio::test]
async fn shadow_calls_do_not_count_against_the_callers_rate_limit() {
    let h = start(64, "[[rate_limits]]\nscope = \"tenant\"\nrpm = 4\n").await;
    for i in 0..4 {
        let resp = call(&h, "mirrored", "acme").await;
        assert_eq!(resp.status(), 200, "call {i}: {:?}", resp.text().await);
        // Give the shadow time to be admitted, were it admitted at all.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The limit is real: the fifth live call of the minute is refused.
    assert_eq!(call(&h, "mirrored", "acme").await.status(), 429);
    tokio::time::sleep(Duration::from_millis(SHADOW_LATENCY_MS + 500)).await;
    let (_, traces) = h.finish().await;
    let shadows: Vec<_> = traces
        .iter()
        .filter(|t| t.origin == Origin::Shadow)
        .collect();
    assert_eq!(shadows.len(), 4);
    for s in shadows {
        assert_eq!(s.tenant.as_deref(), Some("acme"));
        assert_eq!(s.error_class, None, "the shadow itself was not refused");
    }
}
