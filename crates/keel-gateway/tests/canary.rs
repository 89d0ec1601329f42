#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A canary moved in the store is served by the running gateway within seconds, with no
//! restart: 100 % sends every user to the canary, 0 % sends none, an intermediate step
//! moves only users toward the canary, and a reset returns every user to the variant the
//! configured weights gave them.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Harness, Options};
use keel_core::config::Config;
use keel_registry::parse_prompt;
use keel_store::splits::SplitChange;
use keel_store::Store;
use serde_json::{json, Value};

const PROMPT: &str = r#"
[[messages]]
role = "user"
content = "{{ question }}"
[variables.question]
type = "string"
"#;

const FUNCTIONS: &str = r#"
[registry]
refresh = "100ms"

[functions.support]
sticky = "user"

[[functions.support.variants]]
name = "control"
prompt = "support/answer"
model = "local"
weight = 90

[[functions.support.variants]]
name = "candidate"
prompt = "support/answer"
model = "local"
weight = 10
"#;

async fn start() -> Harness {
    let h = Harness::with(Options {
        extra: FUNCTIONS.into(),
        ..Options::default()
    })
    .await;
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    let p = parse_prompt("support/answer", std::path::Path::new("a.toml"), PROMPT).unwrap();
    keel_store::push_version(
        &conn,
        "support/answer",
        &p.content_hash(),
        &p.to_json().to_string(),
        "test",
        "v1",
        None,
    )
    .unwrap();
    keel_store::set_label(&conn, "support/answer", 1, "production", "test", "v1").unwrap();
    h
}

fn body() -> Value {
    json!({"model": "support", "variables": {"question": "hi"}})
}

/// The variant each user gets now.
async fn assign(h: &Harness, users: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for chunk in users.chunks(25) {
        let calls = chunk.iter().map(|u| async {
            let resp = h
                .post_json(
                    "/v1/chat/completions",
                    &body(),
                    &[("x-keel-user", u.as_str())],
                )
                .await;
            assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
            let variant = resp.headers()["x-keel-variant"]
                .to_str()
                .unwrap()
                .to_string();
            (u.clone(), variant)
        });
        out.extend(futures::future::join_all(calls).await);
    }
    out
}

/// Move the split as `keel function canary` does (same arithmetic, same store call).
fn canary(h: &Harness, variant: &str, percent: &str) {
    let config = Config::from_toml(&h.config_text, std::path::Path::new("keel.toml")).unwrap();
    let f = &config.functions["support"];
    let bps = keel_core::split::parse_percent(percent).unwrap();
    let weights = keel_core::split::canary_weights(f, variant, bps).unwrap();
    let configured = keel_core::split::config_weights(f);
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    keel_store::splits::set_split(
        &conn,
        "support",
        variant,
        bps,
        &weights,
        &SplitChange {
            actor: "test",
            reason: "canary test",
            config_weights: &configured,
        },
    )
    .unwrap();
}

fn reset(h: &Harness) {
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    let removed = keel_store::splits::reset_split(
        &conn,
        "support",
        &SplitChange {
            actor: "test",
            reason: "done",
            config_weights: &[],
        },
    )
    .unwrap();
    assert!(removed.is_some());
}

/// Poll until `probe` users all get `want`; returns how long the gateway took.
async fn wait_until_all(h: &Harness, probe: &[String], want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let got = assign(h, probe).await;
        if got.values().all(|v| v == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "after 5 s the gateway still does not send everyone to {want}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The split `GET /v1/models` says the function serves.
async fn served_split(h: &Harness) -> Value {
    let models: Value = h.get("/v1/models").await.json().await.unwrap();
    let f = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "support")
        .cloned()
        .unwrap();
    f["split"].clone()
}

#[tokio::test]
async fn a_canary_in_the_store_is_served_within_seconds_without_a_restart() {
    let h = start().await;
    let users: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    // Wait for the first snapshot with the prompt in it.
    let start_wait = Instant::now();
    let configured = loop {
        let resp = h
            .post_json("/v1/chat/completions", &body(), &[("x-keel-user", "probe")])
            .await;
        if resp.status() == 200 {
            break assign(&h, &users).await;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(5),
            "prompt never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let on_candidate = configured.values().filter(|v| *v == "candidate").count();
    assert!(
        (15..=70).contains(&on_candidate),
        "{on_candidate} of 400 at 10 %"
    );

    let probe = &users[..40];
    canary(&h, "candidate", "100");
    let took = wait_until_all(&h, probe, "candidate").await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let all = assign(&h, &users).await;
    assert!(all.values().all(|v| v == "candidate"), "{all:?}");
    assert_eq!(
        served_split(&h).await,
        json!({"source": "override", "shares": "control=0,candidate=100"})
    );

    canary(&h, "candidate", "0");
    wait_until_all(&h, probe, "control").await;
    let all = assign(&h, &users).await;
    assert!(all.values().all(|v| v == "control"), "{all:?}");

    // 50 %: about half the users, and everyone the configured 10 % had stays there
    // (moving the canary up only moves users toward it).
    canary(&h, "candidate", "50");
    let start_wait = Instant::now();
    while served_split(&h).await["shares"] != "control=50,candidate=50" {
        assert!(
            start_wait.elapsed() < Duration::from_secs(5),
            "50 % never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let half = assign(&h, &users).await;
    let n = half.values().filter(|v| *v == "candidate").count();
    assert!((150..=250).contains(&n), "{n} of 400 at 50 %");
    for (u, v) in &configured {
        if v == "candidate" {
            assert_eq!(half[u], "candidate", "{u} left the canary when it grew");
        }
    }

    // Reset: every user is back where the configured weights put them.
    reset(&h);
    let start_wait = Instant::now();
    loop {
        let got = assign(&h, &users).await;
        if got == configured {
            break;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(5),
            "the reset split never matched the configured one"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served_split(&h).await,
        json!({"source": "config", "shares": "control=90,candidate=10"})
    );
    h.finish().await;
}

#[tokio::test]
async fn a_stored_split_that_no_longer_fits_keel_toml_is_not_served_and_is_reported() {
    let h = start().await;
    // As if keel.toml had a variant `retired` when the canary was set.
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    let stale = vec![("retired".to_string(), 10_000), ("control".to_string(), 0)];
    keel_store::splits::set_split(
        &conn,
        "support",
        "retired",
        10_000,
        &stale,
        &SplitChange {
            actor: "test",
            reason: "old canary",
            config_weights: &[],
        },
    )
    .unwrap();
    let start_wait = Instant::now();
    let status = loop {
        let status: Value = h.get("/status").await.json().await.unwrap();
        if status["split_problems"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
        {
            break status;
        }
        assert!(start_wait.elapsed() < Duration::from_secs(5), "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let why = status["split_problems"][0].as_str().unwrap();
    assert!(
        why.contains("names variant `retired`, which keel.toml no longer has")
            && why.contains("keel function canary support"),
        "{why}"
    );
    // The configured 90/10 serves (not "everyone on control").
    assert_eq!(
        served_split(&h).await,
        json!({"source": "config", "shares": "control=90,candidate=10"})
    );
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let got = assign(&h, &users).await;
    assert!(got.values().any(|v| v == "candidate"), "{got:?}");
    h.finish().await;
}
