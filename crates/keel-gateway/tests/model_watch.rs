#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The version behind a model name, watched: a local upstream changes its
//! `system_fingerprint` mid-run; the gateway's watch records one `model.version_changed`
//! audit event naming the old and new fingerprints and the first call answered by the
//! new one, `keel_model_version_changes_total{model}` moves once, and a provider then
//! flapping between the two fingerprints announces nothing more.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Harness, Options};
use serde_json::json;

/// An OpenAI-compatible upstream answering with the fingerprint in `fp`.
async fn fingerprinted_upstream(fp: Arc<Mutex<String>>) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let fp = fp.lock().unwrap().clone();
            async move {
                axum::Json(json!({
                    "id": "chatcmpl-fp",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "pinned-2025-01-01",
                    "system_fingerprint": fp,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

fn changes(store_path: &str) -> Vec<(String, String, String)> {
    let conn = keel_store::Store::open(store_path)
        .unwrap()
        .reader()
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT target, from_value, to_value FROM audit_events WHERE action = 'model.version_changed' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The firing notices of alert `name`, as recorded.
fn alert_messages(store_path: &str, name: &str) -> Vec<String> {
    let conn = keel_store::Store::open(store_path)
        .unwrap()
        .reader()
        .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT message FROM alert_events WHERE name = ?1 AND state = 'firing' ORDER BY id",
        )
        .unwrap();
    stmt.query_map([name], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn calls(h: &Harness, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let resp = h
            .chat(&common::chat_body("pinned", &format!("hello {i}")))
            .await;
        assert_eq!(resp.status(), 200);
        ids.push(common::request_id(&resp));
    }
    ids
}

/// Wait for the watch (every 10 s) to have seen `n` changes.
async fn wait_changes(h: &Harness, n: usize) -> Vec<(String, String, String)> {
    let start = Instant::now();
    loop {
        let found = changes(&h.store_path);
        if found.len() >= n || start.elapsed() > Duration::from_secs(25) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_fingerprint_is_announced_once_and_flapping_is_quiet() {
    let fp = Arc::new(Mutex::new("fp_old".to_string()));
    let base = fingerprinted_upstream(fp.clone()).await;
    let h = Harness::with(Options {
        extra: format!(
            "[providers.pinned-up]\nkind = \"openai\"\nbase_url = \"{base}\"\n\
             [models.pinned]\nprovider = \"pinned-up\"\nupstream_model = \"pinned\"\n\
             [[alerts]]\nname = \"pinned-changed\"\nmetric = \"model_changed\"\nscope = \"model=pinned\"\n"
        ),
        ..Options::default()
    })
    .await;
    calls(&h, 3).await;
    // The first version ever seen is no change: let the watch record it.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(changes(&h.store_path).is_empty());

    *fp.lock().unwrap() = "fp_new".into();
    let first_new = calls(&h, 3).await.remove(0);
    let found = wait_changes(&h, 1).await;
    assert_eq!(
        found,
        vec![("pinned".into(), "fp_old".into(), "fp_new".into())]
    );
    let conn = keel_store::Store::open(&h.store_path)
        .unwrap()
        .reader()
        .unwrap();
    let details: String = conn
        .query_row(
            "SELECT details_json FROM audit_events WHERE action = 'model.version_changed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        details.contains(&first_new) && details.contains("pinned-up/pinned"),
        "{details}"
    );
    let metrics = h.metrics().await;
    assert_eq!(
        common::metric(
            &metrics,
            "keel_model_version_changes_total",
            &[("model", "pinned")]
        ),
        Some(1.0),
        "{metrics}"
    );

    // The alert on the new metric fires once, naming the versions (rules are evaluated
    // every 15 s).
    let start = Instant::now();
    let fired = loop {
        let fired = alert_messages(&h.store_path, "pinned-changed");
        if !fired.is_empty() || start.elapsed() > Duration::from_secs(40) {
            break fired;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(
        fired[0].contains("`pinned` now answers as `fp_new` (was `fp_old`)"),
        "{fired:?}"
    );

    // Flapping between the two: nothing more within the memory window.
    for i in 0..6 {
        *fp.lock().unwrap() = if i % 2 == 0 { "fp_old" } else { "fp_new" }.into();
        calls(&h, 1).await;
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(changes(&h.store_path).len(), 1);
    assert_eq!(alert_messages(&h.store_path, "pinned-changed").len(), 1);
}
