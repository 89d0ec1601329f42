#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `POST /v1/feedback` at the gateway: who may attach feedback to a call (its key,
//! another key of its tenant, the admin key — any other key gets the 404 of an unknown
//! id), what a bad body gets (400 naming the field), a later value replacing an earlier
//! one (audited), several names per call, values read back as sent, the wait for a
//! trace still in the writer's queue, the trace page and the metric.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keel_store::{FeedbackValue, Store};
use serde_json::{json, Value};

const ADMIN: &str = "feedback-admin-secret";

/// The handler's documented wait for a trace not yet written (`TRACE_WAIT`).
const TRACE_WAIT: Duration = Duration::from_secs(2);

async fn with_auth() -> Harness {
    let var = format!("KEEL_TEST_FEEDBACK_ADMIN_{}", std::process::id());
    std::env::set_var(&var, ADMIN);
    Harness::with(Options {
        extra: format!(
            "[auth]\nmode = \"required\"\nadmin_key_env = \"{var}\"\nrefresh = \"100ms\"\n"
        ),
        ..Options::default()
    })
    .await
}

async fn create_key(h: &Harness, tenant: &str) -> (String, String) {
    let resp = h
        .client
        .post(h.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({ "tenant": tenant }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

/// A chat call with `key` (and extra headers); its request id.
async fn call(h: &Harness, key: Option<&str>, headers: &[(&str, &str)]) -> String {
    let mut r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .json(&chat_body("mock-1", "was this helpful?"));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    request_id(&resp)
}

/// POST `body` to /v1/feedback with `key`: (status, JSON body).
async fn feedback(h: &Harness, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = h.client.post(h.url("/v1/feedback")).json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn stored(h: &Harness, trace_id: &str) -> Vec<keel_store::Feedback> {
    let store = Store::open(&h.store_path).unwrap();
    keel_store::feedback_for_trace(&store.reader().unwrap(), trace_id).unwrap()
}

/// The error body with the request id replaced, to compare two 404s.
fn masked(body: &Value, id: &str) -> String {
    body.to_string().replace(id, "<ID>")
}

#[tokio::test]
async fn the_calls_tenant_and_the_admin_may_attach_feedback_and_no_one_else() {
    let h = with_auth().await;
    let (a_id, key_a) = create_key(&h, "acme").await;
    let (b_id, key_b) = create_key(&h, "acme").await;
    let (_, key_other) = create_key(&h, "globex").await;
    let rid = call(&h, Some(&key_a), &[]).await;

    // The call's own key, at once (its trace may still be in the writer's queue).
    let (s, v) = feedback(
        &h,
        Some(&key_a),
        json!({"request_id": rid, "name": "thumbs", "value": -1, "comment": "too long"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v,
        json!({"request_id": rid, "name": "thumbs", "source": "user", "value": -1, "replaced": false})
    );
    // Another key of the same tenant: a second name on the same call, a boolean.
    let (s, v) = feedback(
        &h,
        Some(&key_b),
        json!({"request_id": rid, "name": "resolved", "value": false}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // The admin key: a category, from another source.
    let (s, v) = feedback(
        &h,
        Some(ADMIN),
        json!({"request_id": rid, "name": "reason", "value": "wrong_answer", "source": "support-review"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    // Another tenant's key: exactly what an unknown id gets (message, code, param,
    // and no sooner: the same wait).
    let started = Instant::now();
    let (s, foreign) = feedback(
        &h,
        Some(&key_other),
        json!({"request_id": rid, "name": "thumbs", "value": 1}),
    )
    .await;
    assert!(started.elapsed() >= TRACE_WAIT);
    assert_eq!(s, 404, "{foreign}");
    let started = Instant::now();
    let (s, unknown) = feedback(
        &h,
        Some(&key_other),
        json!({"request_id": "no-such-call", "name": "thumbs", "value": 1}),
    )
    .await;
    assert!(started.elapsed() >= TRACE_WAIT);
    assert_eq!(s, 404, "{unknown}");
    assert_eq!(masked(&foreign, &rid), masked(&unknown, "no-such-call"));
    assert_eq!(unknown["error"]["code"], "request_not_found");
    assert_eq!(unknown["error"]["type"], "invalid_request_error");
    assert_eq!(unknown["error"]["param"], "request_id");
    assert!(unknown["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-call"));
    // The call's own key gets the same 404 for an unknown id.
    let (s, own_unknown) = feedback(
        &h,
        Some(&key_a),
        json!({"request_id": "no-such-call", "name": "thumbs", "value": 1}),
    )
    .await;
    assert_eq!((s, &own_unknown), (404, &unknown));

    // No key, a made-up key: 401 before anything is looked up.
    let (s, v) = feedback(
        &h,
        None,
        json!({"request_id": rid, "name": "thumbs", "value": 1}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("missing_api_key"))
    );
    let (s, v) = feedback(
        &h,
        Some("keel_000000000000_0000"),
        json!({"request_id": rid, "name": "thumbs", "value": 1}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );

    // A later value for the same name and source replaces the earlier one: 200.
    let (s, v) = feedback(
        &h,
        Some(&key_b),
        json!({"request_id": rid, "name": "thumbs", "value": 1}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["replaced"], true);

    let got = stored(&h, &rid);
    let by_name = |n: &str| got.iter().find(|f| f.name == n).unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(by_name("thumbs").value, FeedbackValue::Number(1.0));
    assert_eq!(by_name("thumbs").comment, None);
    assert_eq!(by_name("thumbs").key_id.as_deref(), Some(b_id.as_str()));
    assert_eq!(by_name("resolved").value, FeedbackValue::Bool(false));
    assert_eq!(
        by_name("reason").value,
        FeedbackValue::Category("wrong_answer".into())
    );
    assert_eq!(by_name("reason").source, "support-review");
    assert_eq!(by_name("reason").key_id, None);

    // The replacement is audited: who, from what to what.
    let store = Store::open(&h.store_path).unwrap();
    let audit = keel_store::list_audit(&store.reader().unwrap(), 0, 0).unwrap();
    let replaced: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "feedback.replace")
        .collect();
    assert_eq!(replaced.len(), 1, "{audit:?}");
    assert_eq!(replaced[0].actor, format!("key:{b_id}"));
    assert_eq!(replaced[0].from_value.as_deref(), Some("-1"));
    assert_eq!(replaced[0].to_value.as_deref(), Some("1"));
    assert!(replaced[0].target.contains(&rid));
    let details: Value =
        serde_json::from_str(replaced[0].details_json.as_deref().unwrap()).unwrap();
    assert_eq!(details["key_before"], a_id.as_str());
    assert_eq!(details["comment_before"], "too long");

    // Counted by name: two thumbs, one each of the others; refused posts not at all.
    let resp = h
        .client
        .get(h.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert_eq!(
        metric(&text, "keel_feedback_total", &[("name", "thumbs")]),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "keel_feedback_total", &[("name", "resolved")]),
        Some(1.0)
    );
    assert_eq!(metric(&text, "keel_feedback_total", &[]), Some(4.0));
    h.finish().await;
}

/// An app whose `x-keel-request-id` was taken first by another tenant's call still
/// reaches its own call (stored under a fresh id); the other call is untouched.
#[tokio::test]
async fn a_reused_request_id_reaches_the_callers_own_call() {
    let h = with_auth().await;
    let (_, victim) = create_key(&h, "victim").await;
    let (_, app) = create_key(&h, "acme").await;
    let first = call(&h, Some(&victim), &[("x-keel-request-id", "order-7")]).await;
    assert_eq!(first, "order-7");
    // Wait until the first call holds the id, so the second is stored under a fresh one.
    for _ in 0..100 {
        if read_traces(&h.store_path).len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call(&h, Some(&app), &[("x-keel-request-id", "order-7")]).await;
    let (s, v) = feedback(
        &h,
        Some(&app),
        json!({"request_id": "order-7", "name": "thumbs", "value": 1}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let own = v["request_id"].as_str().unwrap().to_string();
    assert_ne!(own, "order-7");
    assert_eq!(stored(&h, &own).len(), 1);
    assert!(stored(&h, "order-7").is_empty());
    let traces = read_traces(&h.store_path);
    assert_eq!(trace(&traces, &own).tenant.as_deref(), Some("acme"));
    h.finish().await;
}

#[tokio::test]
async fn a_bad_body_is_400_naming_the_field() {
    let h = Harness::start().await;
    let rid = call(&h, None, &[]).await;
    let cases = [
        (json!({"request_id": rid, "name": "thumbs"}), "value"),
        (
            json!({"request_id": rid, "name": "thumbs", "value": {"up": true}}),
            "value",
        ),
        (
            json!({"request_id": rid, "name": "n".repeat(65), "value": 1}),
            "name",
        ),
        (json!({"name": "thumbs", "value": 1}), "request_id"),
        (
            json!({"request_id": rid, "name": "thumbs", "value": 1, "source": "a b"}),
            "source",
        ),
        (
            json!({"request_id": rid, "name": "thumbs", "value": 1, "comment": "c".repeat(4001)}),
            "comment",
        ),
    ];
    for (body, field) in cases {
        let (s, v) = feedback(&h, None, body.clone()).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], field, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_request");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{v}"
        );
    }
    for raw in ["{\"request_id\": ", "", "[1, 2]"] {
        let resp = h.post_raw("/v1/feedback", raw).await;
        assert_eq!(resp.status(), 400, "{raw}");
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("request body"),
            "{raw}: {v}"
        );
    }
    // Nothing was stored by any of them.
    assert!(stored(&h, &rid).is_empty());
    h.finish().await;
}

/// An open gateway (no auth): anyone may post; the trace page shows the feedback,
/// escaped.
#[tokio::test]
async fn an_open_gateway_takes_feedback_and_the_trace_page_shows_it() {
    let h = Harness::start().await;
    let rid = call(&h, None, &[("x-keel-tenant", "acme")]).await;
    let hostile = "<script>alert('x')</script>";
    let (s, v) = feedback(
        &h,
        None,
        json!({"request_id": rid, "name": "thumbs", "value": -1, "comment": hostile}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = feedback(
        &h,
        None,
        json!({"request_id": rid, "name": "helpful", "value": true}),
    )
    .await;
    assert_eq!(s, 201);
    let page = h
        .get(&format!("/ui/traces/{rid}"))
        .await
        .text()
        .await
        .unwrap();
    let section = page.split("id=\"feedback\"").nth(1).unwrap_or_default();
    assert!(section.contains("thumbs"), "{page}");
    assert!(section.contains("<code>-1</code>"), "{page}");
    assert!(section.contains("<code>true</code>"), "{page}");
    assert!(
        section.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains(hostile));
    h.finish().await;
}

/// Feedback sent before its call's trace is written is held until it is (up to the
/// documented wait): here the feedback is even sent before the call is made.
#[tokio::test]
async fn feedback_waits_for_a_trace_still_being_written() {
    let h = Harness::start().await;
    let rid = format!("early-{}", std::process::id());
    let early = {
        let client = h.client.clone();
        let url = h.url("/v1/feedback");
        let body = json!({"request_id": rid, "name": "thumbs", "value": 1});
        tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(call(&h, None, &[("x-keel-request-id", &rid)]).await, rid);
    let resp = early.await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(stored(&h, &rid).len(), 1);
    h.finish().await;
}
