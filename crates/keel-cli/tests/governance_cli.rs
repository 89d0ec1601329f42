#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel keys`, `keel report`'s governance figures and `keel alerts`, driven through the
//! built binary: a key's lifecycle with its audit trail and no secret in the store; spend
//! by key, budget use and top callers by tokens per call; alert rules listed and a test
//! alert delivered to a local webhook.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use common::*;
use keel_core::money::Nanos;
use keel_core::trace::TraceRecord;
use serde_json::Value;

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "ops-alice")]);

fn config(webhook: &str) -> String {
    format!(
        r#"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
upstream_model = "mock-1"
input_price_per_mtok = 1
output_price_per_mtok = 2

[[budgets]]
name = "acme-monthly"
scope = "tenant=acme"
limit_usd = 0.01
window = "month"

[[budgets]]
name = "per-feature"
scope = "feature"
limit_usd = 1
window = "day"
mode = "soft"

[alert_destinations.ops]
kind = "webhook"
url = "{webhook}"

[[alerts]]
name = "acme-spend"
metric = "cost"
scope = "tenant=acme"
window = "1h"
above = 0.001
to = ["ops"]

[[alerts]]
name = "support-thumbs"
metric = "feedback_negative_rate"
scope = "feature=support"
to = ["log"]
"#
    )
}

/// A one-shot HTTP receiver on loopback: the body of the first POST it gets.
fn webhook() -> (String, mpsc::Receiver<Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut len = 0;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        let _ = r.read_exact(&mut body);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
    });
    (url, rx)
}

fn call(id: &str, key: Option<&str>, tenant: &str, feature: &str, tokens: u64) -> TraceRecord {
    let now = keel_store::prompts::now_ms();
    let mut t = TraceRecord::new(id.into(), now - 60_000, "openai", "/v1/chat/completions");
    t.key_id = key.map(String::from);
    t.tenant = Some(tenant.into());
    t.feature = Some(feature.into());
    t.model_requested = Some("mock-1".into());
    t.input_tokens = Some(tokens);
    t.output_tokens = Some(100);
    // $1 and $2 per million tokens.
    t.cost = Some(Nanos(tokens as i64 * 1_000 + 200_000));
    t.latency_ms = 30;
    t
}

#[test]
fn a_key_is_shown_once_stored_as_a_hash_rotated_revoked_and_audited() {
    let dir = project(&config("http://127.0.0.1:9/unused"));
    let p = dir.path();
    let made = KEEL.json_ok(
        p,
        &[
            "keys",
            "create",
            "--tenant",
            "acme",
            "--feature",
            "support",
            "--budget",
            "5/day",
            "--rpm",
            "60",
            "--name",
            "acme-prod",
            "-m",
            "launch",
        ],
    );
    let key = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("keel_{id}_")), "{key}");
    let secret = key.rsplit('_').next().unwrap().to_string();

    let list = KEEL.json_ok(p, &["keys", "list"]);
    let listed = list.to_string();
    assert!(
        listed.contains(&id) && !listed.contains(&secret),
        "{listed}"
    );
    assert_eq!(list["keys"][0]["tenant"], "acme");
    assert_eq!(list["keys"][0]["rpm"], 60);

    let rotated = KEEL.json_ok(
        p,
        &["keys", "rotate", &id, "--grace", "10m", "-m", "rotation"],
    );
    let new_key = rotated["key"].as_str().unwrap();
    assert!(new_key.starts_with(&format!("keel_{id}_")) && new_key != key);
    KEEL.stdout_ok(p, &["keys", "revoke", &id, "-m", "left the project"]);
    let list = KEEL.json_ok(p, &["keys", "list", "--all"]);
    assert!(list["keys"][0]["revoked_at_ms"].is_i64(), "{list}");
    // Without --all the revoked key is not listed, and the output says where it is.
    let plain = KEEL.stdout_ok(p, &["keys", "list"]);
    assert!(
        plain.contains("1 revoked or expired") && plain.contains("keel keys list --all"),
        "{plain}"
    );

    // Neither secret is anywhere in the store's files.
    for f in std::fs::read_dir(p).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in [&secret, new_key.rsplit('_').next().unwrap()] {
            assert!(!text.contains(s), "a key secret was stored");
        }
    }
    let audit = KEEL.json_ok(p, &["audit"]);
    let actions: Vec<_> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("key.revoke", "ops-alice"),
            ("key.rotate", "ops-alice"),
            ("key.create", "ops-alice")
        ]
    );
}

#[test]
fn the_report_shows_spend_by_key_budget_use_and_tokens_per_call() {
    let dir = project(&config("http://127.0.0.1:9/unused"));
    let p = dir.path();
    let store = keel_store::Store::open(p.join("keel.db").to_str().unwrap()).unwrap();
    // acme: two calls through key aaa, one of them with a bloated prompt; globex: one
    // call without a key.
    record_traces(
        &store,
        [
            call("t1", Some("aaa"), "acme", "support", 1_000),
            call("t2", Some("aaa"), "acme", "support", 5_000),
            call("t3", None, "globex", "search", 200),
        ],
    );
    let r = KEEL.json_ok(p, &["report", "--since", "1h"]);
    let by_key: Vec<_> = r["by_key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap(), g["requests"].as_u64().unwrap()))
        .collect();
    assert_eq!(by_key, [("aaa", 2), ("(no key)", 1)]);
    // acme spent $0.0064 of its $0.01 month.
    let acme = r["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["budget"] == "acme-monthly")
        .unwrap();
    assert_eq!(acme["scope"], "tenant=acme");
    assert_eq!(acme["cost_usd"], "0.0064");
    assert!(
        (acme["used"].as_f64().unwrap() - 0.64).abs() < 1e-9,
        "{acme}"
    );
    // Every feature has its own row under the per-feature budget.
    let features: Vec<_> = r["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["budget"] == "per-feature")
        .map(|b| b["scope"].as_str().unwrap())
        .collect();
    assert_eq!(features, ["feature=support", "feature=search"]);
    let first = &r["top_by_tokens_per_call"][0];
    assert_eq!(first["tokens_per_call"], 3_100.0, "{first}");

    // The monthly review of this month has the same calls.
    // (The month the calls were made in, a minute ago.)
    let month = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let m = format!("{}-{:02}", month.year(), u8::from(month.month()));
    let review = KEEL.json_ok(p, &["report", "--month", &m]);
    assert_eq!(review["title"], format!("Keel monthly review {m}"));
    assert_eq!(review["totals"]["requests"], 3);
    // The human forms carry the same sections.
    let text = KEEL.stdout_ok(p, &["report", "--since", "1h"]);
    assert!(
        text.contains("By key") && text.contains("acme-monthly"),
        "{text}"
    );
}

#[test]
fn alert_rules_are_listed_and_a_test_alert_reaches_the_webhook() {
    let (url, got) = webhook();
    let dir = project(&config(&url));
    let p = dir.path();
    let list = KEEL.json_ok(p, &["alerts", "list"]);
    assert_eq!(list["rules"][0]["name"], "acme-spend");
    assert_eq!(list["rules"][0]["state"], "ok");

    let out = KEEL.json_ok(p, &["alerts", "test", "acme-spend"]);
    assert_eq!(out["delivered"]["ops"], "ok", "{out}");
    let body = got
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("[keel] TEST"), "{text}");
    assert!(text.contains("acme-spend"), "{text}");
    assert_eq!(body["keel"]["state"], "test");

    // A quality rule: listed with its scope and baseline; with no feedback yet its test
    // says it is quiet, and why.
    let q = &list["rules"][1];
    assert_eq!(q["metric"], "feedback_negative_rate");
    assert_eq!(q["scope"], "feature=support");
    assert_eq!(q["threshold"], "vs previous 6 windows");
    let out = KEEL.json_ok(p, &["alerts", "test", "support-thumbs"]);
    assert_eq!(out["delivered"]["log"], "ok", "{out}");
    let events = KEEL.json_ok(p, &["alerts", "list"])["events"].clone();
    let text = events
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "support-thumbs"))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        text.contains("negative feedback rate 0.0 %")
            && text.contains("n = 0 feedback values")
            && text.contains("Quiet: fewer than min_samples = 30"),
        "{text}"
    );

    let unknown = KEEL.run(p, &["alerts", "test", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    let msg = stdout_and_stderr(&unknown);
    assert!(msg.contains("acme-spend") && msg.contains("ops"), "{msg}");
}

/// A running gateway with `[auth] mode = "required"`: no key is 401, a wrong or revoked
/// one 401, a key calling a model it may not call 403 — and neither the good key's
/// secret nor the bad one's reaches the debug log, the store or any error body.
#[tokio::test]
async fn auth_failures_are_401_or_403_and_no_key_reaches_a_log_or_the_store() {
    let dir = project("");
    let p = dir.path();
    let cfg = r#"
[gateway]
listen = "127.0.0.1:0"
store = "STORE"
[auth]
mode = "required"
refresh = "200ms"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
[models.mock-2]
provider = "mock"
"#;
    std::fs::write(p.join("keel.toml"), cfg.replace("STORE", "gw.db")).unwrap();
    let made = KEEL.json_ok(
        p,
        &["keys", "create", "--tenant", "acme", "--models", "mock-1"],
    );
    let key = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    let gw = Replica::start(p, "gw", cfg);
    let client = reqwest::Client::new();
    let wrong = format!("keel_{id}_{}", "0".repeat(64));
    let post = |bearer: Option<String>, model: &'static str| {
        let mut r = client
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&serde_json::json!({"model": model,
                   "messages": [{"role": "user", "content": "hi"}]}));
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let mut bodies = String::new();
    for (bearer, model, want, code) in [
        (None, "mock-1", 401, "missing_api_key"),
        (Some(wrong.clone()), "mock-1", 401, "invalid_api_key"),
        (
            Some("not-a-keel-key".to_string()),
            "mock-1",
            401,
            "invalid_api_key",
        ),
        (Some(key.clone()), "mock-2", 403, "model_not_allowed"),
        (Some(key.clone()), "mock-1", 200, ""),
    ] {
        let (status, body) = post(bearer, model).await;
        assert_eq!(status, want, "{body}");
        assert!(body.contains(code), "{body}");
        bodies.push_str(&body);
    }
    drop(gw);
    let secret = key.rsplit('_').next().unwrap();
    let wrong_secret = wrong.rsplit('_').next().unwrap();
    assert!(!bodies.contains(secret) && !bodies.contains(wrong_secret));
    let log = std::fs::read_to_string(p.join("gw.log")).unwrap();
    assert!(
        log.contains("keel gateway listening") || log.contains("listening"),
        "{log}"
    );
    for f in std::fs::read_dir(p).unwrap() {
        let path = f.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for s in [secret, wrong_secret] {
            assert!(!text.contains(s), "a key secret is in {}", path.display());
        }
    }
    // The calls were traced, the refusals with their class and the key's public id.
    let traces = KEEL.json_ok(p, &["traces", "list", "--limit", "0"]);
    let text = traces.to_string();
    assert!(
        text.contains("model_not_allowed") && text.contains(&id),
        "{text}"
    );
}
