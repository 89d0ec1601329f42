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
    start_with(extra(shadow_model)).await
}

/// A gateway with `config` added, prompt `ask` v1 in production.
async fn start_with(config: String) -> Harness {
    let h = Harness::with(Options {
        extra: config,
        gateway: String::new(),
        ..Options::default()
    })
    .await;
    publish(&h, PROMPT, 1);
    h
}

/// Push `text` as prompt `ask` version `version` and point `production` at it.
fn publish(h: &Harness, text: &str, version: i64) {
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
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
    keel_store::set_label(&conn, "ask", version, "production", "t", "t").unwrap();
}

/// Wait until the registry refresher serves the pushed prompt (both variants).
async fn ready(h: &Harness) {
    serving(h, 1).await;
}

/// Wait until the shadow variant is served with prompt version `version`.
async fn serving(h: &Harness, version: i64) {
    for _ in 0..100 {
        let models: serde_json::Value = h.get("/v1/models").await.json().await.unwrap();
        let f = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "ask")
            .cloned();
        if f.is_some_and(|f| f["variants"][1]["prompt_version"] == version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("prompt version {version} was never served");
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
        let h = start_with(config).await;
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

/// A label moved while a sampled live call runs does not reach its shadow: both are
/// resolved in the registry snapshot of the moment the call was sampled, so the pair
/// compares the two variants on one prompt version. (Before, the shadow resolved its
/// prompt when it started, after the live answer, and got the moved label's version.)
#[tokio::test]
async fn a_label_moved_during_the_live_call_does_not_reach_its_shadow() {
    // The live variant answers after 1.5 s; the refresher runs every 50 ms.
    let config = extra("mock-1").replace("model = \"local\"", "model = \"late\"")
        + r#"
[registry]
refresh = "50ms"
[providers.late]
kind = "mock"
[providers.late.mock]
latency_ms = 1500
[models.late]
provider = "late"
upstream_model = "mock-late"
"#;
    let h = start_with(config).await;
    ready(&h).await;

    let live = {
        let url = h.url("/v1/chat/completions");
        tokio::spawn(async move {
            common::client()
                .post(url)
                .header("x-keel-request-id", "live-moved")
                .json(&json!({"model": "ask", "variables": {"question": "why?"}}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // While the live call waits for its answer, v2 is labelled and served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(
        &h,
        &PROMPT.replace("{{ question }}", "Q: {{ question }}"),
        2,
    );
    serving(&h, 2).await;
    assert!(
        !live.is_finished(),
        "v2 was served only after the live call ended"
    );
    assert_eq!(live.await.unwrap(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, traces) = h.finish().await;
    let live = common::trace(&traces, "live-moved");
    assert_eq!(
        live.prompt_version,
        Some(1),
        "the live call was resolved before the move"
    );
    let shadow = traces
        .iter()
        .find(|t| t.parent_id.as_deref() == Some("live-moved"))
        .unwrap_or_else(|| panic!("no shadow among {traces:#?}"));
    assert_eq!(
        shadow.prompt_version,
        Some(1),
        "the shadow must use its live call's version"
    );
    assert_eq!(shadow.output.as_deref(), Some("Mock reply to: why?"));
    assert_eq!(
        shadow.output, live.output,
        "one prompt version, one mock: one answer"
    );
}
