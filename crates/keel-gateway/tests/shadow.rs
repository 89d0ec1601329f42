#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Shadow traffic, in-process: every sampled live call is mirrored to the shadow variant
//! in the background; the live answer is unchanged even when the shadow fails; the
//! shadow's trace has origin `shadow` and points at the live call.

mod common;

use std::time::Duration;

use common::{Harness, Options};
use keel_core::trace::Origin;
use keel_store::Store;
use serde_json::json;

const PROMPT: &str = r#"
[[messages]]
role = "user"
content = "{{ question }}"
[variables.question]
type = "string"
"#;

fn extra(shadow_model: &str) -> String {
    format!(
        r#"
[providers.down]
kind = "mock"
[providers.down.mock]
rate_500 = 1.0
[models.down]
provider = "down"
upstream_model = "mock-down"

[functions.ask]
shadow = {{ variant = "candidate", sample = 1.0 }}
[[functions.ask.variants]]
name = "control"
prompt = "ask"
model = "local"
weight = 1
[[functions.ask.variants]]
name = "candidate"
prompt = "ask"
model = "{shadow_model}"
weight = 0
"#
    )
}

async fn start(shadow_model: &str) -> Harness {
    let h = Harness::with(Options {
        extra: extra(shadow_model),
        gateway: String::new(),
        ..Options::default()
    })
    .await;
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    let p = keel_registry::parse_prompt("ask", std::path::Path::new("ask.toml"), PROMPT).unwrap();
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

/// Wait until the registry refresher serves the pushed prompt (both variants).
async fn ready(h: &Harness) {
    for _ in 0..100 {
        let models: serde_json::Value = h.get("/v1/models").await.json().await.unwrap();
        let f = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "ask")
            .cloned();
        if f.is_some_and(|f| f["variants"][1]["prompt_version"] == 1) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the function never became available");
}

async fn ask(h: &Harness, id: &str) -> reqwest::Response {
    h.post_json(
        "/v1/chat/completions",
        &json!({"model": "ask", "variables": {"question": "why?"}}),
        &[("x-keel-request-id", id)],
    )
    .await
}

#[tokio::test]
async fn live_calls_are_mirrored_to_the_shadow_without_changing_the_answer() {
    let h = start("mock-1").await;
    ready(&h).await;
    for i in 0..3 {
        let r = ask(&h, &format!("live-{i}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-keel-variant"], "control");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store_path = h.store_path.clone();
    let pairs = {
        let store = Store::open(&store_path).unwrap();
        keel_store::shadow::shadow_pairs(&store.reader().unwrap(), "ask", 0, 0).unwrap()
    };
    let (_, traces) = h.finish().await;
    let shadows: Vec<_> = traces
        .iter()
        .filter(|t| t.origin == Origin::Shadow)
        .collect();
    assert_eq!(shadows.len(), 3);
    for s in &shadows {
        assert_eq!(s.variant.as_deref(), Some("candidate"));
        assert_eq!(s.cache, None, "a shadow never uses the cache");
    }
    let live_ok: Vec<_> = (0..3).map(|i| format!("live-{i}")).collect();
    for id in &live_ok {
        assert!(
            pairs.iter().any(|p| &p.live_id == id),
            "no shadow pair for {id}"
        );
    }
    let p = pairs.iter().find(|p| p.live_id == "live-0").unwrap();
    assert_eq!(p.live.output, p.shadow.output, "same mock, same answer");
    assert_eq!(p.shadow.variant.as_deref(), Some("candidate"));
}

#[tokio::test]
async fn a_failing_shadow_never_reaches_the_caller() {
    let h = start("down").await;
    ready(&h).await;
    let r = ask(&h, "live-x").await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, traces) = h.finish().await;
    let shadow = traces
        .iter()
        .find(|t| t.parent_id.as_deref() == Some("live-x"))
        .unwrap();
    assert_eq!(shadow.error_class.as_deref(), Some("upstream_server_error"));
    assert_eq!(common::trace(&traces, "live-x").status.as_str(), "ok");
}

/// A live call is mirrored only when it succeeded on another variant: the split serving
/// the shadow variant itself, or a live call that failed, sends no shadow.
#[tokio::test]
async fn only_answered_live_calls_on_another_variant_are_mirrored() {
    // The split sends every live call to the shadow variant.
    let swapped = extra("mock-1")
        .replace("weight = 1", "weight = 9")
        .replace("weight = 0", "weight = 1")
        .replace("weight = 9", "weight = 0");
    // And a function whose live variant always fails.
    let failing = extra("mock-1").replace("model = \"local\"", "model = \"down\"");
    for (config, want_status, name) in [(swapped, 200, "split"), (failing, 502, "failed")] {
        let h = Harness::with(Options {
            extra: config,
            gateway: String::new(),
            ..Options::default()
        })
        .await;
        {
            let store = Store::open(&h.store_path).unwrap();
            let conn = store.writer_conn().unwrap();
            let p = keel_registry::parse_prompt("ask", std::path::Path::new("ask.toml"), PROMPT)
                .unwrap();
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
        }
        ready(&h).await;
        for i in 0..3 {
            let r = ask(&h, &format!("{name}-{i}")).await;
            assert_eq!(r.status(), want_status, "{name}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, traces) = h.finish().await;
        let shadows = traces.iter().filter(|t| t.origin == Origin::Shadow).count();
        assert_eq!(shadows, 0, "{name}: {traces:?}");
        assert_eq!(traces.len(), 3, "{name}");
    }
}
