#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two `keel serve` processes on one PostgreSQL database are one system: traces sent to
//! either are listed by both, counted once in the rollups and the report; a key created
//! on one authenticates on the other, and a revocation on the other takes effect on
//! both; a prompt label moved with the CLI is served by both within the registry
//! refresh.
//!
//! And when the database goes away mid-load, a gateway keeps serving calls, says so on
//! `/health`, and writes what its queue held once the database is back.
//!
//! Each test has its own database on the server at `KEEL_TEST_POSTGRES` (default the
//! machine's, `postgres://postgres@127.0.0.1:5432/test`), dropped when it ends.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{stderr, stdout, write_prompt, Replica, SUPPORT_ANSWER};
use keel_store::testing::{CutProxy, TestDb};
use serde_json::{json, Value};

const ADMIN: &str = "admin-test-key-0123456789";

fn config(url: &str) -> String {
    format!(
        r#"
prompts = "prompts"

[gateway]
listen = "127.0.0.1:0"
store = "{url}"

[auth]
mode = "required"
admin_key_env = "KEEL_ADMIN_KEY"
refresh = "500ms"

[registry]
refresh = "500ms"

[providers.local]
kind = "mock"

[models.mock-1]
provider = "local"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

[functions.support-answer]
[[functions.support-answer.variants]]
name = "control"
prompt = "support/answer"
prompt_label = "production"
model = "mock-1"
weight = 100
"#
    )
}

/// `keel <args> --config <dir>/a.toml`, asserting success; its stdout.
fn keel(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .arg("--config")
        .arg(dir.join("a.toml"))
        .env_remove("KEEL_CONFIG")
        .env("KEEL_ACTOR", "test-actor")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

async fn call(url: &str, key: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn chat(n: usize) -> Value {
    json!({"model": "mock-1", "messages": [{"role": "user", "content": format!("hello {n}")}]})
}

fn support() -> Value {
    json!({"model": "support-answer", "variables": {"product": "Keel", "question": "How?"}})
}

/// Poll `check` until it holds, or fail after `limit` saying `what`.
async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_database_are_one_system() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    write_prompt(dir.path(), "support/answer.toml", SUPPORT_ANSWER);
    let cfg = config(&db.url());
    std::fs::write(dir.path().join("a.toml"), &cfg).unwrap();
    keel(dir.path(), &["prompt", "push", "-m", "v1"]);
    keel(
        dir.path(),
        &[
            "prompt",
            "label",
            "support/answer",
            "1",
            "production",
            "--reason",
            "ship",
        ],
    );
    let env = [("KEEL_ADMIN_KEY", ADMIN)];
    let mut a = Replica::start_with_env(dir.path(), "a", &cfg, &env);
    let mut b = Replica::start_with_env(dir.path(), "b", &cfg, &env);

    // A key created over A's admin API works on B once B's key refresh has run.
    let created: Value = reqwest::Client::new()
        .post(format!("{}/admin/keys", a.url))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    eventually(
        "B to accept the key created on A",
        Duration::from_secs(10),
        async || call(&b.url, &key, chat(0)).await.0 == 200,
    )
    .await;

    // Traffic to both replicas: 10 more calls each.
    for n in 1..=10 {
        assert_eq!(call(&a.url, &key, chat(n)).await.0, 200);
        assert_eq!(call(&b.url, &key, chat(n + 100)).await.0, 200);
    }
    // A label moved with the CLI is served by both.
    write_prompt(
        dir.path(),
        "support/answer.toml",
        &SUPPORT_ANSWER.replace("support agent", "helpful support agent"),
    );
    keel(dir.path(), &["prompt", "push", "-m", "v2"]);
    keel(
        dir.path(),
        &[
            "prompt",
            "label",
            "support/answer",
            "2",
            "production",
            "--reason",
            "v2",
        ],
    );
    for url in [&a.url, &b.url] {
        eventually(
            "v2 served by both replicas",
            Duration::from_secs(10),
            async || prompt_version(url, &key).await == Some(2),
        )
        .await;
    }

    // Revoked over B's admin API: refused by A within its refresh.
    let revoked = reqwest::Client::new()
        .post(format!("{}/admin/keys/{id}/revoke", b.url))
        .bearer_auth(ADMIN)
        .json(&json!({"reason": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    assert_eq!(call(&b.url, &key, chat(999)).await.0, 401, "B at once");
    eventually(
        "A to refuse the revoked key",
        Duration::from_secs(10),
        async || call(&a.url, &key, chat(998)).await.0 == 401,
    )
    .await;
    a.stop();
    b.stop();

    // Every call is in the one store, listed the same from either config, counted once.
    let live: Value = serde_json::from_str(&keel(
        dir.path(),
        &["traces", "list", "--limit", "0", "--status", "ok", "--json"],
    ))
    .unwrap();
    let ok_calls = live.as_array().unwrap().len();
    assert!(ok_calls >= 23, "{ok_calls} ok calls listed");
    let report: Value =
        serde_json::from_str(&keel(dir.path(), &["report", "--since", "1h", "--json"])).unwrap();
    let requests = report["totals"]["requests"].as_u64().unwrap();
    let all: Value = serde_json::from_str(&keel(
        dir.path(),
        &["traces", "list", "--limit", "0", "--json"],
    ))
    .unwrap();
    assert_eq!(
        requests as usize,
        all.as_array().unwrap().len(),
        "the report counts each trace once"
    );
    // The rollups (what the dashboard reads) agree with the traces.
    let store = keel_store::Store::open(&db.url()).unwrap();
    let conn = store.conn().unwrap();
    let kept = keel_store::rollup::all_rows(&conn).unwrap();
    let day_all: u64 = kept
        .iter()
        .filter(|(k, _)| k.0 == keel_store::rollup::DAY_MS && k.3 == "all")
        .map(|(_, c)| c.requests)
        .sum();
    assert_eq!(day_all, requests, "rollups not double-counted");
}

/// The prompt version a call to `support-answer` on `url` was served with.
async fn prompt_version(url: &str, key: &str) -> Option<i64> {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&support())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.headers()
        .get("x-keel-prompt-version")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn health(url: &str) -> Value {
    reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_database_gone_calls_are_served_health_says_degraded_and_traces_wait() {
    let db = TestDb::new();
    let proxy = CutProxy::start(TestDb::server_addr());
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
store = "{}"

[providers.local]
kind = "mock"

[models.mock-1]
provider = "local"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"#,
        db.url_via(&proxy.addr)
    );
    let mut gw = Replica::start(dir.path(), "gw", &cfg);
    let client = reqwest::Client::new();
    let send = |n: usize| {
        client
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat(n))
            .send()
    };
    for n in 0..20 {
        assert_eq!(send(n).await.unwrap().status().as_u16(), 200);
    }
    assert_eq!(health(&gw.url).await["store"]["status"], "ok");

    proxy.cut();
    // Every call is still answered while the store is unreachable...
    for n in 20..120 {
        assert_eq!(send(n).await.unwrap().status().as_u16(), 200, "call {n}");
    }
    // ...and the gateway says its store is degraded.
    eventually(
        "/health to say degraded",
        Duration::from_secs(15),
        async || {
            let h = health(&gw.url).await;
            h["status"] == "degraded" && h["store"]["status"] == "degraded"
        },
    )
    .await;
    let h = health(&gw.url).await;
    assert_eq!(h["store"]["backend"], "postgres");
    assert!(h["store"]["error"].is_string(), "{h}");

    proxy.restore();
    eventually("/health to recover", Duration::from_secs(20), async || {
        health(&gw.url).await["status"] == "ok"
    })
    .await;
    gw.stop();
    // Nothing the queue held was lost: all 120 calls are in the store.
    let store = keel_store::Store::open(&db.url()).unwrap();
    let conn = store.conn().unwrap();
    assert_eq!(keel_store::count_traces(&conn).unwrap(), 120);
}
