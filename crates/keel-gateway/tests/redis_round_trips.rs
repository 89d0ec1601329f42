#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! How many times a governed call talks to Redis (issue 21, item 2): a call with a
//! virtual key, a hard tenant budget, a key budget and requests- and tokens-per-minute
//! limits, all in Redis, costs exactly one script run to be admitted (its own round
//! trip) and one to be settled after its response (a round trip it shares with the
//! settlements of the same 2 ms, when there are any: `settle_batch.rs`; these calls
//! are one after another). Counted with Redis's `MONITOR`, keeping only the
//! commands that name this test's key prefix and were sent by a client (commands a
//! script runs inside Redis are shown as `[0 lua]` and are not round trips).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ADMIN: &str = "admin-secret-for-round-trips";

/// Every command a client sends to Redis that names `prefix`, as MONITOR shows it.
async fn monitor(prefix: String) -> Option<Arc<Mutex<Vec<String>>>> {
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:6379"),
    )
    .await
    .ok()?
    .ok()?;
    let (read, mut write) = stream.into_split();
    write.write_all(b"*1\r\n$7\r\nMONITOR\r\n").await.ok()?;
    let mut lines = BufReader::new(read).lines();
    let first = lines.next_line().await.ok()??;
    assert_eq!(first, "+OK", "MONITOR refused: {first}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        let _keep_open = write;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(&prefix) && !line.contains(" lua]") {
                out.lock().unwrap().push(line);
            }
        }
    });
    Some(seen)
}

/// The command name and the script hash (for EVALSHA) of a MONITOR line.
fn command(line: &str) -> (String, String) {
    let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    (
        quoted.first().unwrap_or(&"").to_uppercase(),
        quoted.get(1).unwrap_or(&"").to_string(),
    )
}

#[tokio::test]
async fn a_governed_call_costs_one_round_trip_to_admit_and_one_to_settle() {
    if std::env::var_os("KEEL_SKIP_REDIS").is_some() {
        return;
    }
    let prefix = format!("keel-test-{}:", uuid::Uuid::new_v4().simple());
    let var = format!("KEEL_TEST_ADMIN_RT_{}", std::process::id());
    std::env::set_var(&var, ADMIN);
    let h = Harness::with(Options {
        extra: format!(
            r#"
[auth]
mode = "required"
admin_key_env = "{var}"

[limits]
backend = "redis"
redis_url = "redis://127.0.0.1:6379"
key_prefix = "{prefix}"
backend_timeout = "5s"

[[budgets]]
name = "tenant-hard"
scope = "tenant"
limit_usd = 100
window = "day"

[[rate_limits]]
scope = "key"
rpm = 100000
tpm = 100000000
"#
        ),
        mock: keel_core::config::mock::MockSettings {
            output_tokens: Some(20),
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let resp = h
        .client
        .post(h.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": "acme", "budget": "10/day", "rpm": 50000, "tpm": 50000000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let key = resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let call = || async {
        h.client
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("mock-1", "how many round trips?"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Warm up: the key table refreshes and the scripts are loaded into Redis.
    for _ in 0..3 {
        assert_eq!(call().await, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let Some(seen) = monitor(prefix.clone()).await else {
        panic!("no Redis at 127.0.0.1:6379: start it, or set KEEL_SKIP_REDIS=1 to skip");
    };
    let calls = 20;
    for _ in 0..calls {
        assert_eq!(call().await, 200);
    }
    // Settlements run after the responses: wait for all of them, then a little more
    // for anything that should not be there.
    for _ in 0..100 {
        if seen.lock().unwrap().len() >= 2 * calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = seen.lock().unwrap().clone();
    let commands: Vec<(String, String)> = lines.iter().map(|l| command(l)).collect();
    assert!(
        commands.iter().all(|(c, _)| c == "EVALSHA"),
        "only scripts, run by hash: {lines:#?}"
    );
    let mut by_script: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, sha) in &commands {
        *by_script.entry(sha.as_str()).or_default() += 1;
    }
    assert_eq!(
        by_script.values().copied().collect::<Vec<_>>(),
        vec![calls, calls],
        "{calls} calls: one admission and one settlement each, got {by_script:?}"
    );
    // Each admission names the four rate buckets (the key's own rpm and tpm, and the
    // `[[rate_limits]]` ones) and both budgets (hash and reservations each) at once.
    let admissions = lines
        .iter()
        .filter(|l| l.contains(&format!("{prefix}r:")))
        .filter(|l| l.matches(&format!("{prefix}b:")).count() == 4)
        .count();
    assert!(admissions >= calls, "{lines:#?}");
    h.finish().await;
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
