#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel releases`, driven through the built binary against a store seeded through
//! keel_store (releases as the gateway records them, traces through the trace writer).

mod common;

use std::path::Path;

use common::Keel;
use keel_core::money::Nanos;
use keel_core::release::Release;
use keel_core::trace::{TraceRecord, TraceStatus};
use serde_json::{Map, Value};

const KEEL: Keel = Keel::with_env(&[]);

const CONFIG: &str = r#"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
upstream_model = "mock-1"
"#;

fn release(function: &str, version: i64, temperature: f64) -> Release {
    let mut params = Map::new();
    params.insert("temperature".into(), temperature.into());
    let tools = (version == 2).then(|| {
        vec![serde_json::json!({"type": "function", "function": {"name": "lookup_order"}})]
    });
    Release::new(
        function,
        "control",
        "support/answer",
        version,
        "hash",
        "mock-1",
        "mock",
        "mock-1",
        params,
        tools,
    )
}

fn served(id: &str, rel: &Release, at: i64) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.function = Some(rel.function.clone());
    t.variant = Some(rel.variant.clone());
    t.prompt_name = Some(rel.prompt_name.clone());
    t.prompt_version = Some(rel.prompt_version);
    t.release_id = Some(rel.id.clone());
    t.input_tokens = Some(10);
    t.output_tokens = Some(5);
    t.cost = Some(Nanos(2_000));
    t.latency_ms = 40;
    t
}

const T0: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
const DAY: i64 = 86_400_000;

/// v1 served three calls (one an error, one unpriced) on Nov 1; v2 two on Nov 3;
/// v3 was deployed on Nov 4 and has not served; `summarize` served once on Nov 2.
fn seed(dir: &Path) -> [Release; 4] {
    let v1 = release("support-answer", 1, 0.2);
    let v2 = release("support-answer", 2, 0.2);
    let v3 = release("support-answer", 3, 0.2);
    let other = release("summarize", 1, 0.5);
    let store = keel_store::Store::open(dir.join("keel.db").to_str().unwrap()).unwrap();
    let conn = store.writer_conn().unwrap();
    for (rel, at) in [
        (&v1, T0 - DAY),
        (&v2, T0 + DAY),
        (&v3, T0 + 3 * DAY),
        (&other, T0),
    ] {
        assert!(keel_store::record_release(&conn, rel, at).unwrap());
    }
    let mut err = served("v1-err", &v1, T0 + 1_000);
    err.status = TraceStatus::Error;
    err.http_status = 502;
    err.cost = None;
    let mut unpriced = served("v1-unpriced", &v1, T0 + 2_000);
    unpriced.cost = None;
    unpriced.unpriced = true;
    let traces = [
        served("v1-a", &v1, T0),
        err,
        unpriced,
        served("x-a", &other, T0 + DAY),
        served("v2-a", &v2, T0 + 2 * DAY),
        served("v2-b", &v2, T0 + 2 * DAY + 1),
    ];
    assert_eq!(common::record_traces(&store, traces).written_total, 6);
    [v1, v2, v3, other]
}

#[test]
fn an_empty_store_says_how_releases_appear() {
    let dir = common::project(CONFIG);
    let out = KEEL.stdout_ok(dir.path(), &["releases"]);
    assert!(out.contains("No releases yet"), "{out}");
    assert!(out.contains("[functions]"), "{out}");
    assert_eq!(
        KEEL.json_ok(dir.path(), &["releases"]),
        serde_json::json!([])
    );
}

#[test]
fn the_table_lists_releases_newest_first_with_their_traffic() {
    let dir = common::project(CONFIG);
    let [v1, v2, v3, other] = seed(dir.path());
    let out = KEEL.stdout_ok(dir.path(), &["releases"]);
    let pos = |id: &str| {
        out.find(id)
            .unwrap_or_else(|| panic!("{id} missing:\n{out}"))
    };
    assert!(pos(&v2.id) < pos(&other.id), "{out}");
    assert!(pos(&other.id) < pos(&v1.id), "{out}");
    assert!(pos(&v1.id) < pos(&v3.id), "never served comes last:\n{out}");

    let line = |id: &str| out.lines().find(|l| l.contains(id)).unwrap().to_string();
    let l1 = line(&v1.id);
    assert!(l1.contains("support-answer/control"), "{l1}");
    assert!(l1.contains("support/answer v1"), "{l1}");
    assert!(l1.contains("mock-1"), "{l1}");
    assert!(l1.contains("2026-11-01 00:00"), "{l1}");
    assert!(l1.contains("33.3%"), "one error in three:\n{l1}");
    assert!(l1.contains("$0.000002 + 1 unpriced"), "{l1}");
    assert!(l1.contains("40/40 ms"), "{l1}");
    let l3 = line(&v3.id);
    assert!(l3.contains("never"), "{l3}");
    assert!(out.contains("4 releases; traffic over all time"), "{out}");
    assert!(out.contains("1 call has no known price"), "{out}");

    // With --function: only its releases, then their parameters and tools.
    let out = KEEL.stdout_ok(
        dir.path(),
        &["releases", "--function", "support-answer", "--limit", "2"],
    );
    assert!(!out.contains(&other.id) && !out.contains(&v3.id), "{out}");
    assert!(out.contains("Parameters and tools:"), "{out}");
    assert!(
        out.contains(r#"params {"temperature":0.2}  tools lookup_order"#),
        "{out}"
    );

    let out = KEEL.stdout_ok(dir.path(), &["releases", "--function", "nope"]);
    assert!(out.contains("No releases match (function `nope`)"), "{out}");
}

#[test]
fn json_has_every_field_and_since_narrows_the_window() {
    let dir = common::project(CONFIG);
    let [v1, v2, v3, other] = seed(dir.path());
    let all = KEEL.json_ok(dir.path(), &["releases"]);
    let rows = all.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let r1 = rows.iter().find(|r| r["id"] == v1.id.as_str()).unwrap();
    assert_eq!(r1["function"], "support-answer");
    assert_eq!(r1["prompt_version"], 1);
    assert_eq!(r1["upstream_model"], "mock-1");
    assert_eq!(r1["params"]["temperature"], 0.2);
    assert_eq!(r1["tools"], Value::Null);
    assert_eq!(r1["created_at_ms"], T0 - DAY);
    assert_eq!(r1["first_served_ms"], T0);
    assert_eq!(r1["last_served_ms"], T0 + 2_000);
    assert_eq!(r1["requests"], 3);
    assert_eq!(r1["errors"], 1);
    assert_eq!(r1["cost_nanos"], 2_000);
    assert_eq!(r1["priced_calls"], 1);
    assert_eq!(r1["unpriced_calls"], 1);
    assert_eq!(r1["latency_ms"]["p95"], 40);
    assert_eq!(r1["quality"], Value::Null, "nothing judged");
    let r3 = rows.iter().find(|r| r["id"] == v3.id.as_str()).unwrap();
    assert_eq!(r3["first_served_ms"], Value::Null);
    assert_eq!(r3["requests"], 0);

    // Since Nov 2: v1 neither served nor was deployed since; v3 was deployed.
    let recent = KEEL.json_ok(dir.path(), &["releases", "--since", "2026-11-02T00:00:00Z"]);
    let ids: Vec<&str> = recent
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [v2.id.as_str(), other.id.as_str(), v3.id.as_str()]);
    assert_eq!(recent[0]["tools"][0]["function"]["name"], "lookup_order");

    let out = KEEL.stdout_ok(dir.path(), &["releases", "--since", "2026-12-01T00:00:00Z"]);
    assert!(
        out.contains("No releases match (served or deployed since 2026-12-01"),
        "{out}"
    );
}

/// A function served by a mock that fails half its calls at random (seeded), so the
/// samples of a repeated eval case disagree.
const SERVED: &str = r#"
prompts = "prompts"
evals = "evals"
[gateway]
listen = "127.0.0.1:0"
store = "keel.db"
[providers.mock]
kind = "mock"
[providers.mock.mock]
rate_500 = 0.5
seed = 11
[models.mock-1]
provider = "mock"
upstream_model = "mock-1"
[functions.support-answer]
[[functions.support-answer.variants]]
name = "control"
prompt = "support/answer"
prompt_label = "production"
model = "mock-1"
weight = 100
"#;

const SUITE: &str = r#"
[target]
function = "support-answer"
variant = "control"
[dataset]
path = "support.jsonl"
[[assert]]
type = "starts-with"
value = "Mock reply to:"
[run]
concurrency = 1
max_retries = 0
[gate]
min_pass_rate = 0.25
"#;

#[test]
fn a_release_shows_its_newest_eval_run_counted_by_case() {
    let dir = common::project(SERVED);
    let d = dir.path();
    common::write_prompt(d, "support/answer.toml", common::SUPPORT_ANSWER);
    let keel = Keel::with_env(&[("KEEL_ACTOR", "ci")]);
    keel.push_and_label_production(d, &["--author", "t", "--message", "m"], "launch");
    // Deployed: the gateway records the release when it starts serving it.
    common::Replica::start(d, "serve", SERVED).stop();
    let deployed = keel.json_ok(d, &["releases"]);
    assert_eq!(deployed[0]["evals"], serde_json::json!([]), "{deployed}");

    std::fs::create_dir_all(d.join("evals")).unwrap();
    std::fs::write(d.join("evals/support.toml"), SUITE).unwrap();
    let cases: String = (0..8)
        .map(|i| {
            format!("{{\"id\":\"c{i}\",\"variables\":{{\"product\":\"Keel\",\"question\":\"q{i}\"}}}}\n")
        })
        .collect();
    std::fs::write(d.join("evals/support.jsonl"), cases).unwrap();
    keel.stdout_ok(d, &["eval", "lock", "support", "--reason", "r"]);
    let o = keel.run(
        d,
        &[
            "eval",
            "run",
            "support",
            "--repeat",
            "4",
            "--no-cache",
            "--json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        common::stdout_and_stderr(&o)
    );
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    let passed = run["candidate"]["stats"]["passed"].as_u64().unwrap();
    assert!(
        0 < passed && passed < 8,
        "the dice should split the cases: {run}"
    );

    // The row of the release the candidate served carries the run, counted as the run
    // reported it: 8 cases (not 32 samples) and the cases that passed.
    let rows = keel.json_ok(d, &["releases"]);
    let release = run["candidate"]["release_id"].as_str().unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == release)
        .unwrap_or_else(|| panic!("no row for {release}: {rows}"));
    assert_eq!(
        row["requests"], 0,
        "eval traffic is not live traffic: {row}"
    );
    let eval = &row["evals"][0];
    assert_eq!(eval["run_id"], run["candidate"]["run_id"], "{row}");
    assert_eq!(eval["suite"], "support");
    assert_eq!(eval["cases"], 8, "{eval}");
    assert_eq!(eval["passed"], passed, "{eval}");
    assert_eq!(eval["gate_passed"], true, "{eval}");

    let out = keel.stdout_ok(d, &["releases"]);
    let line = out.lines().find(|l| l.contains(release)).unwrap();
    let pct = format!("support {:.0}% gate ok", passed as f64 * 100.0 / 8.0);
    assert!(line.contains(&pct), "{pct} in:\n{out}");
}

#[test]
fn a_release_shows_its_online_pass_rate_and_feedback() {
    let dir = common::project(CONFIG);
    let [v1, v2, _, _] = seed(dir.path());
    let store = keel_store::Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
    let mut conn = store.writer_conn().unwrap();
    for (id, passed) in [("v2-a", true), ("v2-b", false)] {
        let row = keel_store::scores::ScoreRow {
            metric: "helpful".into(),
            value: if passed { 1.0 } else { 0.0 },
            passed,
            reason: None,
        };
        keel_store::scores::replace_scores(&mut conn, id, "quality", "online", &[row], None, T0)
            .unwrap();
    }
    for (id, up) in [("v2-a", true), ("v2-b", true), ("v1-a", false)] {
        let fb = keel_store::Feedback {
            trace_id: id.into(),
            name: "thumbs".into(),
            source: "user".into(),
            value: keel_store::FeedbackValue::Bool(up),
            comment: None,
            key_id: None,
            at_ms: T0,
        };
        store.record_feedback(&fb, "admin").unwrap();
    }
    let all = KEEL.json_ok(dir.path(), &["releases"]);
    let r2 = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == v2.id.as_str())
        .unwrap();
    assert_eq!(r2["quality"]["judged"], 2);
    assert_eq!(r2["quality"]["pass_rate"], 0.5);
    assert_eq!(r2["quality"]["feedback"]["positive_rate"], 1.0);
    let r1 = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == v1.id.as_str())
        .unwrap();
    assert_eq!(r1["quality"]["judged"], 0);
    assert_eq!(r1["quality"]["feedback"]["negative"], 1);

    let out = KEEL.stdout_ok(dir.path(), &["releases"]);
    assert!(out.contains("online pass (95% CI)"), "{out}");
    assert!(out.contains("50.0% [9.5–90.5%] of 2"), "{out}");
    assert!(
        out.contains("100% of 2") && out.contains("0% of 1"),
        "{out}"
    );
}
