//! The dispatcher against a real store and a local webhook receiver: de-duplication,
//! repeat, resolution, recent changes from the audit log, and a failed delivery kept.

use std::sync::{Arc, Mutex};

use keel_store::audit::{record_audit, NewAuditEvent};
use keel_store::Store;
use serde_json::Value;

use super::*;

/// A receiver that keeps every JSON body; answers `status` to each.
async fn receiver(status: u16) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let s = s2.clone();
            async move {
                s.lock().unwrap().push(v);
                axum::http::StatusCode::from_u16(status).unwrap()
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

fn notice(state: AlertState, at_ms: i64) -> AlertNotice {
    AlertNotice {
        source: "rule",
        name: "support-errors".into(),
        scope: "feature=support".into(),
        state,
        value: Some(0.2),
        threshold: Some(0.05),
        message: "error rate 20% > 5% over 10m".into(),
        dedupe_key: "rule|support-errors|feature=support".into(),
        to: vec!["ops".into(), "log".into()],
        repeat: Some(Duration::from_secs(3600)),
        at_ms,
        incident: None,
    }
}

fn dispatcher(dir: &tempfile::TempDir, url: &str) -> (Dispatcher, Arc<Store>) {
    let path = dir.path().join("keel.db");
    let store = Arc::new(Store::open(path.to_str().unwrap()).unwrap());
    let mut dest = BTreeMap::new();
    dest.insert("ops".to_string(), Destination::Webhook { url: url.into() });
    dest.insert("log".to_string(), Destination::Log);
    (Dispatcher::new(store.clone(), dest), store)
}

fn sent(d: &Dispatched) -> bool {
    matches!(d, Dispatched::Sent { .. })
}

#[tokio::test]
async fn firing_is_sent_once_repeated_after_its_interval_and_resolved_once() {
    let (url, seen) = receiver(200).await;
    let dir = tempfile::tempdir().unwrap();
    let (d, store) = dispatcher(&dir, &url);
    let now = keel_store::prompts::now_ms();
    // A label move on the alert's feature, recorded just before it fires.
    record_audit(
        &store.writer_conn().unwrap(),
        now - 60_000,
        &NewAuditEvent {
            actor: "alice",
            action: "prompt.label",
            target: "support/answer",
            from_value: Some("v3".into()),
            to_value: Some("v4".into()),
            reason: Some("shorter answers"),
            details: None,
        },
    )
    .unwrap();

    assert!(sent(
        &d.dispatch_one(notice(AlertState::Firing, now))
            .await
            .unwrap()
    ));
    // Still firing a minute later: nothing new.
    let again = d
        .dispatch_one(notice(AlertState::Firing, now + 60_000))
        .await
        .unwrap();
    assert_eq!(again, Dispatched::Deduplicated);
    // Still firing past `repeat`: sent again, as a reminder.
    let later = now + 3_600_000;
    assert!(sent(
        &d.dispatch_one(notice(AlertState::Firing, later))
            .await
            .unwrap()
    ));
    // Resolved: sent once; a second resolution has nothing to resolve.
    assert!(sent(
        &d.dispatch_one(notice(AlertState::Resolved, later + 1))
            .await
            .unwrap()
    ));
    let twice = d
        .dispatch_one(notice(AlertState::Resolved, later + 2))
        .await
        .unwrap();
    assert_eq!(twice, Dispatched::Deduplicated);
    // Firing again after the resolution is news.
    assert!(sent(
        &d.dispatch_one(notice(AlertState::Firing, later + 3))
            .await
            .unwrap()
    ));

    let got = seen.lock().unwrap().clone();
    let states: Vec<_> = got.iter().map(|v| v["keel"]["state"].clone()).collect();
    assert_eq!(states, ["firing", "firing", "resolved", "firing"]);
    // Slack-compatible: a `text`, which names what fired and what changed before it.
    let text = got[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("[keel] FIRING rule `support-errors` (feature=support)"),
        "{text}"
    );
    assert!(
        text.contains("prompt.label support/answer v3 → v4 by alice (shorter answers)"),
        "{text}"
    );
    assert_eq!(got[0]["keel"]["recent_changes"][0]["actor"], "alice");
    let resolved = got[2]["text"].as_str().unwrap();
    assert!(
        resolved.starts_with("[keel] RESOLVED rule `support-errors`"),
        "{resolved}"
    );

    let events = keel_store::alerts::list_alert_events(&store.reader().unwrap(), 0, 0).unwrap();
    assert_eq!(events.len(), 4, "only what was sent is recorded");
    assert!(events
        .iter()
        .all(|e| e.delivered == Some(serde_json::json!({"ops": "ok", "log": "ok"}))));
}

#[tokio::test]
async fn a_failing_webhook_is_recorded_with_its_error_and_other_destinations_still_get_it() {
    let (url, seen) = receiver(404).await;
    let dir = tempfile::tempdir().unwrap();
    let (d, store) = dispatcher(&dir, &url);
    let mut n = notice(AlertState::Firing, keel_store::prompts::now_ms());
    n.to.push("nowhere".into());
    let Dispatched::Sent { delivered, .. } = d.dispatch_one(n).await.unwrap() else {
        panic!("not sent");
    };
    assert_eq!(delivered["ops"], "webhook answered 404 Not Found");
    assert_eq!(delivered["log"], "ok");
    assert_eq!(
        delivered["nowhere"],
        "destination `nowhere` is not configured"
    );
    // A 4xx is not retried.
    assert_eq!(seen.lock().unwrap().len(), 1);
    let events = keel_store::alerts::list_alert_events(&store.reader().unwrap(), 0, 0).unwrap();
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn a_rule_with_open_incident_opens_one_and_attaches_its_next_firing() {
    let (url, seen) = receiver(200).await;
    let dir = tempfile::tempdir().unwrap();
    let (d, store) = dispatcher(&dir, &url);
    let now = keel_store::prompts::now_ms();
    let with_incident = |state, at| AlertNotice {
        incident: Some(keel_core::config::alerting::IncidentOnFire {
            kind: Some("cost-runaway".into()),
        }),
        ..notice(state, at)
    };
    assert!(sent(
        &d.dispatch_one(with_incident(AlertState::Firing, now))
            .await
            .unwrap()
    ));
    d.dispatch_one(with_incident(AlertState::Resolved, now + 1))
        .await
        .unwrap();
    assert!(sent(
        &d.dispatch_one(with_incident(AlertState::Firing, now + 2))
            .await
            .unwrap()
    ));
    let conn = store.reader().unwrap();
    let all = keel_store::incidents::list(&conn, true, 10).unwrap();
    assert_eq!(all.len(), 1, "the second firing attaches: {all:?}");
    let inc = &all[0];
    assert_eq!(inc.kind.as_deref(), Some("cost-runaway"));
    assert_eq!(inc.scope.as_deref(), Some("feature=support"));
    assert_eq!(inc.alert_rule.as_deref(), Some("support-errors"));
    let (_, events) = keel_store::incidents::get(&conn, inc.id).unwrap().unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "alert").count(), 2);
    // The webhook carries the incident's id and its page.
    let bodies = seen.lock().unwrap().clone();
    let first = &bodies[0]["keel"]["incident"];
    assert_eq!(first["id"], inc.id);
    assert_eq!(first["opened"], true);
    assert_eq!(first["url"], format!("/ui/incidents/{}", inc.id));
    assert_eq!(bodies.last().unwrap()["keel"]["incident"]["opened"], false);
}
