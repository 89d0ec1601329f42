#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two `keel serve` processes sharing one Redis: a hard budget and a rate limit hold
//! across replicas, not per process — the reason `[limits] backend = "redis"` exists.
//!
//! Each test starts two real gateway processes (the built binary), each with its own
//! SQLite store, both counting limits in the Redis at 127.0.0.1:6379 under a key prefix
//! of the test's own, which it deletes afterwards. No Redis is a failure, unless
//! `KEEL_SKIP_REDIS=1`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{redis_cleanup, redis_limits_config as config, redis_prefix, Replica};

use serde_json::{json, Value};

/// Every mock reply is 20 tokens and "hi there" is 6 prompt tokens, so one call with
/// `max_tokens = 20` costs 6×150 + 20×600 = 12,900 nano-dollars.
const COST: i64 = 12_900;

/// One call to each replica for another tenant, so both hold a Redis connection and
/// loaded scripts before the burst (which replica wins the race is then up to timing
/// alone, and no assertion depends on it).
async fn warm_up(replicas: &[String]) {
    let client = reqwest::Client::new();
    for url in replicas {
        let r = client
            .post(format!("{url}/v1/chat/completions"))
            .header("x-keel-tenant", "warm-up")
            .json(&json!({"model": "mock-1", "max_tokens": 1,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
}

/// `n` simultaneous calls for tenant acme, alternating between the replicas: each
/// call's status, headers and body.
async fn burst(replicas: &[String], n: usize) -> Vec<(u16, reqwest::header::HeaderMap, Value)> {
    let client = reqwest::Client::new();
    let body = json!({"model": "mock-1", "max_tokens": 20,
                      "messages": [{"role": "user", "content": "hi there"}]});
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let req = client
                .post(format!(
                    "{}/v1/chat/completions",
                    replicas[i % replicas.len()]
                ))
                .header("x-keel-tenant", "acme")
                .json(&body);
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                (status, headers, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

/// From a replica's store, read with the store's own query API: the priced spend in
/// nano-dollars and the number of `budget_exceeded` traces of `tenant`.
fn store_spend(dir: &Path, name: &str, tenant: &str) -> (i64, usize) {
    let path = dir.join(format!("{name}.db"));
    let store = keel_store::Store::open(path.to_str().unwrap()).unwrap();
    let traces = keel_store::list_traces(
        &store.reader().unwrap(),
        &keel_store::TraceFilter {
            limit: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let traces: Vec<_> = traces
        .into_iter()
        .filter(|t| t.tenant.as_deref() == Some(tenant))
        .collect();
    let spent = traces.iter().filter_map(|t| t.cost.map(|c| c.0)).sum();
    let blocked = traces
        .iter()
        .filter(|t| t.error_class.as_deref() == Some("budget_exceeded"))
        .count();
    (spent, blocked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hard_budget_holds_across_two_replicas_sharing_redis() {
    let Some(prefix) = redis_prefix("budget") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Worth 50 calls; 200 arrive at once, half at each replica.
    let cfg = config(
        &prefix,
        r#"
[[budgets]]
name = "acme-monthly"
scope = "tenant=acme"
limit_usd = 0.000645
window = "month"
"#,
    );
    let mut a = Replica::start(dir.path(), "a", &cfg);
    let mut b = Replica::start(dir.path(), "b", &cfg);
    let urls = [a.url.clone(), b.url.clone()];
    warm_up(&urls).await;
    let results = burst(&urls, 200).await;
    let limit = 50 * COST;
    let mut ok = [0i64; 2];
    let mut blocked = 0;
    for (i, (status, _, v)) in results.iter().enumerate() {
        match status {
            200 => ok[i % 2] += 1,
            402 => {
                blocked += 1;
                assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(msg.contains("acme-monthly"), "{msg}");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    let admitted = ok[0] + ok[1];
    eprintln!("admitted per replica: {ok:?}");
    // A per-process budget would admit up to 50 at each replica; the shared one holds
    // the total, and admits at least what fits side by side (reservations ≥ cost).
    assert!(
        admitted * COST <= limit,
        "{admitted} calls cost {} > the limit {limit}",
        admitted * COST
    );
    assert!(admitted >= 40, "only {admitted} admitted");
    assert_eq!(admitted + blocked, 200);
    a.stop();
    b.stop();
    let (spent_a, blocked_a) = store_spend(dir.path(), "a", "acme");
    let (spent_b, blocked_b) = store_spend(dir.path(), "b", "acme");
    assert_eq!(spent_a + spent_b, admitted * COST, "the traces agree");
    assert_eq!(blocked_a + blocked_b, blocked as usize);
    assert!(spent_a + spent_b <= limit);
    // Every block is in the audit log, with the budget's message.
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["audit", "--limit", "0", "--json", "--config"])
        .arg(dir.path().join("a.toml"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let blocks: Vec<_> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "block.budget_exceeded")
        .collect();
    assert_eq!(blocks.len(), blocked_a);
    if let Some(e) = blocks.first() {
        assert_eq!(e["target"], "tenant=acme model=mock-1");
        assert_eq!(e["actor"], "anonymous");
        assert!(
            e["reason"].as_str().unwrap().contains("acme-monthly"),
            "{e}"
        );
    }
    redis_cleanup(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_across_two_replicas_sharing_redis() {
    let Some(prefix) = redis_prefix("rate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &prefix,
        r#"
[[rate_limits]]
scope = "tenant"
rpm = 30
"#,
    );
    let a = Replica::start(dir.path(), "a", &cfg);
    let b = Replica::start(dir.path(), "b", &cfg);
    let urls = [a.url.clone(), b.url.clone()];
    warm_up(&urls).await;
    let results = burst(&urls, 80).await;
    let mut ok = [0usize; 2];
    for (i, (status, headers, v)) in results.iter().enumerate() {
        match status {
            200 => {
                ok[i % 2] += 1;
                assert_eq!(headers["x-ratelimit-limit-requests"], "30");
                assert!(headers.contains_key("x-ratelimit-remaining-requests"));
            }
            429 => {
                assert_eq!(v["error"]["code"], "rate_limited", "{v}");
                assert!(headers.contains_key("retry-after"), "{headers:?}");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    // A burst of 30 from idle, then one every 2 s: a per-process limit would admit 30
    // at each replica (60 in all).
    let admitted = ok[0] + ok[1];
    eprintln!("admitted per replica: {ok:?}");
    assert!(
        (30..=31).contains(&admitted),
        "{admitted} admitted across the replicas; the shared limit is 30"
    );
    drop((a, b));
    redis_cleanup(&prefix);
}
