//! PagerDuty delivery against a local server that speaks Events API v2 as PagerDuty
//! documents it: 202 `{"status":"success","dedup_key":…}` for a valid event, 400
//! `invalid event` for a missing field; a firing triggers and its resolution resolves the
//! same dedup key; a missing routing key is recorded as the destination's error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use keel_core::config::alerting::Destination;
use keel_store::Store;
use serde_json::{json, Value};

use super::*;

/// The Events v2 endpoint: validates as PagerDuty does and keeps accepted events.
async fn pagerduty() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/v2/enqueue",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let s = s2.clone();
            async move {
                let mut errors = Vec::new();
                if v["routing_key"].as_str().is_none_or(|k| k.len() != 32) {
                    errors.push("'routing_key' must be a 32 character integration key");
                }
                match v["event_action"].as_str() {
                    Some("trigger") => {
                        for f in ["summary", "source", "severity"] {
                            if v["payload"][f].as_str().is_none_or(str::is_empty) {
                                errors.push("payload is missing a required field");
                            }
                        }
                        if !["critical", "error", "warning", "info"]
                            .contains(&v["payload"]["severity"].as_str().unwrap_or(""))
                        {
                            errors.push("'severity' is invalid");
                        }
                    }
                    Some("resolve") | Some("acknowledge") => {
                        if v["dedup_key"].as_str().is_none() {
                            errors.push("'dedup_key' is required to resolve");
                        }
                    }
                    _ => errors.push("'event_action' is invalid"),
                }
                if !errors.is_empty() {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})),
                    );
                }
                let key = v["dedup_key"].clone();
                s.lock().unwrap().push(v);
                (
                    StatusCode::ACCEPTED,
                    axum::Json(json!({"status": "success", "message": "Event processed", "dedup_key": key})),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}/v2/enqueue"), seen)
}

fn notice(state: AlertState, at_ms: i64) -> AlertNotice {
    AlertNotice {
        source: "rule",
        name: "support-spend".into(),
        scope: "feature=support".into(),
        state,
        value: Some(12.0),
        threshold: Some(5.0),
        message: "spend_rate is above 5: 12 USD/h".into(),
        dedupe_key: "rule|support-spend".into(),
        to: vec!["pd".into()],
        repeat: None,
        at_ms,
        incident: Some(keel_core::config::alerting::IncidentOnFire {
            kind: Some("cost-runaway".into()),
        }),
    }
}

fn dispatcher(dir: &tempfile::TempDir, url: &str, env: &str) -> Dispatcher {
    let store = Arc::new(Store::open(dir.path().join("k.db").to_str().unwrap()).unwrap());
    let mut dest = BTreeMap::new();
    dest.insert(
        "pd".to_string(),
        Destination::PagerDuty {
            url: url.into(),
            routing_key_env: env.into(),
            severity: "critical".into(),
        },
    );
    Dispatcher::new(store, dest)
}

#[tokio::test]
async fn a_firing_triggers_and_its_resolution_resolves_the_same_dedup_key() {
    let (url, seen) = pagerduty().await;
    let dir = tempfile::tempdir().unwrap();
    // Set once for this process; the variable name is this test's own.
    std::env::set_var("KEEL_TEST_PD_KEY", "0123456789abcdef0123456789abcdef");
    let d = dispatcher(&dir, &url, "KEEL_TEST_PD_KEY");
    let now = keel_store::prompts::now_ms();
    let fired = d
        .dispatch_one(notice(AlertState::Firing, now))
        .await
        .unwrap();
    let Dispatched::Sent { delivered, .. } = fired else {
        panic!("not sent: {fired:?}")
    };
    assert_eq!(delivered["pd"], "ok");
    d.dispatch_one(notice(AlertState::Resolved, now + 60_000))
        .await
        .unwrap();
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[0]["payload"]["severity"], "critical");
    assert_eq!(events[0]["payload"]["source"], "keel");
    assert_eq!(events[0]["payload"]["component"], "feature=support");
    assert!(events[0]["payload"]["summary"]
        .as_str()
        .unwrap()
        .contains("support-spend"));
    assert_eq!(events[0]["payload"]["custom_details"]["incident_id"], 1);
    assert_eq!(events[1]["event_action"], "resolve");
    assert_eq!(events[0]["dedup_key"], events[1]["dedup_key"]);
    assert!(events[1].get("payload").is_none());
}

#[tokio::test]
async fn a_missing_routing_key_is_the_destinations_error() {
    let (url, seen) = pagerduty().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dispatcher(&dir, &url, "KEEL_TEST_PD_KEY_UNSET_ANYWHERE");
    let fired = d
        .dispatch_one(notice(AlertState::Firing, keel_store::prompts::now_ms()))
        .await
        .unwrap();
    let Dispatched::Sent { delivered, .. } = fired else {
        panic!("not recorded: {fired:?}")
    };
    assert!(delivered["pd"].contains("KEEL_TEST_PD_KEY_UNSET_ANYWHERE is not set"));
    assert!(seen.lock().unwrap().is_empty());
}
