#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Kill switches and budget freezes across two `keel serve` replicas on one store:
//! `keel switch off --model` makes both answer 503 `disabled` (message with the reason and
//! the undo command, traced as `disabled`) within the registry refresh, `switch on`
//! restores both; a tenant switch and a budget freeze stop only the calls they cover; every
//! change is audited; unknown names are refused with the known ones.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{stderr, stdout, Keel, Replica};
use serde_json::{json, Value};

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "oncall")]);

const CONFIG: &str = r#"
[gateway]
listen = "127.0.0.1:0"
store = "shared.db"

[registry]
refresh = "300ms"

[providers.local]
kind = "mock"

[models.mock-1]
provider = "local"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

[[budgets]]
name = "acme-monthly"
scope = "tenant=acme"
limit_usd = 100
window = "month"
"#;

async fn call(url: &str, tenant: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .header("x-keel-tenant", tenant)
        .json(&json!({"model": "mock-1", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Wait until every replica answers `tenant`'s call with `status` (within 15 s: the
/// refresh is 300 ms; the margin is for a loaded machine).
async fn until(urls: &[&str], tenant: &str, status: u16) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let mut bodies = Vec::new();
        let mut all = true;
        for u in urls {
            let (s, body) = call(u, tenant).await;
            all &= s == status;
            bodies.push(body);
        }
        if all {
            return bodies;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "replicas did not all answer {status} for {tenant}: {bodies:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn keel(dir: &Path, args: &[&str]) -> String {
    // `Keel::run` passes `--config keel.toml`: the replicas' config, copied there.
    let out = KEEL.run(dir, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_and_freezes_hold_on_both_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::start(dir.path(), "a", CONFIG);
    let b = Replica::start(dir.path(), "b", CONFIG);
    std::fs::copy(dir.path().join("a.toml"), dir.path().join("keel.toml")).unwrap();
    let urls = [a.url.as_str(), b.url.as_str()];
    until(&urls, "acme", 200).await;

    let out = keel(
        dir.path(),
        &[
            "switch",
            "off",
            "--model",
            "mock-1",
            "--reason",
            "bad answers",
        ],
    );
    assert!(out.contains("model `mock-1` is switched off"), "{out}");
    let bodies = until(&urls, "globex", 503).await;
    for b in &bodies {
        assert_eq!(b["error"]["code"], "disabled", "{b}");
        let m = b["error"]["message"].as_str().unwrap();
        assert!(
            m.contains("bad answers") && m.contains("keel switch on --model mock-1"),
            "{m}"
        );
    }
    keel(
        dir.path(),
        &["switch", "on", "--model", "mock-1", "--reason", "fixed"],
    );
    until(&urls, "globex", 200).await;

    keel(
        dir.path(),
        &["switch", "off", "--tenant", "acme", "--reason", "abuse"],
    );
    until(&urls, "acme", 503).await;
    until(&urls, "globex", 200).await;
    keel(
        dir.path(),
        &["switch", "on", "--tenant", "acme", "--reason", "ok"],
    );
    until(&urls, "acme", 200).await;

    let out = keel(
        dir.path(),
        &[
            "budget",
            "freeze",
            "acme-monthly",
            "--reason",
            "cost runaway",
        ],
    );
    assert!(out.contains("budget `acme-monthly` is frozen"), "{out}");
    let bodies = until(&urls, "acme", 503).await;
    assert!(bodies[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("keel budget unfreeze acme-monthly"));
    until(&urls, "globex", 200).await;
    let list = keel(dir.path(), &["switch", "list"]);
    assert!(list.contains("frozen  budget acme-monthly"), "{list}");
    keel(
        dir.path(),
        &[
            "budget",
            "unfreeze",
            "acme-monthly",
            "--reason",
            "contained",
        ],
    );
    until(&urls, "acme", 200).await;

    // Every change audited with who did it; refused calls traced as `disabled`.
    let audit: Value = serde_json::from_str(&keel(dir.path(), &["audit", "--json"])).unwrap();
    let actions: Vec<String> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "oncall")
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "switch.off model=mock-1",
        "switch.on model=mock-1",
        "switch.off tenant=acme",
        "budget.freeze acme-monthly",
        "budget.unfreeze acme-monthly",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} not in {actions:?}"
        );
    }
    drop((a, b));
    let traces = keel(
        dir.path(),
        &[
            "traces", "list", "--error", "disabled", "--json", "--limit", "0",
        ],
    );
    assert!(traces.contains("disabled"), "{traces}");

    // Unknown names are refused with the known ones.
    let bad = KEEL.run(
        dir.path(),
        &["switch", "off", "--model", "nope", "--reason", "x"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("its models are: mock-1"),
        "{}",
        stderr(&bad)
    );
    let bad = KEEL.run(dir.path(), &["budget", "freeze", "nope", "--reason", "x"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("its budgets are: acme-monthly"),
        "{}",
        stderr(&bad)
    );
}
