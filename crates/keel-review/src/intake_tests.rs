//! `intake`'s tests: each entry rule lets in exactly the calls it names, in the queue's
//! coverage only; a pass never lets a call in twice; the daily cap holds, strongest
//! signals first; traces written late are still seen.

use std::path::Path;

use super::*;
use keel_core::config::Config;
use keel_core::trace::{GuardOutcome, Origin, TraceRecord, TraceStatus};
use keel_store::feedback::{upsert_feedback, Feedback, FeedbackValue};
use keel_store::review::items_for_trace;
use keel_store::scores::{replace_scores, ScoreRow};
use keel_store::Connection;
use keel_store::Store;

const NOW: i64 = 1_800_000_000_000;

fn queue(rules: &str) -> ReviewQueueConfig {
    let toml = format!(
        "[providers.up]\nkind = \"mock\"\n[models.mock-1]\nprovider = \"up\"\n\
         [models.other]\nprovider = \"up\"\n\
         [[online_evals]]\nname = \"q\"\nmodel = \"mock-1\"\nsample_rate = 1.0\n\
         assert = [{{ type = \"not-is-refusal\" }}]\n\
         [[review_queues]]\nname = \"rq\"\nmodel = \"mock-1\"\n{rules}"
    );
    Config::from_toml(&toml, Path::new("/tmp/keel.toml"))
        .map_err(|e| e.to_string())
        .unwrap()
        .review_queues
        .remove(0)
}

fn store() -> (Store, Connection) {
    let store = Store::open(":memory:").unwrap();
    let conn = store.writer_conn().unwrap();
    (store, conn)
}

/// Write a live ok call of `model` at `at`.
fn call(id: &str, model: &str, at: i64) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.model_requested = Some(model.into());
    t.origin = Origin::Live;
    t.status = TraceStatus::Ok;
    t
}

fn write(conn: &mut Connection, traces: &[TraceRecord]) {
    keel_store::writer::write_now(conn, traces).unwrap();
}

fn entered(conn: &Connection, id: &str) -> Option<String> {
    items_for_trace(conn, id)
        .unwrap()
        .into_iter()
        .find(|i| i.queue == "rq")
        .map(|i| i.reason)
}

fn score(conn: &mut Connection, id: &str, metric: &str, value: f64, passed: bool) {
    let rows = [ScoreRow {
        metric: metric.into(),
        value,
        passed,
        reason: None,
    }];
    replace_scores(conn, id, "q", "online", &rows, None, NOW).unwrap();
}

#[test]
fn each_rule_lets_in_the_calls_it_names_and_no_others() {
    let (_s, mut conn) = store();
    let q = queue("negative_feedback = true\nfailed_eval = \"q\"\nscore_below = \"helpful=0.5\"\nguardrail_flagged = true\n");
    let mut flagged = call("flagged", "mock-1", NOW - 10);
    flagged.guardrails.push(GuardOutcome {
        policy: "p".into(),
        check: "pii".into(),
        stage: "input".into(),
        action: "log".into(),
        score: None,
        evidence: Vec::new(),
    });
    let mut blocked = call("blocked", "mock-1", NOW - 10);
    blocked.guardrails.push(GuardOutcome {
        action: "block".into(),
        ..flagged.guardrails[0].clone()
    });
    let calls = vec![
        call("thumbs-down", "mock-1", NOW - 10),
        call("thumbs-up", "mock-1", NOW - 10),
        call("failed", "mock-1", NOW - 10),
        call("low", "mock-1", NOW - 10),
        call("fine", "mock-1", NOW - 10),
        call("other-model", "other", NOW - 10),
        flagged,
        blocked,
    ];
    write(&mut conn, &calls);
    for (id, v) in [
        ("thumbs-down", false),
        ("thumbs-up", true),
        ("other-model", false),
    ] {
        upsert_feedback(
            &conn,
            &Feedback {
                trace_id: id.into(),
                name: "thumbs".into(),
                source: "app".into(),
                value: FeedbackValue::Bool(v),
                comment: None,
                key_id: None,
                at_ms: NOW - 5,
            },
            "test",
        )
        .unwrap();
    }
    score(&mut conn, "failed", "not-is-refusal", 0.0, false);
    score(&mut conn, "low", "helpful", 0.3, true);
    score(&mut conn, "fine", "helpful", 0.9, true);
    score(&mut conn, "other-model", "helpful", 0.1, false);

    let done = run_once((&conn).into(), std::slice::from_ref(&q), NOW).unwrap();
    assert_eq!(done[0].total(), 4, "{done:?}");
    assert_eq!(
        entered(&conn, "thumbs-down").as_deref(),
        Some("negative_feedback")
    );
    assert_eq!(entered(&conn, "failed").as_deref(), Some("failed_eval"));
    assert_eq!(entered(&conn, "low").as_deref(), Some("score_below"));
    assert_eq!(
        entered(&conn, "flagged").as_deref(),
        Some("guardrail_flagged")
    );
    for id in ["thumbs-up", "fine", "other-model", "blocked"] {
        assert_eq!(entered(&conn, id), None, "{id} must not enter");
    }
    // A second pass finds nothing new.
    assert_eq!(
        run_once((&conn).into(), &[q], NOW + 1_000).unwrap()[0].total(),
        0
    );
}

#[test]
fn the_sample_is_deterministic_and_late_traces_are_seen() {
    let (_s, mut conn) = store();
    let q = queue("sample_rate = 0.3\n");
    let early: Vec<TraceRecord> = (0..200)
        .map(|i| call(&format!("a{i}"), "mock-1", NOW - 60_000))
        .collect();
    write(&mut conn, &early);
    let first = run_once((&conn).into(), std::slice::from_ref(&q), NOW).unwrap()[0].total();
    let want = early.iter().filter(|t| in_sample("rq", &t.id, 0.3)).count() as u64;
    assert_eq!(first, want);
    assert!((30..=90).contains(&first), "{first} of 200 at 30 %");
    // A call that started before the last pass but was written after it still counts.
    let late: Vec<TraceRecord> = (0..50)
        .map(|i| call(&format!("b{i}"), "mock-1", NOW - 120_000))
        .collect();
    write(&mut conn, &late);
    let second = run_once((&conn).into(), &[q], NOW + 5_000).unwrap()[0].total();
    assert_eq!(
        second,
        late.iter().filter(|t| in_sample("rq", &t.id, 0.3)).count() as u64
    );
}

#[test]
fn the_daily_cap_takes_the_strongest_signals_first() {
    let (_s, mut conn) = store();
    let q = queue("negative_feedback = true\nsample_rate = 1.0\nmax_items_per_day = 3\n");
    let calls: Vec<TraceRecord> = (0..6)
        .map(|i| call(&format!("c{i}"), "mock-1", NOW - 10))
        .collect();
    write(&mut conn, &calls);
    for id in ["c4", "c5"] {
        upsert_feedback(
            &conn,
            &Feedback {
                trace_id: id.into(),
                name: "rating".into(),
                source: "app".into(),
                value: FeedbackValue::Number(-1.0),
                comment: None,
                key_id: None,
                at_ms: NOW - 5,
            },
            "test",
        )
        .unwrap();
    }
    // A trace added by hand does not count against the cap.
    keel_store::review::enqueue(&conn, "rq", "c3", "added", 1, NOW - 1, Some("ana")).unwrap();
    let done = run_once((&conn).into(), std::slice::from_ref(&q), NOW)
        .unwrap()
        .remove(0);
    assert_eq!(done.entered.get("negative_feedback"), Some(&2));
    assert_eq!(done.entered.get("sample"), Some(&1));
    assert_eq!(done.capped, 2, "{done:?}");
    // The next day has room again; what was capped stays out.
    let tomorrow = NOW + 86_400_000;
    write(&mut conn, &[call("d0", "mock-1", tomorrow)]);
    let next = run_once((&conn).into(), &[q], tomorrow + 10)
        .unwrap()
        .remove(0);
    assert_eq!(next.total(), 1);
    assert_eq!(entered(&conn, "d0").as_deref(), Some("sample"));
}

#[test]
fn a_new_queue_looks_back_one_day_only() {
    let (_s, mut conn) = store();
    let q = queue("sample_rate = 1.0\n");
    write(
        &mut conn,
        &[
            call("old", "mock-1", NOW - 2 * 86_400_000),
            call("recent", "mock-1", NOW - 3_600_000),
        ],
    );
    run_once((&conn).into(), &[q], NOW).unwrap();
    assert_eq!(entered(&conn, "old"), None);
    assert_eq!(entered(&conn, "recent").as_deref(), Some("sample"));
}

#[test]
fn a_score_written_before_its_trace_still_lets_the_call_in() {
    // The judge gets the call as it goes to the trace writer: with a fast judge (the
    // mock) its score can be committed before the trace is.
    let (_s, mut conn) = store();
    let q = queue("failed_eval = \"q\"\n");
    run_once((&conn).into(), std::slice::from_ref(&q), NOW).unwrap();
    score(&mut conn, "early", "helpful", 0.1, false);
    run_once((&conn).into(), std::slice::from_ref(&q), NOW + 1).unwrap();
    write(&mut conn, &[call("early", "mock-1", NOW - 5)]);
    run_once((&conn).into(), std::slice::from_ref(&q), NOW + 2).unwrap();
    assert_eq!(entered(&conn, "early").as_deref(), Some("failed_eval"));
}

#[test]
fn a_burst_of_negative_feedback_larger_than_a_batch_is_read_whole() {
    let (_s, mut conn) = store();
    let q = queue("negative_feedback = true\nmax_items_per_day = 100000\n");
    let n = BATCH + 200;
    let traces: Vec<TraceRecord> = (0..n)
        .map(|i| call(&format!("fb{i}"), "mock-1", NOW - 100))
        .collect();
    write(&mut conn, &traces);
    for i in 0..n {
        let fb = Feedback {
            trace_id: format!("fb{i}"),
            name: "thumbs".into(),
            source: "user".into(),
            value: FeedbackValue::Bool(false),
            comment: None,
            key_id: None,
            at_ms: NOW - 50,
        };
        upsert_feedback(&conn, &fb, "admin").unwrap();
    }
    let mut total = 0;
    for pass in 0..5 {
        total += run_once((&conn).into(), std::slice::from_ref(&q), NOW + pass)
            .unwrap()
            .iter()
            .map(QueueIntake::total)
            .sum::<u64>();
    }
    assert_eq!(total, n as u64);
}

#[test]
fn a_score_whose_trace_never_comes_holds_the_read_back_only_for_a_while() {
    let (_s, mut conn) = store();
    let q = queue("failed_eval = \"q\"\n");
    run_once((&conn).into(), std::slice::from_ref(&q), NOW).unwrap();
    // `ghost`'s trace was never written (dropped by a full writer queue, say).
    score(&mut conn, "ghost", "helpful", 0.1, false);
    write(&mut conn, &[call("later", "mock-1", NOW - 5)]);
    score(&mut conn, "later", "helpful", 0.1, false);
    run_once((&conn).into(), std::slice::from_ref(&q), NOW + 1).unwrap();
    assert_eq!(
        entered(&conn, "later"),
        None,
        "held behind the pending score"
    );
    run_once(
        (&conn).into(),
        std::slice::from_ref(&q),
        NOW + PENDING_TRACE_MS + 1,
    )
    .unwrap();
    assert_eq!(entered(&conn, "later").as_deref(), Some("failed_eval"));
    assert_eq!(entered(&conn, "ghost"), None);
}

#[derive(Default)]
struct Seen {
    entered: std::sync::Mutex<Vec<(String, String, u64)>>,
    failed: std::sync::atomic::AtomicU64,
}

impl IntakeCounters for Seen {
    fn entered(&self, queue: &str, reason: &str, n: u64) {
        self.entered
            .lock()
            .unwrap()
            .push((queue.into(), reason.into(), n));
    }
    fn failed(&self) {
        self.failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_intake_counts_what_entered_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
    let now = keel_store::prompts::now_ms();
    let mut conn = store.writer_conn().unwrap();
    write(
        &mut conn,
        &[
            call("bg-1", "mock-1", now - 60_000),
            call("bg-2", "mock-1", now - 60_000),
        ],
    );
    drop(conn);
    let seen = std::sync::Arc::new(Seen::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(run_every(
        std::sync::Arc::new(store),
        vec![queue("sample_rate = 1.0\n")],
        stop.clone(),
        seen.clone(),
    ));
    // The first pass runs at once.
    for _ in 0..200 {
        if !seen.entered.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        *seen.entered.lock().unwrap(),
        vec![("rq".to_string(), "sample".to_string(), 2)]
    );
    assert_eq!(seen.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
}
