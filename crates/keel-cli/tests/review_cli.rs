#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Human review from a terminal: `keel review list` shows what the intake let in (no
//! `keel serve` needed), `add` puts a trace in by hand (audited, once), `next` labels
//! items from stdin (a refused answer is asked again, `s` skips, `q` stops), `stats`
//! gives the known agreement of known labels, `export` writes them as CSV and JSON, and
//! the labels are `human` scores on the traces. Mistakes exit 2 with what to do.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{project, record_traces, stderr, stdout, Keel};
use keel_core::trace::{TraceRecord, TraceStatus};
use keel_store::feedback::{upsert_feedback, Feedback, FeedbackValue};
use keel_store::scores::{replace_scores, ScoreRow};
use keel_store::Store;
use serde_json::Value;

const KEEL: Keel = Keel::AS_TEST_USER;

const CONFIG: &str = r#"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"

[[online_evals]]
name = "quality"
model = "mock-1"
sample_rate = 1.0
judge = "mock-1"
assert = [{ type = "llm-rubric", rubric = "Answers the question", metric = "helpful" }]

# Filled by hand; two reviewers per item.
[[review_queues]]
name = "pairs"
model = "mock-1"
reviewers = 2

[[review_queues]]
name = "triage"
model = "mock-1"
failed_eval = "quality"
negative_feedback = true
"#;

fn live(id: &str, at: i64) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.model_requested = Some("mock-1".into());
    t.status = TraceStatus::Ok;
    t.input = Some(
        r#"{"model":"mock-1","messages":[{"role":"user","content":"How long do refunds take?"}]}"#
            .into(),
    );
    t.output = Some(format!("Answer of {id}."));
    t
}

/// t1..t4 recorded an hour ago; the judge passed t1, t2 and t4 and failed t3; t2 got a
/// thumbs-down.
fn seeded() -> tempfile::TempDir {
    let dir = project(CONFIG);
    let now = keel_online::now_ms();
    let store = Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
    record_traces(
        &store,
        ["t1", "t2", "t3", "t4"].map(|id| live(id, now - 3_600_000)),
    );
    let mut conn = store.writer_conn().unwrap();
    for (id, passed) in [("t1", true), ("t2", true), ("t3", false), ("t4", true)] {
        let row = ScoreRow {
            metric: "helpful".into(),
            value: if passed { 0.9 } else { 0.2 },
            passed,
            reason: None,
        };
        replace_scores(
            &mut conn,
            id,
            "quality",
            "online",
            &[row],
            None,
            now - 60_000,
        )
        .unwrap();
    }
    let fb = Feedback {
        trace_id: "t2".into(),
        name: "thumbs".into(),
        source: "user".into(),
        value: FeedbackValue::Bool(false),
        comment: None,
        key_id: None,
        at_ms: now - 60_000,
    };
    upsert_feedback(&mut conn, &fb, "admin").unwrap();
    dir
}

/// `keel <args>` with `input` on stdin (not a terminal: answers are read line by line).
fn run_with_input(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .arg("--config")
        .arg(dir.join("keel.toml"))
        .env_remove("KEEL_CONFIG")
        .env("KEEL_ACTOR", "test-actor")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn queue<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["review_queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap()
}

fn add_all(dir: &Path) {
    for id in ["t1", "t2", "t3", "t4"] {
        let out = KEEL.stdout_ok(dir, &["review", "add", "pairs", id, "--reviewer", "lead"]);
        assert!(out.contains(&format!("added {id} to pairs")), "{out}");
    }
}

#[test]
fn list_shows_what_the_intake_let_in_and_add_puts_a_trace_in_once_audited() {
    let dir = seeded();
    let d = dir.path();
    let list = KEEL.json_ok(d, &["review", "list"]);
    let triage = queue(&list, "triage");
    // t2 by its thumbs-down, t3 by its failed eval; no server ran.
    assert_eq!(triage["open"], 2, "{list}");
    assert_eq!(triage["reviewers_per_item"], 1);
    assert_eq!(queue(&list, "pairs")["open"], 0);

    add_all(d);
    let again = KEEL.stdout_ok(d, &["review", "add", "pairs", "t1"]);
    assert!(again.contains("already in pairs"), "{again}");
    let list = KEEL.json_ok(d, &["review", "list"]);
    assert_eq!(queue(&list, "pairs")["open"], 4);
    assert_eq!(queue(&list, "pairs")["reviewers_per_item"], 2);

    let store = Store::open(d.join("keel.db").to_str().unwrap()).unwrap();
    let conn = store.reader().unwrap();
    let audited: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'review.add' AND actor = 'lead'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 4);

    let export = KEEL.stdout_ok(d, &["review", "export", "triage", "--json"]);
    let rows: Value = serde_json::from_str(&export).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 0, "nothing labelled yet");
}

#[test]
fn mistakes_exit_2_and_say_what_to_do() {
    let dir = seeded();
    let d = dir.path();
    let out = KEEL.run(d, &["review", "next", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("configured: pairs, triage"),
        "{}",
        stderr(&out)
    );
    let out = KEEL.run(d, &["review", "add", "pairs", "no-such-trace"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no trace with request id `no-such-trace`"));
    let out = KEEL.run(d, &["review", "export", "pairs", "--since", "a while"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// One item's answers: the verdict, an empty note, the correction.
fn answers(verdict: &str, correction: &str) -> String {
    format!("{verdict}\n\n{correction}\n")
}

#[test]
fn two_reviewers_label_from_stdin_and_stats_export_and_scores_follow() {
    let dir = seeded();
    let d = dir.path();
    add_all(d);
    // ana: good good bad bad (by number and by name); her t3 has a correction.
    let ana = [
        answers("1", ""),
        answers("good", ""),
        answers("2", "Refunds take five days."),
        answers("bad", ""),
    ]
    .concat();
    let out = run_with_input(d, &["review", "next", "pairs", "--reviewer", "ana"], &ana);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("4 labelled"), "{text}");
    assert!(
        text.contains("Answer of t1."),
        "the output is shown: {text}"
    );
    assert!(
        text.contains("How long do refunds take?"),
        "the input is shown: {text}"
    );

    // bo: an out-of-range choice is refused and asked again; then good bad bad bad.
    let bo = [
        answers("7", ""),
        answers("1", ""),
        answers("2", ""),
        answers("2", ""),
        answers("2", ""),
    ]
    .concat();
    let out = run_with_input(d, &["review", "next", "pairs", "--reviewer", "bo"], &bo);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("not saved"), "{text}");
    assert!(text.contains("4 labelled"), "{text}");

    // A third reviewer finds nothing left: every item has its two labels.
    let out = run_with_input(d, &["review", "next", "pairs", "--reviewer", "cy"], "");
    assert!(
        stdout(&out).contains("Nothing left for cy"),
        "{}",
        stdout(&out)
    );

    // Reviewers: (g,g) (g,b) (b,b) (b,b): p_o = 3/4, p_e = 1/2, kappa = 0.5.
    // Humans vs judge (ties left out, t2): t1 good/pass, t3 bad/fail, t4 bad/pass:
    // p_o = 2/3, p_e = 4/9, kappa = 0.4.
    let stats = KEEL.json_ok(d, &["review", "stats", "pairs"]);
    assert_eq!(stats["items_reviewed"], 4, "{stats}");
    assert_eq!(stats["labels"], 8);
    assert_eq!(stats["distribution"]["verdict"]["good"], 3);
    assert_eq!(stats["distribution"]["verdict"]["bad"], 5);
    let kappa = |v: &Value| v["kappa"].as_f64().unwrap();
    assert!((kappa(&stats["reviewers"]) - 0.5).abs() < 1e-9, "{stats}");
    assert_eq!(stats["human_vs_judge"]["n"], 3, "{stats}");
    assert!(
        (kappa(&stats["human_vs_judge"]) - 0.4).abs() < 1e-9,
        "{stats}"
    );
    let text = KEEL.stdout_ok(d, &["review", "stats", "pairs"]);
    assert!(text.contains("Cohen's kappa 0.50"), "{text}");

    // Export: one row per label, with why the item entered and the correction.
    let csv = KEEL.stdout_ok(d, &["review", "export", "pairs", "--since", "1d", "--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 9, "{csv}");
    assert!(lines[0].starts_with("queue,item,trace_id,reviewer,at,entered_because,verdict"));
    assert!(lines[0].ends_with(",note,correction"), "{}", lines[0]);
    let t3_ana = lines
        .iter()
        .find(|l| l.contains(",t3,ana,"))
        .expect("ana's label on t3");
    assert!(t3_ana.contains(",added,bad,"), "{t3_ana}");
    assert!(t3_ana.ends_with("Refunds take five days."), "{t3_ana}");
    let json: Value = serde_json::from_str(
        &KEEL.stdout_ok(d, &["review", "export", "pairs", "--since", "7d", "--json"]),
    )
    .unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert!(rows
        .iter()
        .all(|r| r["queue"] == "pairs" && r["entered_because"] == "added"));
    assert!(rows
        .iter()
        .any(|r| r["reviewer"] == "bo" && r["trace_id"] == "t2" && r["verdict"] == "bad"));

    // The labels are scores on the traces, source `human`, beside the judge's.
    let shown = KEEL.json_ok(d, &["traces", "show", "t1"]);
    let sources: Vec<&str> = shown["scores"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["source"].as_str())
        .collect();
    assert!(
        sources.contains(&"human") && sources.contains(&"online"),
        "{shown}"
    );
}

#[test]
fn skip_passes_an_item_over_for_that_reviewer_and_quit_gives_it_back() {
    let dir = seeded();
    let d = dir.path();
    add_all(d);
    // The default reviewer ($KEEL_ACTOR) skips t1, then quits at t2.
    let out = run_with_input(d, &["review", "next", "pairs"], "s\nq\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("skipped item"), "{text}");
    assert!(text.contains("stopped; 0 labelled"), "{text}");
    // Next time they start at t2 (t1 stays skipped for them, t2 was given back).
    let out = run_with_input(
        d,
        &["review", "next", "pairs", "--limit", "1"],
        &answers("1", ""),
    );
    let text = stdout(&out);
    assert!(text.contains("trace t2"), "{text}");
    assert!(!text.contains("trace t1"), "{text}");
    let export = KEEL.stdout_ok(d, &["review", "export", "pairs", "--json"]);
    let rows: Value = serde_json::from_str(&export).unwrap();
    assert_eq!(rows[0]["reviewer"], "test-actor");
    assert_eq!(rows[0]["trace_id"], "t2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_serve_fills_queues_off_the_request_path_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[gateway]
listen = "127.0.0.1:0"
store = "STORE"
[providers.local]
kind = "mock"
[models.mock-1]
provider = "local"

[[review_queues]]
name = "everything"
model = "mock-1"
sample_rate = 1.0
"#;
    let gw = common::Replica::start(dir.path(), "gw", config);
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&serde_json::json!({"model": "mock-1",
                                  "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The intake runs every 5 s; give it three passes.
    let want = r#"keel_review_items_entered_total{queue="everything",reason="sample"} 1"#;
    let mut text = String::new();
    for _ in 0..60 {
        text = client
            .get(format!("{}/metrics", gw.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(text.contains(want), "{text}");
    assert!(text.contains("keel_review_intake_errors_total 0"), "{text}");
}
