//! Online evals end to end, in process: a gateway with the in-process mock provider (its
//! rules script the judge's verdicts), the judges of `keel-online` plugged in as `keel
//! serve` plugs them, and the store read back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_core::config::Config;
use keel_core::trace::{Origin, TraceRecord};
use keel_gateway::{Extensions, Gateway};
use keel_store::{Store, TraceFilter};
use serde_json::{json, Value};

const RULES: &str = r#"
[[rules]]
match = "Grade the output against the rubric"
reply = '{"score": 0.9, "reasoning": "Helpful and short."}'
"#;

struct Running {
    gateway: Gateway,
    base: String,
    store_path: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A gateway whose `fast` model is judged by the online evals in `online` (TOML), with
/// `judge` (a mock with `judge_mock` settings) as the judge model.
async fn start(online: &str, judge_mock: &str) -> Running {
    start_with_rules(online, judge_mock, RULES).await
}

/// [`start`], with the judge mock's rules.
async fn start_with_rules(online: &str, judge_mock: &str, rules: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    let store_path = dir.path().join("keel.db").to_string_lossy().into_owned();
    let text = format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
store = "{store_path}"

[providers.mock]
kind = "mock"

[providers.judgemock]
kind = "mock"

[providers.judgemock.mock]
rules = "rules.toml"
{judge_mock}

[models.fast]
provider = "mock"
upstream_model = "fast"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

[models.judge]
provider = "judgemock"
upstream_model = "judge"
input_price_per_mtok = 1.0
output_price_per_mtok = 4.0

{online}
"#
    );
    let config = Config::from_toml(&text, &dir.path().join("keel.toml"))
        .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"));
    let evals = keel_online::compile_all(&config).unwrap();
    let extensions = Extensions {
        online: Some(Arc::new(keel_online::OnlineJudges::new(evals))),
        ..Extensions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = Gateway::start_with(config, listener, extensions)
        .await
        .unwrap();
    Running {
        base: format!("http://{}", gateway.addr),
        gateway,
        store_path,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        _dir: dir,
    }
}

impl Running {
    async fn call(&self, text: &str) -> (String, Duration) {
        let started = Instant::now();
        let resp = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&json!({"model": "fast", "messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status(), 200);
        let id = resp.headers()["x-keel-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        resp.bytes().await.unwrap();
        (id, took)
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Wait until `metric` reaches `n` (or fail after 20 s).
    async fn wait_for(&self, metric: &str, n: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.metric(metric).await;
            if v >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{metric} stayed at {v} (< {n})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shut down (the judges finish, the trace queue drains) and read the store back;
    /// the tempdir lives as long as the returned guard.
    async fn finish(self) -> (Store, Vec<TraceRecord>, tempfile::TempDir) {
        self.gateway.shutdown().await.unwrap();
        let store = Store::open(&self.store_path).unwrap();
        let traces = {
            let conn = store.reader().unwrap();
            keel_store::list_traces(
                &conn,
                &TraceFilter {
                    limit: 0,
                    ..TraceFilter::default()
                },
            )
            .unwrap()
        };
        (store, traces, self._dir)
    }
}

#[tokio::test]
async fn sampled_calls_are_judged_off_the_request_path_and_scored_on_their_traces() {
    // The judge takes 600 ms per grading; the live calls must not wait for it.
    let r = start(
        r#"
[[online_evals]]
name = "quality"
model = "fast"
sample_rate = 1.0
judge = "judge"
assert = [
  { type = "llm-rubric", rubric = "Answers the question", threshold = 0.7, metric = "helpful" },
  { type = "word-count", max = 3 },
]
"#,
        "latency_ms = 600",
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let (id, took) = r.call(&format!("question {i}")).await;
        assert!(
            took < Duration::from_millis(400),
            "a live call waited for the judge: {took:?}"
        );
        ids.push(id);
    }
    r.wait_for("keel_online_judged_total", 4.0).await;
    assert_eq!(r.metric("keel_online_sampled_total").await, 4.0);
    assert_eq!(r.metric("keel_online_dropped_total").await, 0.0);
    let (store, traces, _dir) = r.finish().await;
    let conn = store.reader().unwrap();
    for id in &ids {
        let scores = keel_store::scores::scores_for_trace(&conn, id).unwrap();
        let by: Vec<(&str, bool)> = scores
            .iter()
            .map(|s| (s.metric.as_str(), s.passed))
            .collect();
        // The mock's echo is longer than 3 words: the word count fails, the judge passes.
        assert_eq!(by, [("helpful", true), ("word-count", false)], "{scores:?}");
        assert_eq!(scores[0].value, 0.9);
        assert!(scores[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("Helpful and short"));
        assert!(
            scores[0].judge_cost_nanos.unwrap() > 0,
            "the judge's cost is kept"
        );
        assert_eq!(scores[0].source, "online");
    }
    // Each judgment is a traced call of its own: origin judge, its parent the live call,
    // never counted as live traffic.
    let judges: Vec<&TraceRecord> = traces
        .iter()
        .filter(|t| t.origin == Origin::Judge)
        .collect();
    assert_eq!(judges.len(), 4);
    for j in judges {
        assert!(ids.contains(j.parent_id.as_ref().unwrap()));
        assert!(j.tags.contains(&"online:quality".to_string()));
        assert_eq!(j.model_requested.as_deref(), Some("judge"));
    }
    let live = traces.iter().filter(|t| t.origin == Origin::Live).count();
    assert_eq!(live, 4);
    let fig = keel_store::scores::judging_figures(&conn, "quality", 0).unwrap();
    assert_eq!((fig.judged, fig.passed), (4, 0));
}

#[tokio::test]
async fn the_sample_rate_is_honoured_within_binomial_bounds() {
    let r = start(
        r#"
[[online_evals]]
name = "short"
model = "fast"
sample_rate = 0.2
assert = [{ type = "word-count", max = 100 }]
"#,
        "",
    )
    .await;
    let n = 400;
    for i in 0..n {
        r.call(&format!("q{i}")).await;
    }
    let sampled = r.metric("keel_online_sampled_total").await;
    // Binomial(400, 0.2): mean 80, sd 8; 4.5 sd either side.
    assert!(
        (44.0..=116.0).contains(&sampled),
        "sampled {sampled} of {n}"
    );
    r.wait_for("keel_online_judged_total", sampled).await;
    let (store, _, _dir) = r.finish().await;
    let conn = store.reader().unwrap();
    let fig = keel_store::scores::judging_figures(&conn, "short", 0).unwrap();
    assert_eq!(fig.judged as f64, sampled);
}

#[tokio::test]
async fn judging_stops_for_the_day_when_the_judge_spend_cap_is_reached() {
    // One grading costs well over $0.000001: after the first, the cap is reached.
    let r = start(
        r#"
[[online_evals]]
name = "capped"
model = "fast"
sample_rate = 1.0
judge = "judge"
max_judge_spend_usd_per_day = 0.000001
assert = [{ type = "llm-rubric", rubric = "Answers the question" }]
"#,
        "",
    )
    .await;
    r.call("first").await;
    r.wait_for("keel_online_judged_total", 1.0).await;
    for i in 0..3 {
        r.call(&format!("later {i}")).await;
    }
    r.wait_for("keel_online_skipped_total", 3.0).await;
    assert_eq!(r.metric("keel_online_judged_total").await, 1.0);
    let (store, traces, _dir) = r.finish().await;
    let judge_calls = traces.iter().filter(|t| t.origin == Origin::Judge).count();
    assert_eq!(judge_calls, 1, "no judge call once the cap is reached");
    let conn = store.reader().unwrap();
    let config_text = format!(
        "[gateway]\nstore = \"{}\"\n[providers.m]\nkind = \"mock\"\n[models.fast]\nprovider = \"m\"\nupstream_model = \"f\"\n[models.judge]\nprovider = \"m\"\nupstream_model = \"j\"\n[[online_evals]]\nname = \"capped\"\nmodel = \"fast\"\nsample_rate = 1.0\njudge = \"judge\"\nmax_judge_spend_usd_per_day = 0.000001\nassert = [{{ type = \"llm-rubric\", rubric = \"x\" }}]\n",
        store.path()
    );
    let config = Config::from_toml(&config_text, std::path::Path::new("/tmp/keel.toml")).unwrap();
    let status =
        keel_online::status::status((&conn).into(), &config, keel_online::now_ms()).unwrap();
    assert!(status[0].paused_for_budget, "{status:?}");
    assert!(status[0].judge_spend_today_usd > 0.000001);
}

#[tokio::test]
async fn a_judge_that_keeps_failing_is_recorded_as_a_failure_not_as_a_bad_score() {
    let r = start(
        r#"
[[online_evals]]
name = "flaky"
model = "fast"
sample_rate = 1.0
judge = "judge"
assert = [{ type = "llm-rubric", rubric = "Answers the question" }]
"#,
        "rate_500 = 1.0",
    )
    .await;
    let (id, _) = r.call("hello").await;
    r.wait_for("keel_online_failed_total", 1.0).await;
    assert_eq!(r.metric("keel_online_judged_total").await, 0.0);
    let (store, traces, _dir) = r.finish().await;
    let conn = store.reader().unwrap();
    assert!(keel_store::scores::scores_for_trace(&conn, &id)
        .unwrap()
        .is_empty());
    let fig = keel_store::scores::judging_figures(&conn, "flaky", 0).unwrap();
    assert_eq!(fig.failures, 1);
    assert!(fig.last_error.unwrap().contains("upstream_server_error"));
    // The first try and three retries, each traced.
    let tries = traces.iter().filter(|t| t.origin == Origin::Judge).count();
    assert_eq!(tries, 4);
}

#[tokio::test]
async fn failed_calls_and_other_models_are_not_sampled() {
    let r = start(
        r#"
[[online_evals]]
name = "only-fast"
model = "judge"
sample_rate = 1.0
assert = [{ type = "word-count", max = 100 }]
"#,
        "",
    )
    .await;
    r.call("not the judge model").await;
    let resp = r
        .client
        .post(format!("{}/v1/chat/completions", r.base))
        .json(&json!({"model": "judge", "messages": [{"role": "user", "content": "[mock:status=500] x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].is_object());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(r.metric("keel_online_sampled_total").await, 0.0);
    r.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_judges_recorded_calls_once_and_skips_what_was_scored() {
    // Served without judges (as before the online eval was added): nothing is sampled.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let store_path = dir.path().join("keel.db").to_string_lossy().into_owned();
    let text = format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
store = "{store_path}"
[providers.mock]
kind = "mock"
[providers.mock.mock]
rules = "rules.toml"
[models.fast]
provider = "mock"
upstream_model = "fast"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
[[online_evals]]
name = "later"
model = "fast"
sample_rate = 0.1
judge = "fast"
assert = [{{ type = "llm-rubric", rubric = "Answers the question" }}]
"#
    );
    let config = Config::from_toml(&text, &dir.path().join("keel.toml")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = Gateway::start(config.clone(), listener).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for i in 0..6 {
        let r = client
            .post(format!("http://{}/v1/chat/completions", gateway.addr))
            .json(&json!({"model": "fast", "messages": [{"role": "user", "content": format!("q{i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    gateway.shutdown().await.unwrap();

    let store = Arc::new(Store::open(&store_path).unwrap());
    let evals = keel_online::compile_all(&config).unwrap();
    let engine =
        keel_gateway::inproc::InProcess::new(config.clone(), &store, Some(Origin::Judge)).unwrap();
    let opts = keel_online::backfill::BackfillOptions {
        since_ms: 0,
        limit: 4,
        rejudge: false,
    };
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    let first =
        keel_online::backfill::run(engine.app(), store.clone(), &evals[0], &opts, &progress)
            .await
            .unwrap();
    assert_eq!(
        (first.considered, first.judged, first.passed),
        (6, 4, 4),
        "{first:?}"
    );
    assert!(first.judge_spend_usd > 0.0);
    assert_eq!(seen.lock().unwrap().last(), Some(&(4, 4)));
    // Again without a limit: the 4 scored are skipped, the other 2 judged.
    let opts = keel_online::backfill::BackfillOptions { limit: 0, ..opts };
    let second =
        keel_online::backfill::run(engine.app(), store.clone(), &evals[0], &opts, &progress)
            .await
            .unwrap();
    assert_eq!(
        (second.judged, second.skipped_already_scored),
        (2, 4),
        "{second:?}"
    );
    let written = tokio::task::spawn_blocking(move || engine.finish())
        .await
        .unwrap();
    assert_eq!(written, 6, "one judge trace per judged call");
    let conn = store.reader().unwrap();
    let fig = keel_store::scores::judging_figures(&conn, "later", 0).unwrap();
    assert_eq!(fig.judged, 6);
    let sources: Vec<String> = conn
        .prepare("SELECT DISTINCT source FROM scores")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sources, ["backfill"]);
}

#[tokio::test]
async fn a_judge_reply_without_a_score_is_a_failure_not_a_bad_score() {
    let r = start_with_rules(
        r#"
[[online_evals]]
name = "unreadable"
model = "fast"
sample_rate = 1.0
judge = "judge"
assert = [{ type = "llm-rubric", rubric = "Answers the question" }, { type = "word-count", max = 100 }]
"#,
        "",
        "[[rules]]\nmatch = \"Grade the output against the rubric\"\nreply = \"I cannot grade this.\"\n",
    )
    .await;
    let (id, _) = r.call("hello").await;
    r.wait_for("keel_online_failed_total", 1.0).await;
    assert_eq!(r.metric("keel_online_judged_total").await, 0.0);
    let (store, _, _dir) = r.finish().await;
    let conn = store.reader().unwrap();
    assert!(keel_store::scores::scores_for_trace(&conn, &id)
        .unwrap()
        .is_empty());
    let fig = keel_store::scores::judging_figures(&conn, "unreadable", 0).unwrap();
    assert!(fig.last_error.unwrap().starts_with("judge_unreadable"));
}

#[tokio::test]
async fn responses_api_calls_are_judged_like_chat_calls() {
    let r = start(
        r#"
[[online_evals]]
name = "quality"
model = "fast"
sample_rate = 1.0
judge = "judge"
assert = [{ type = "llm-rubric", rubric = "Answers the question", threshold = 0.7, metric = "helpful" }]
"#,
        "",
    )
    .await;
    let mut ids = Vec::new();
    for stream in [false, true] {
        let resp = r
            .client
            .post(format!("{}/v1/responses", r.base))
            .json(&json!({"model": "fast", "input": "what is keel?", "stream": stream}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        ids.push(
            resp.headers()["x-keel-request-id"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        resp.bytes().await.unwrap();
    }
    r.wait_for("keel_online_judged_total", 2.0).await;
    let (store, _traces, _dir) = r.finish().await;
    let conn = store.reader().unwrap();
    for id in &ids {
        let scores = keel_store::scores::scores_for_trace(&conn, id).unwrap();
        assert_eq!(scores.len(), 1, "{id}: {scores:?}");
        assert!(
            scores[0].passed && scores[0].metric == "helpful",
            "{scores:?}"
        );
    }
}
