#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Cheapest-variant routing: a function with a quality tier sends its traffic to the
//! cheapest variant whose release's latest eval run meets the tier, follows new eval
//! results within a refresh, and falls back to the split when none qualifies.

mod common;

use std::time::Duration;

use common::{Harness, Options};
use keel_store::evals::{create_eval_run, finish_eval_run, NewEvalRun};
use keel_store::Store;
use serde_json::{json, Value};

const EXTRA: &str = r#"
[registry]
refresh = "100ms"

[models.budget]
provider = "inproc"
upstream_model = "mock-budget"
input_price_per_mtok = 0.05
output_price_per_mtok = 0.10

[functions.tiered]
cheapest = { suite = "quality", min_pass_rate = 0.85 }
[[functions.tiered.variants]]
name = "premium"
prompt = "ask"
model = "local"
weight = 1
[[functions.tiered.variants]]
name = "cheap"
prompt = "ask"
model = "budget"
weight = 0
"#;

async fn start() -> Harness {
    let h = Harness::with(Options {
        extra: EXTRA.into(),
        ..Options::default()
    })
    .await;
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    let text = "[[messages]]\nrole = \"user\"\ncontent = \"hi\"\n";
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
    h
}

async fn releases(h: &Harness) -> Vec<String> {
    for _ in 0..100 {
        let models: Value = h.get("/v1/models").await.json().await.unwrap();
        let f = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "tiered")
            .cloned()
            .unwrap();
        if let (Some(a), Some(b)) = (
            f["variants"][0]["release"].as_str(),
            f["variants"][1]["release"].as_str(),
        ) {
            return vec![a.to_string(), b.to_string()];
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the function never became available");
}

fn eval_run(h: &Harness, release: &str, at: i64, passed: i64) {
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    let id = format!("evr_{release}_{at}");
    create_eval_run(
        &conn,
        &NewEvalRun {
            id: id.clone(),
            suite: "quality".into(),
            started_at_ms: at,
            actor: "t".into(),
            dataset_hash: "sha256:x".into(),
            role: "candidate".into(),
            target_json: "{}".into(),
            function: Some("tiered".into()),
            variant: None,
            prompt_name: None,
            prompt_version: None,
            model: None,
            upstream_model: None,
            release_id: Some(release.into()),
            repeat: 1,
        },
    )
    .unwrap();
    conn.execute(
        "UPDATE eval_runs SET cases = 100, passed = ?2 WHERE id = ?1",
        rusqlite::params![id, passed],
    )
    .unwrap();
    finish_eval_run(&conn, &id, "done", at + 1, None, Some(true), None).unwrap();
}

async fn variant_served(h: &Harness) -> String {
    let r = h.chat(&json!({"model": "tiered"})).await;
    assert_eq!(r.status(), 200);
    r.headers()["x-keel-variant"].to_str().unwrap().to_string()
}

async fn wait_for(h: &Harness, want: &str) {
    for _ in 0..60 {
        if variant_served(h).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never served by {want}");
}

#[tokio::test]
async fn traffic_follows_the_cheapest_variant_that_meets_the_tier() {
    let h = start().await;
    let rel = releases(&h).await;
    // No eval results yet: nothing qualifies, so the split decides (premium has all the weight).
    assert_eq!(variant_served(&h).await, "premium");
    let status: Value = h.get("/status").await.json().await.unwrap();
    assert!(
        status["cheapest"]["tiered"]["why"]
            .as_str()
            .unwrap()
            .contains("no eval run"),
        "{status}"
    );

    // Both qualify: the cheaper model wins.
    eval_run(&h, &rel[0], 1_000, 95);
    eval_run(&h, &rel[1], 1_000, 90);
    wait_for(&h, "cheap").await;
    // The override still reaches any variant.
    let r = h
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "tiered"}),
            &[("x-keel-variant", "premium")],
        )
        .await;
    assert_eq!(r.headers()["x-keel-variant"], "premium");

    // A newer run of the cheap release falls below the tier: back to premium.
    eval_run(&h, &rel[1], 2_000, 60);
    wait_for(&h, "premium").await;
    h.finish().await;
}
