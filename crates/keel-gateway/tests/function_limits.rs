#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A function's deadlines bound the whole call (all attempts) and the first streamed
//! chunk, whatever the models' own timeouts.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Options};
use keel_store::Store;
use serde_json::json;

const EXTRA: &str = r#"
[functions.quick]
timeout = "300ms"
first_token_timeout = "200ms"
[[functions.quick.variants]]
name = "only"
prompt = "ask"
model = "local"
weight = 1
"#;

async fn start() -> Harness {
    let h = Harness::with(Options {
        extra: EXTRA.into(),
        ..Options::default()
    })
    .await;
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    let text =
        "[[messages]]\nrole = \"user\"\ncontent = \"{{ q }}\"\n[variables.q]\ntype = \"string\"\n";
    let p = keel_registry::parse_prompt("ask", std::path::Path::new("a.toml"), text).unwrap();
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
    for _ in 0..100 {
        let r = h
            .chat(&json!({"model": "quick", "variables": {"q": "ping"}}))
            .await;
        if r.status() == 200 {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the function never became available");
}

#[tokio::test]
async fn the_function_deadline_wins_over_the_models() {
    let h = start().await;
    let started = Instant::now();
    let r = h
        .chat(&json!({"model": "quick", "variables": {"q": "[mock:latency=2000] slow"}}))
        .await;
    assert_eq!(r.status(), 504);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let r = h
        .chat(&json!({"model": "quick", "stream": true, "variables": {"q": "[mock:latency=2000] slow"}}))
        .await;
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(1500));
    h.finish().await;
}
