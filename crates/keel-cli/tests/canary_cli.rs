#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Scheduled canaries across two `keel serve` replicas on one store, against a local
//! OpenAI-compatible upstream whose `system_fingerprint` — and answers — change mid-run:
//!
//! 1. At startup the canary is due (never run): exactly one replica takes the lease and
//!    runs it; the other does not run it too.
//! 2. The upstream switches to a new fingerprint that answers differently; a live call
//!    shows it, the version watch audits `model.version_changed`, and the canary runs
//!    again at once (trigger `model_changed`), traced as origin `canary`, on the new
//!    version, compared case by case with the run on the old one: every case flipped, so
//!    `model.behaviour_changed` is audited with the metric, its interval and the cases,
//!    and the `model_behaviour_changed` alert rule fires.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Keel, Replica};
use serde_json::{json, Value};

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "ci")]);
const CASES: usize = 12;

/// An OpenAI-compatible upstream answering `(fingerprint, answer)` from `state`.
async fn upstream(state: Arc<Mutex<(String, String)>>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let (fp, answer) = state.lock().unwrap().clone();
            async move {
                axum::Json(json!({
                    "id": "chatcmpl-canary", "object": "chat.completion", "created": 1,
                    "model": "pinned-2026-01-01", "system_fingerprint": fp,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
                }))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}/v1")
}

fn config(base_url: &str) -> String {
    format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
store = "shared.db"

[providers.pinned-up]
kind = "openai"
base_url = "{base_url}"

[models.pinned]
provider = "pinned-up"
upstream_model = "pinned"
input_price_per_mtok = 1
output_price_per_mtok = 2

[[canaries]]
suite = "pinned-suite"
every = "1h"
models = ["pinned"]

[[alerts]]
name = "behaviour"
metric = "model_behaviour_changed"
scope = "model=pinned"
"#
    )
}

/// Rows of `sql` (every column selected as text, or NULL).
fn query(dir: &std::path::Path, sql: &str) -> Vec<Vec<Value>> {
    let store = keel_store::Store::open(dir.join("shared.db").to_str().unwrap()).unwrap();
    let conn = store.reader().unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        Ok((0..n)
            .map(|i| match r.get::<_, Option<String>>(i).unwrap() {
                Some(v) => Value::String(v),
                None => Value::Null,
            })
            .collect())
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

async fn wait_for(dir: &std::path::Path, sql: &str, n: usize, within: Duration) -> Vec<Vec<Value>> {
    let start = Instant::now();
    loop {
        let rows = query(dir, sql);
        if rows.len() >= n || start.elapsed() > within {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A project with `keel.toml` = `config` and the locked suite `pinned-suite`: `cases`
/// questions on model `pinned`, each passing when the answer contains "yes".
fn project(config: &str, cases: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("evals")).unwrap();
    std::fs::write(
        dir.path().join("evals/pinned-suite.toml"),
        "[target]\nmodel = \"pinned\"\n[dataset]\npath = \"pinned-suite.jsonl\"\n[[assert]]\ntype = \"icontains\"\nvalue = \"yes\"\n",
    )
    .unwrap();
    let lines: Vec<String> = (0..cases)
        .map(|i| json!({"id": format!("c{i}"), "input": format!("Is {i} fine?")}).to_string())
        .collect();
    std::fs::write(
        dir.path().join("evals/pinned-suite.jsonl"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("keel.toml"), config).unwrap();
    KEEL.stdout_ok(
        dir.path(),
        &["eval", "lock", "pinned-suite", "--reason", "canary test"],
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_fingerprint_triggers_the_canary_on_one_replica_and_its_change_is_found() {
    let state = Arc::new(Mutex::new((
        "fp_old".to_string(),
        "yes, of course".to_string(),
    )));
    let base = upstream(state.clone()).await;
    let dir = project(&config(&base), CASES);
    let a = Replica::start(dir.path(), "a", &config(&base));
    let _b = Replica::start(dir.path(), "b", &config(&base));
    let runs = "SELECT trigger, model_version, run_id, baseline_run_id, CAST(changed AS TEXT) FROM canary_runs ORDER BY id";
    let first = wait_for(dir.path(), runs, 1, Duration::from_secs(40)).await;
    assert_eq!(first.len(), 1, "the first run: {first:?}");
    assert_eq!(first[0][0], "schedule");
    assert_eq!(first[0][1], "fp_old");
    // Both replicas had it due at startup; the lease let one run it.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        query(dir.path(), runs).len(),
        1,
        "run once, not once per replica"
    );

    // The provider changes the model behind the name: new fingerprint, other answers.
    *state.lock().unwrap() = ("fp_new".into(), "no.".into());
    let live = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", a.url))
        .json(&json!({"model": "pinned", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let both = wait_for(dir.path(), runs, 2, Duration::from_secs(60)).await;
    assert_eq!(both.len(), 2, "the version change triggers a run: {both:?}");
    assert_eq!(both[1][0], "model_changed");
    assert_eq!(both[1][1], "fp_new");
    assert_eq!(
        both[1][3], first[0][2],
        "compared with the run on the previous version"
    );
    assert_eq!(both[1][4], "1", "a significant change");

    let changed = query(
        dir.path(),
        "SELECT from_value, to_value, details_json FROM audit_events WHERE action = 'model.behaviour_changed'",
    );
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0][0], "fp_old");
    assert_eq!(changed[0][1], "fp_new");
    let details: Value = serde_json::from_str(changed[0][2].as_str().unwrap()).unwrap();
    assert_eq!(details["suite"], "pinned-suite");
    assert_eq!(details["metric"], "pass_rate");
    assert_eq!(details["delta"], -1.0);
    assert_eq!(details["flipped_cases"].as_array().unwrap().len(), CASES);
    let history = KEEL.stdout_ok(dir.path(), &["eval", "history", "pinned-suite"]);
    assert!(
        history.contains("(fp_old)") && history.contains("(fp_new)"),
        "eval history shows the version that answered:\n{history}"
    );
    let canary_traces = query(dir.path(), "SELECT id FROM traces WHERE origin = 'canary'");
    assert_eq!(
        canary_traces.len(),
        2 * CASES,
        "both runs traced as origin canary"
    );
    let fired = wait_for(
        dir.path(),
        "SELECT message FROM alert_events WHERE name = 'behaviour' AND state = 'firing'",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(fired.len(), 1, "the model_behaviour_changed rule fires");
    assert!(
        fired[0][0]
            .as_str()
            .unwrap()
            .contains("canary of suite `pinned-suite`"),
        "{fired:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_calls_are_admitted_against_the_gateways_budgets() {
    let state = Arc::new(Mutex::new(("fp_old".to_string(), "yes".to_string())));
    let base = upstream(state).await;
    // A hard budget far below one call's worst case: every canary call is refused.
    let text = config(&base)
        + "\n[[budgets]]\nname = \"tiny\"\nscope = \"model=pinned\"\nlimit_usd = 0.000000001\nwindow = \"day\"\nmode = \"hard\"\n";
    let dir = project(&text, 1);
    let _a = Replica::start(dir.path(), "a", &text);
    let runs = wait_for(
        dir.path(),
        "SELECT error, run_id FROM canary_runs",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let error = runs[0][0].as_str().unwrap_or_default();
    assert!(error.contains("refused by a budget"), "{runs:?}");
    let refused = query(
        dir.path(),
        "SELECT error_class FROM traces WHERE origin = 'canary'",
    );
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0][0], "budget_exceeded");
    assert!(query(
        dir.path(),
        "SELECT id FROM audit_events WHERE action = 'model.behaviour_changed'"
    )
    .is_empty());
    // The inventory names the canary that runs on the model.
    let inv = KEEL.json_ok(dir.path(), &["models"]);
    assert_eq!(
        inv["models"][0]["canaries"][0], "pinned-suite every 1h",
        "{inv}"
    );
}
