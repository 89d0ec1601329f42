#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Online evals from a terminal: `keel check` refuses a table `keel serve` would refuse,
//! `keel traces show --json` has the call's `"scores"`, `keel traces list` filters on
//! them, and `keel online status --json` reports the judging.

mod common;

use common::{project, record_traces, stdout_and_stderr, Keel};
use keel_core::trace::{TraceRecord, TraceStatus};
use keel_store::scores::ScoreRow;
use keel_store::Store;

const KEEL: Keel = Keel::AS_TEST_USER;

const CONFIG: &str = r#"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

[[online_evals]]
name = "quality"
model = "mock-1"
sample_rate = 0.5
judge = "mock-1"
max_judge_spend_usd_per_day = 2
assert = [
  { type = "llm-rubric", rubric = "Answers the question", metric = "helpful" },
  { type = "word-count", max = 50 },
]
"#;

fn live(id: &str, at: i64) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.model_requested = Some("mock-1".into());
    t.status = TraceStatus::Ok;
    t.output = Some("An answer.".into());
    t
}

#[test]
fn check_refuses_an_online_eval_the_engine_cannot_run() {
    let dir = project(&CONFIG.replace(
        "{ type = \"word-count\", max = 50 },",
        "{ type = \"equals\" },",
    ));
    let out = KEEL.run(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_and_stderr(&out));
    let text = stdout_and_stderr(&out);
    assert!(
        text.contains("online_evals[0].assert[1]") && text.contains("a live call has none"),
        "{text}"
    );
    // Every command that reads the config refuses it too.
    let out = KEEL.run(dir.path(), &["online", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout_and_stderr(&out));
}

#[test]
fn scores_show_on_the_trace_filter_the_list_and_sum_up_in_the_status() {
    let dir = project(CONFIG);
    let d = dir.path();
    let now = keel_online::now_ms();
    let store = Store::open(d.join("keel.db").to_str().unwrap()).unwrap();
    record_traces(
        &store,
        [live("good-1", now - 60_000), live("bad-1", now - 30_000)],
    );
    let mut conn = store.writer_conn().unwrap();
    let row = |metric: &str, value: f64, passed: bool| ScoreRow {
        metric: metric.into(),
        value,
        passed,
        reason: Some(format!("{metric}: {value}")),
    };
    keel_store::scores::replace_scores(
        &mut conn,
        "good-1",
        "quality",
        "online",
        &[row("helpful", 0.9, true), row("word-count", 1.0, true)],
        Some(1_500),
        now - 50_000,
    )
    .unwrap();
    keel_store::scores::replace_scores(
        &mut conn,
        "bad-1",
        "quality",
        "online",
        &[row("helpful", 0.2, false), row("word-count", 1.0, true)],
        Some(1_500),
        now - 20_000,
    )
    .unwrap();
    keel_store::scores::record_failure(
        &conn,
        "quality",
        "other",
        now - 10_000,
        "upstream_timeout: judge too slow",
    )
    .unwrap();

    let shown = KEEL.json_ok(d, &["traces", "show", "bad-1"]);
    let scores = shown["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 2, "{shown}");
    assert_eq!(scores[0]["eval"], "quality");
    assert_eq!(scores[0]["metric"], "helpful");
    assert_eq!(scores[0]["value"], 0.2);
    assert_eq!(scores[0]["passed"], false);
    assert_eq!(scores[0]["reason"], "helpful: 0.2");
    assert_eq!(scores[0]["source"], "online");
    let human = KEEL.stdout_ok(d, &["traces", "show", "bad-1"]);
    assert!(
        human.contains("--- scores ---") && human.contains("helpful 0.20 FAIL"),
        "{human}"
    );

    let ids = |args: &[&str]| -> Vec<String> {
        let v = KEEL.json_ok(d, args);
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&["traces", "list", "--score-below", "helpful=0.5"]),
        ["bad-1"]
    );
    assert_eq!(
        ids(&["traces", "list", "--failed-eval", "quality"]),
        ["bad-1"]
    );
    assert!(ids(&["traces", "list", "--score-below", "helpful=0.1"]).is_empty());
    let out = KEEL.run(d, &["traces", "list", "--score-below", "helpful"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout_and_stderr(&out).contains("METRIC=VALUE"));

    let status = KEEL.json_ok(d, &["online", "status", "--url", "http://127.0.0.1:9"]);
    let e = &status["online_evals"][0];
    assert_eq!(e["name"], "quality");
    assert_eq!(e["judged_last_hour"], 2);
    assert_eq!(e["failed_last_hour"], 1);
    assert_eq!(e["last_error"], "upstream_timeout: judge too slow");
    assert_eq!(e["traffic_last_hour"], 2);
    assert_eq!(e["pending"], serde_json::Value::Null, "no gateway to ask");
    assert_eq!(e["judge_cap_usd"], 2.0);
    let p = &e["pass_rate_24h"];
    assert_eq!((p["rate"].as_f64(), p["n"].as_u64()), (Some(0.5), Some(2)));
    assert!(p["low"].as_f64().unwrap() < 0.5 && p["high"].as_f64().unwrap() > 0.5);
    let human = KEEL.stdout_ok(d, &["online", "status", "--url", "http://127.0.0.1:9"]);
    assert!(
        human.contains("quality") && human.contains("model=mock-1"),
        "{human}"
    );
    assert!(human.contains("last judge error"), "{human}");
}
