#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `[cache] backend = "redis"`: two gateways (each with its own store and upstream) share
//! cached replies — chat and embeddings — through Redis, with the cache's TTL on the
//! Redis keys; a Redis that does not answer is a miss, never an error. Keys live under a
//! prefix of this test's own, deleted at the end. Needs Redis at 127.0.0.1:6379
//! (`KEEL_SKIP_REDIS=1` skips).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const REDIS: &str = "redis://127.0.0.1:6379";

async fn conn() -> Option<redis::aio::MultiplexedConnection> {
    if std::env::var_os("KEEL_SKIP_REDIS").is_some() {
        return None;
    }
    let client = redis::Client::open(REDIS).unwrap();
    let c = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()
    .and_then(Result::ok);
    assert!(
        c.is_some(),
        "no Redis at {REDIS}: start it, or set KEEL_SKIP_REDIS=1"
    );
    c
}

async fn gateway(url: &str, prefix: &str) -> Harness {
    Harness::with(Options {
        extra: format!(
            "[cache]\nenabled = true\nttl = \"30s\"\nbackend = \"redis\"\nredis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\n"
        ),
        ..Options::default()
    })
    .await
}

fn cache_header(r: &reqwest::Response) -> String {
    r.headers()["x-keel-cache"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_reply_cached_by_one_replica_is_served_by_the_other() {
    let Some(mut redis) = conn().await else {
        return;
    };
    let prefix = format!("keel-test-cache-{}:", std::process::id());
    let (a, b) = (gateway(REDIS, &prefix).await, gateway(REDIS, &prefix).await);
    let mut body = chat_body("mock-1", "shared between replicas");
    body["temperature"] = json!(0);
    let first = a.chat(&body).await;
    assert_eq!(cache_header(&first), "miss");
    let first: Value = first.json().await.unwrap();
    let emb = json!({"model": "mock-1", "input": "a shared vector"});
    let r = a.post_json("/v1/embeddings", &emb, &[]).await;
    assert_eq!(cache_header(&r), "miss");

    // The write is sent off the request path: give it a moment.
    let mut hit = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = b.chat(&body).await;
        if cache_header(&r) == "hit" {
            hit = Some(r);
            break;
        }
    }
    let hit = hit.expect("replica b served replica a's cached reply");
    assert_eq!(hit.headers()["x-keel-cost-usd"], "0.00");
    let hit: Value = hit.json().await.unwrap();
    assert_eq!(hit["choices"], first["choices"]);
    let r = b.post_json("/v1/embeddings", &emb, &[]).await;
    assert_eq!(cache_header(&r), "hit");

    // The keys carry the cache's TTL.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}cache:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 30_000, "{ttl}");
    let _: i64 = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut redis)
        .await
        .unwrap();
    a.finish().await;
    b.finish().await;
}

#[tokio::test]
async fn a_redis_that_does_not_answer_is_a_miss() {
    // Nothing listens on port 1: every read fails fast, every call goes upstream.
    let h = gateway("redis://127.0.0.1:1", "keel-test-nowhere:").await;
    let mut body = chat_body("mock-1", "no redis here");
    body["temperature"] = json!(0);
    for _ in 0..2 {
        let r = h.chat(&body).await;
        assert_eq!(r.status(), 200);
    }
    h.finish().await;
}

#[test]
fn the_backend_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.toml");
    for (cache, needle) in [
        ("backend = \"redis\"", "needs a Redis URL"),
        ("backend = \"disk\"", "unknown cache backend `disk`"),
        (
            "redis_url = \"redis://x\"",
            "only applies to backend = \"redis\"",
        ),
    ] {
        let text = format!("[cache]\nenabled = true\n{cache}\n");
        let e = keel_core::config::Config::from_toml(&text, &path).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
}
