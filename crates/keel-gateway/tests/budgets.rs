#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Budgets at the gateway: a hard budget holds under a burst of concurrent calls (the
//! overshoot bound of DESIGN: zero when reservations are true ceilings), a request with
//! no output limit is capped to what was reserved, thresholds alert a webhook, a spend
//! spike blocks, and an unreachable shared backend fails closed or open as configured.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use keel_core::config::mock::MockSettings;
use serde_json::{json, Value};

/// Every mock reply is 20 tokens; "hi there" is 6 prompt tokens to the mock, so a call
/// with `max_tokens = 20` costs 6×150 + 20×600 = 12,900 nano-dollars, and Keel reserves
/// 12 estimated prompt tokens (9 × 1.25) + 20 output: 13,800.
const COST: i64 = 12_900;
const RESERVED: i64 = 13_800;

fn twenty_tokens() -> MockSettings {
    MockSettings {
        output_tokens: Some(20),
        ..Default::default()
    }
}

fn body(max_tokens: Option<u32>, text: &str) -> Value {
    let mut b = json!({"model": "mock-1", "messages": [{"role": "user", "content": text}]});
    if let Some(m) = max_tokens {
        b["max_tokens"] = json!(m);
    }
    b
}

async fn post(h: &Harness, tenant: &str, feature: &str, b: &Value) -> reqwest::Response {
    h.client
        .post(h.url("/v1/chat/completions"))
        .header("x-keel-tenant", tenant)
        .header("x-keel-feature", feature)
        .json(b)
        .send()
        .await
        .unwrap()
}

/// `/admin/budgets` once every reservation has settled (settling runs after the response).
async fn settled_budgets(h: &Harness) -> Vec<Value> {
    for _ in 0..100 {
        let v: Value = h.get("/admin/budgets").await.json().await.unwrap();
        let rows = v["budgets"].as_array().cloned().unwrap_or_default();
        if rows.iter().all(|r| r["reserved_usd"] == "0.00") {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("reservations never settled");
}

/// 200 simultaneous calls against a hard budget worth 50 of them.
#[tokio::test]
async fn a_hard_budget_holds_under_a_burst_of_concurrent_calls() {
    let h = Arc::new(
        Harness::with(Options {
            mock: twenty_tokens(),
            extra: r#"
[[budgets]]
name = "acme-monthly"
scope = "tenant=acme"
limit_usd = 0.000645
window = "month"
"#
            .into(),
            ..Options::default()
        })
        .await,
    );
    let b = body(Some(20), "hi there");
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let (h, b) = (h.clone(), b.clone());
            tokio::spawn(async move {
                let r = post(&h, "acme", "support", &b).await;
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap();
                (status, v)
            })
        })
        .collect();
    let mut ok = 0;
    let mut blocked = 0;
    for c in calls {
        let (status, v) = c.await.unwrap();
        match status {
            200 => ok += 1,
            402 => {
                blocked += 1;
                assert_eq!(v["error"]["code"], "budget_exceeded");
                assert_eq!(v["error"]["type"], "insufficient_quota");
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(
                    msg.contains("acme-monthly") && msg.contains("$0.000645"),
                    "{msg}"
                );
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    // At least as many as fit side by side; never more than the limit allows.
    let limit = 50 * COST;
    assert!(ok >= limit / RESERVED, "only {ok} admitted");
    assert!(
        ok * COST <= limit,
        "{ok} calls cost {} > {limit}",
        ok * COST
    );
    assert_eq!(ok + blocked, 200);
    // Another tenant is not affected.
    assert_eq!(post(&h, "globex", "support", &b).await.status(), 200);

    let rows = settled_budgets(&h).await;
    let acme = rows.iter().find(|r| r["scope"] == "tenant=acme").unwrap();
    assert_eq!(
        dollars_to_nanos(acme["spent_usd"].as_str().unwrap()),
        ok * COST
    );
    let h = Arc::try_unwrap(h).ok().unwrap();
    let (_, traces) = h.finish().await;
    let spent: i64 = traces
        .iter()
        .filter(|t| t.tenant.as_deref() == Some("acme"))
        .filter_map(|t| t.cost.map(|c| c.0))
        .sum();
    assert_eq!(spent, ok * COST, "the ledger and the traces agree");
    assert!(spent <= limit);
    let blocked_traces = traces
        .iter()
        .filter(|t| t.error_class.as_deref() == Some("budget_exceeded"))
        .count();
    assert_eq!(blocked_traces, blocked as usize);
}

#[tokio::test]
async fn a_request_without_an_output_limit_is_capped_to_its_reservation() {
    let h = Harness::with(Options {
        mock: MockSettings {
            output_tokens: Some(50),
            ..Default::default()
        },
        extra: r#"
[limits]
output_reserve_tokens = 20

[[budgets]]
name = "all"
limit_usd = 1
"#
        .into(),
        ..Options::default()
    })
    .await;
    let r = post(&h, "acme", "f", &body(None, "hi there")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    // The mock would have answered 50 tokens; Keel set max_tokens to the 20 it reserved.
    assert_eq!(v["usage"]["completion_tokens"], 20);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    h.finish().await;
}

/// A webhook receiver that keeps every JSON body.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let s = s2.clone();
            async move {
                s.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}/hook"), seen)
}

async fn wait_for(seen: &Arc<Mutex<Vec<Value>>>, n: usize) -> Vec<Value> {
    for _ in 0..250 {
        if seen.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn budget_thresholds_alert_a_webhook_once() {
    let (url, seen) = webhook().await;
    let h = Harness::with(Options {
        mock: twenty_tokens(),
        extra: format!(
            r#"
[alert_destinations.ops]
kind = "webhook"
url = "{url}"

[[budgets]]
name = "support-daily"
scope = "feature=support"
limit_usd = 0.0001
window = "day"
mode = "soft"
alert_at = [0.5]
alert_to = ["ops", "log"]
"#
        ),
        ..Options::default()
    })
    .await;
    // Soft: nothing is blocked, even past the limit; 50% is crossed on the 4th call.
    for _ in 0..9 {
        assert_eq!(
            post(&h, "acme", "support", &body(Some(20), "hi there"))
                .await
                .status(),
            200
        );
    }
    let got = wait_for(&seen, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got_after = seen.lock().unwrap().clone();
    assert_eq!(
        got_after.len(),
        1,
        "one alert per threshold and window: {got_after:?}"
    );
    let a = &got[0];
    assert_eq!(a["keel"]["source"], "budget");
    assert_eq!(a["keel"]["name"], "support-daily");
    assert_eq!(a["keel"]["scope"], "feature=support");
    let text = a["text"].as_str().unwrap();
    assert!(
        text.contains("50%") && text.contains("support-daily"),
        "{text}"
    );
    assert!(text.contains("Recent changes"), "{text}");
    let events = h.finish_alerts().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].delivered, Some(json!({"ops": "ok", "log": "ok"})));
}

#[tokio::test]
async fn a_spend_spike_blocks_the_feature_and_is_recorded() {
    let h = Harness::with(Options {
        mock: twenty_tokens(),
        extra: r#"
[spikes]
scopes = ["feature"]
bucket = "100ms"
half_life = "500ms"
z = 6.0
min_usd = 0.000001
warmup = 5
action = "block"
hold = "30s"
"#
        .into(),
        ..Options::default()
    })
    .await;
    // A second of steady traffic: one small call every 25 ms.
    let small = body(Some(20), "hi there");
    for _ in 0..40 {
        assert_eq!(post(&h, "acme", "support", &small).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Then each call gets a hundred times dearer (a prompt change gone wrong).
    let big = body(Some(2000), "hi there [mock:tokens=2000]");
    let mut spiked = None;
    for i in 0..20 {
        let r = post(&h, "acme", "support", &big).await;
        if r.status() == 429 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "spend_spike");
            spiked = Some(i);
            break;
        }
    }
    let i = spiked.expect("the spike was never detected");
    assert!(i <= 3, "detected only after {i} dear calls");
    // Other features keep working.
    assert_eq!(post(&h, "acme", "search", &small).await.status(), 200);
    let m = h.metrics().await;
    assert!(
        metric(&m, "keel_spend_spikes_total", &[]).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    let events = h.finish_alerts().await;
    assert!(
        events
            .iter()
            .any(|e| e.source == "spike" && e.scope == "feature=support" && e.state == "firing"),
        "{events:?}"
    );
}

#[tokio::test]
async fn an_unreachable_shared_backend_fails_closed_or_open_as_configured() {
    let cfg = |mode: &str| {
        format!(
            r#"
[limits]
backend = "redis"
redis_url = "redis://127.0.0.1:1"
backend_timeout = "200ms"
on_backend_error = "{mode}"

[[rate_limits]]
scope = "tenant"
rpm = 100
"#
        )
    };
    let closed = Harness::with(Options {
        extra: cfg("fail_closed"),
        ..Options::default()
    })
    .await;
    let r = post(&closed, "acme", "f", &body(Some(5), "hi")).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "limits_unavailable");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("fail_closed"), "{message}");
    // Redis internals (its address, the driver's error) stay in the log.
    for internal in [
        "127.0.0.1",
        "redis://",
        "connection refused",
        "os error",
        "timed out",
        "io error",
    ] {
        assert!(
            !message.to_lowercase().contains(internal),
            "the 503 shows {internal}: {message}"
        );
    }
    closed.finish().await;

    let open = Harness::with(Options {
        extra: cfg("fail_open"),
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            post(&open, "acme", "f", &body(Some(5), "hi"))
                .await
                .status(),
            200
        );
    }
    let m = open.metrics().await;
    assert_eq!(
        metric(&m, "keel_limits_fail_open_total", &[]),
        Some(2.0),
        "{m}"
    );
    assert!(metric(&m, "keel_limits_backend_errors_total", &[]).unwrap_or(0.0) >= 2.0);
    let events = open.finish_alerts().await;
    let backend: Vec<_> = events.iter().filter(|e| e.source == "backend").collect();
    assert_eq!(backend.len(), 1, "alerted once, not per call: {events:?}");
    assert!(backend[0].message.contains("fail_open"));
}
