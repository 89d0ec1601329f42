#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two `keel serve` processes on one PostgreSQL database are one system: traces sent to
//! either are listed by both, counted once in the rollups and the report; a key created
//! on one authenticates on the other, and a revocation on the other takes effect on
//! both; a prompt label moved with the CLI is served by both within the registry
//! refresh; the dashboard of either shows all the traffic. Budgets settle against one
//! spend: Redis holds the fast counter, PostgreSQL the recorded spend that re-seeds it
//! when Redis loses the key.
//!
//! And when the database goes away mid-load, a gateway keeps serving calls, says so on
//! `/health`, and writes what its queue held once the database is back.
//!
//! Each test has its own database on the server at `KEEL_TEST_POSTGRES` (default the
//! machine's, `postgres://postgres@127.0.0.1:5432/test`), dropped when it ends.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    redis_cleanup, redis_limits_config, redis_prefix, stderr, stdout, write_prompt, Replica,
    SUPPORT_ANSWER,
};
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

    // The dashboard of either replica shows all the traffic: a call served by B is on
    // A's trace page, and both overviews count every trace in the store.
    let on_b = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", b.url))
        .bearer_auth(&key)
        .json(&chat(500))
        .send()
        .await
        .unwrap();
    assert_eq!(on_b.status().as_u16(), 200);
    let trace_id = on_b.headers()["x-keel-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    eventually(
        "A's dashboard to show B's call",
        Duration::from_secs(10),
        async || page(&a.url, &format!("/ui/traces/{trace_id}")).await.0 == 200,
    )
    .await;
    let store = keel_store::Store::open(&db.url()).unwrap();
    eventually(
        "both overviews to count every trace",
        Duration::from_secs(10),
        async || {
            let stored = keel_store::count_traces(&store.conn().unwrap()).unwrap();
            let mut shown = Vec::new();
            for url in [&a.url, &b.url] {
                let (status, html) = page(url, "/?since=1h").await;
                assert_eq!(status, 200, "{html}");
                shown.push(overview_requests(&html));
            }
            shown.iter().all(|n| *n == Some(stored))
        },
    )
    .await;
    drop(store);

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

/// GET a dashboard page with the admin key: (status, body).
async fn page(url: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The overview's "requests" figure.
fn overview_requests(html: &str) -> Option<u64> {
    let at = html.find("label\">requests</div><div class=\"value\">")?;
    let rest = &html[at..];
    let digits: String = rest[rest.find("value\">")? + 7..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
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

/// A call for tenant acme (20 tokens out: 12,900 nanos, 13,800 reserved).
async fn acme_call(url: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .header("x-keel-tenant", "acme")
        .json(&json!({"model": "mock-1", "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi there"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Wait until no reservation is open on `url` and its writer had time to store traces.
async fn settled(url: &str) {
    eventually(
        "reservations to settle",
        Duration::from_secs(10),
        async || {
            let v: Value = reqwest::get(format!("{url}/admin/budgets"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["budgets"]
                .as_array()
                .is_some_and(|rows| rows.iter().all(|r| r["reserved_usd"] == "0.00"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_settle_one_budget_and_postgres_reseeds_redis_when_it_loses_the_key() {
    let Some(prefix) = redis_prefix("pg-budget") else {
        return;
    };
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    // Ten calls fit the budget (13,800 nanos reserved, 12,900 spent each); both replicas
    // on the one database instead of a file each.
    let cfg = redis_limits_config(
        &prefix,
        r#"
[[budgets]]
name = "acme-hard"
scope = "tenant=acme"
limit_usd = 0.000135
window = "month"
"#,
    )
    .replace("\"STORE\"", &format!("\"{}\"", db.url()));
    let mut a = Replica::start(dir.path(), "a", &cfg);
    let mut b = Replica::start(dir.path(), "b", &cfg);
    let urls = [a.url.clone(), b.url.clone()];

    let mut admitted: i64 = 0;
    for i in 0..30 {
        if acme_call(&urls[i % 2]).await == 200 {
            admitted += 1;
        }
    }
    assert!(
        (9..=10).contains(&admitted),
        "{admitted} admitted by the two replicas together"
    );
    settled(&urls[0]).await;
    settled(&urls[1]).await;

    // Redis loses the budget (a restart without persistence): the replicas re-seed it
    // from the spend both recorded in PostgreSQL, not from zero.
    assert!(redis_cleanup(&prefix) > 0);
    let mut again: i64 = 0;
    for i in 0..20 {
        if acme_call(&urls[i % 2]).await == 200 {
            again += 1;
        }
    }
    assert!(
        again <= 1,
        "{again} more calls admitted after Redis lost the key: the budget was reset"
    );
    a.stop();
    b.stop();
    redis_cleanup(&prefix);

    // The spend both replicas recorded in the one store: every admitted call, once.
    let store = keel_store::Store::open(&db.url()).unwrap();
    let scope = keel_core::scope::Scope::parse("tenant=acme").unwrap();
    let spend =
        keel_store::spend::spend_by_scope(&store.conn().unwrap(), &scope, 0, i64::MAX).unwrap();
    assert_eq!(
        spend,
        vec![(
            "acme".to_string(),
            keel_core::money::Nanos(12_900 * (admitted + again))
        )]
    );
}
