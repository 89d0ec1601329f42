//! `quality`'s and `quality_figures`' tests: seeded traces, scores and feedback, summed
//! per group and turned into rates, intervals and verdicts.

use super::*;
use crate::feedback::{upsert_feedback, Feedback, FeedbackValue};
use crate::quality_figures::{quality_rows, report_quality, variant_comparisons, QualityRow};
use crate::scores::{replace_scores, test_stores, ScoreRow};
use crate::sql::Dialect;
use crate::{trace_row, Conn, Store};
use keel_core::trace::{Origin, TraceRecord};
use rusqlite::{params, Connection};

/// A live call of `function`/`variant` on `model` at `at`.
fn call(id: &str, at: i64, function: Option<(&str, &str)>, model: &str) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.model_requested = Some(model.into());
    if let Some((f, v)) = function {
        t.function = Some(f.into());
        t.variant = Some(v.into());
        t.prompt_name = Some("support/answer".into());
        t.prompt_version = Some(if v == "control" { 1 } else { 2 });
        t.release_id = Some(format!("rel_{v}"));
    }
    t
}

fn score(conn: &Conn, trace: &str, eval: &str, rows: &[(&str, f64, bool)]) {
    let rows: Vec<ScoreRow> = rows
        .iter()
        .map(|(m, v, p)| ScoreRow {
            metric: (*m).into(),
            value: *v,
            passed: *p,
            reason: None,
        })
        .collect();
    replace_scores(conn, trace, eval, "online", &rows, None, 1).unwrap();
}

fn feedback(conn: &Conn, trace: &str, name: &str, value: FeedbackValue) {
    let fb = Feedback {
        trace_id: trace.into(),
        name: name.into(),
        source: "user".into(),
        value,
        comment: None,
        key_id: None,
        at_ms: 1,
    };
    upsert_feedback(conn, &fb, "admin").unwrap();
}

/// Control: 4 calls judged, 3 pass; candidate: 2 judged, 2 pass; a bare model call
/// judged and failed; an eval-origin call and a call outside the window, judged, that
/// must not count. Feedback: thumbs on control, a category on candidate.
fn seed(w: &Conn) {
    let support = |v| Some(("support", v));
    let mut traces = vec![
        call("c1", 100, support("control"), "fast"),
        call("c2", 110, support("control"), "fast"),
        call("c3", 120, support("control"), "fast"),
        call("c4", 130, support("control"), "fast"),
        call("n1", 140, support("candidate"), "smart"),
        call("n2", 150, support("candidate"), "smart"),
        call("raw", 160, None, "fast"),
        call("late", 5_000, support("control"), "fast"),
    ];
    let mut eval = call("ev", 170, support("control"), "fast");
    eval.origin = Origin::Eval;
    traces.push(eval);
    trace_row::insert_batch(w, &traces).unwrap();
    // c1 passes one eval and fails the other: judged, not passed; per eval 1 of 2.
    score(w, "c1", "helpful", &[("helpful", 0.9, true)]);
    score(w, "c1", "short", &[("word-count", 0.0, false)]);
    score(w, "c2", "helpful", &[("helpful", 0.8, true)]);
    score(w, "c3", "helpful", &[("helpful", 0.7, true)]);
    // c4: two assertions of one eval, both pass.
    score(
        w,
        "c4",
        "helpful",
        &[("helpful", 0.6, true), ("no-apology", 1.0, true)],
    );
    score(w, "n1", "helpful", &[("helpful", 1.0, true)]);
    score(w, "n2", "helpful", &[("helpful", 1.0, true)]);
    score(w, "raw", "helpful", &[("helpful", 0.1, false)]);
    score(w, "late", "helpful", &[("helpful", 0.0, false)]);
    score(w, "ev", "helpful", &[("helpful", 0.0, false)]);
    // People's scores are not online quality.
    replace_scores(
        w,
        "c2",
        "helpful",
        "human",
        &[ScoreRow {
            metric: "helpful".into(),
            value: 0.0,
            passed: false,
            reason: None,
        }],
        None,
        1,
    )
    .unwrap();
    // Reviewers' verdicts (a review queue `support-review`): their own figure, beside
    // the judges'. c1 good, c3 bad, c2 a tie between two reviewers (left out).
    for (trace, value) in [("c1", 1.0), ("c3", 0.0), ("c2", 0.5)] {
        replace_scores(
            w,
            trace,
            "support-review",
            "human",
            &[ScoreRow {
                metric: "verdict".into(),
                value,
                passed: value >= 0.5,
                reason: None,
            }],
            None,
            1,
        )
        .unwrap();
    }
    feedback(w, "c1", "thumbs", FeedbackValue::Number(1.0));
    feedback(w, "c2", "thumbs", FeedbackValue::Number(-1.0));
    feedback(w, "c3", "thumbs", FeedbackValue::Bool(true));
    feedback(w, "c3", "stars", FeedbackValue::Number(0.0));
    feedback(w, "n1", "reason", FeedbackValue::Category("wrong".into()));
    feedback(w, "late", "thumbs", FeedbackValue::Number(1.0));
}

/// A seeded SQLite store and a reader, for what reads through rusqlite only
/// (`quality_figures`, the report) and query plans.
fn seeded() -> (Store, Connection) {
    let store = Store::open(":memory:").unwrap();
    seed(&store.conn().unwrap());
    let r = store.reader().unwrap();
    (store, r)
}

fn named<'a>(rows: &'a [QualityRow], name: &str) -> &'a QualityRow {
    rows.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

#[test]
fn judged_calls_pass_only_when_every_assertion_of_every_eval_passed() {
    for (backend, store, _db) in test_stores() {
        let conn = store.conn().unwrap();
        seed(&conn);
        judged_calls_pass_on(backend, &conn);
    }
}

fn judged_calls_pass_on(backend: &str, conn: &Conn) {
    let sums = quality_sums(conn, 0, 1_000, QualityGrouping::Variant).unwrap();
    let names: Vec<&str> = sums.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "\u{1f}(none)",
            "support\u{1f}candidate",
            "support\u{1f}control"
        ],
        "{backend}"
    );
    let control = &sums[2];
    assert_eq!((control.judged, control.passed), (4, 3), "{backend}");
    assert_eq!(
        control.evals,
        [
            EvalSums {
                eval: "helpful".into(),
                judged: 4,
                passed: 4
            },
            EvalSums {
                eval: "short".into(),
                judged: 1,
                passed: 0
            },
        ],
        "{backend}"
    );
    let helpful = &control.metrics[0];
    assert_eq!(
        (helpful.metric.as_str(), helpful.n),
        ("helpful", 4),
        "{backend}"
    );
    assert!((helpful.sum - 3.0).abs() < 1e-9, "{backend}");
    assert!(
        (helpful.sum_squares - (0.81 + 0.64 + 0.49 + 0.36)).abs() < 1e-9,
        "{backend}"
    );
    assert_eq!(control.metrics.len(), 3, "{backend}: {:?}", control.metrics);
    // Feedback: 1 and true positive, -1 and 0 negative.
    assert_eq!(
        control.feedback,
        FeedbackCounts {
            count: 4,
            positive: 2,
            negative: 2,
            category: 0
        },
        "{backend}"
    );
    let candidate = &sums[1];
    assert_eq!((candidate.judged, candidate.passed), (2, 2), "{backend}");
    assert_eq!(candidate.feedback.category, 1, "{backend}");
    assert_eq!(
        candidate.feedback.positive + candidate.feedback.negative,
        0,
        "{backend}"
    );
}

#[test]
fn every_grouping_ties_scores_to_groups_through_their_trace() {
    for (backend, store, _db) in test_stores() {
        let conn = store.conn().unwrap();
        seed(&conn);
        every_grouping_on(backend, &conn);
    }
}

fn every_grouping_on(backend: &str, conn: &Conn) {
    let rows = |g| quality_sums(conn, 0, 1_000, g).unwrap();
    let by_model = rows(QualityGrouping::Model);
    let fast: Vec<(&str, u64, u64)> = by_model
        .iter()
        .map(|s| (s.name.as_str(), s.judged, s.passed))
        .collect();
    assert_eq!(fast, [("fast", 5, 3), ("smart", 2, 2)], "{backend}");
    let by_fn = rows(QualityGrouping::Function);
    assert_eq!(by_fn[0].name, "(none)", "{backend}");
    assert_eq!(
        (by_fn[1].name.as_str(), by_fn[1].judged),
        ("support", 6),
        "{backend}"
    );
    let by_prompt = rows(QualityGrouping::PromptVersion);
    let names: Vec<&str> = by_prompt.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["(none)", "support/answer v1", "support/answer v2"],
        "{backend}"
    );
    let by_release = rows(QualityGrouping::Release);
    let names: Vec<&str> = by_release.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["rel_candidate", "rel_control"],
        "{backend}: no release: left out"
    );
    // The window is on the trace's start: the late call counts from 5000 on.
    let late = quality_sums(conn, 1_000, 10_000, QualityGrouping::Function).unwrap();
    assert_eq!(late.len(), 1, "{backend}");
    assert_eq!((late[0].judged, late[0].passed), (1, 0), "{backend}");
    assert_eq!(late[0].feedback.positive, 1, "{backend}");
    assert!(quality_sums(conn, 10_000, 20_000, QualityGrouping::Model)
        .unwrap()
        .is_empty());
    // Today's Unix milliseconds are past 32 bits: every bound binds as a BIGINT.
    let today = quality_sums(conn, 1_764_000_000_000, i64::MAX, QualityGrouping::Variant);
    assert!(today.unwrap().is_empty(), "{backend}");
}

#[test]
fn rates_carry_wilson_intervals_and_metrics_normal_ones() {
    let (_s, conn) = seeded();
    let rows = quality_rows(&conn, 0, 1_000, QualityGrouping::Variant).unwrap();
    let control = named(&rows, "support\u{1f}control");
    assert_eq!(control.pass_rate, Some(0.75));
    // Wilson 3/4 at 95 %: [0.3006, 0.9544].
    assert!((control.pass_rate_low.unwrap() - 0.300_6).abs() < 1e-3);
    assert!((control.pass_rate_high.unwrap() - 0.954_4).abs() < 1e-3);
    let m = &control.metrics[0];
    assert_eq!(
        (m.eval.as_str(), m.metric.as_str(), m.n),
        ("helpful", "helpful", 4)
    );
    assert!((m.mean - 0.75).abs() < 1e-9);
    // s = 0.1291, se = 0.06455, ± 0.1265.
    assert!((m.low - 0.623_5).abs() < 1e-3 && (m.high - 0.876_5).abs() < 1e-3);
    assert_eq!(control.feedback.positive_rate, Some(0.5));
    let candidate = named(&rows, "support\u{1f}candidate");
    assert_eq!(
        candidate.feedback.positive_rate, None,
        "categories are neither"
    );
    assert_eq!(candidate.feedback.count, 1);

    let json = serde_json::to_value(control).unwrap();
    for field in [
        "judged",
        "pass_rate",
        "pass_rate_low",
        "pass_rate_high",
        "metrics",
        "feedback",
    ] {
        assert!(json.get(field).is_some(), "{field}: {json}");
    }
    assert_eq!(json["feedback"]["positive_rate"], 0.5);
    assert_eq!(json["metrics"][0]["n"], 4);
}

#[test]
fn variants_are_compared_with_a_two_proportion_test_and_said_in_words() {
    let (_s, conn) = seeded();
    let rows = quality_rows(&conn, 0, 1_000, QualityGrouping::Variant).unwrap();
    let cmp = variant_comparisons(&rows);
    assert_eq!(cmp.len(), 1, "the bare model has nothing to compare");
    let c = &cmp[0];
    assert_eq!(
        (c.baseline.as_str(), c.variant.as_str()),
        ("control", "candidate")
    );
    assert!(!c.pass_rate.significant);
    assert!(
        c.pass_rate
            .verdict
            .starts_with("no significant difference (p = 0.44, n = 4 vs 2)"),
        "{}",
        c.pass_rate.verdict
    );
    assert!(c.pass_rate.verdict.ends_with("few calls, read with care"));
    assert_eq!(c.feedback.p_value, None);
    assert_eq!(c.feedback.verdict, "not compared: candidate has none");

    // Made-up sums with a clear difference: 90/100 against 60/100.
    let mut a = rows[2].clone();
    let mut b = rows[1].clone();
    (a.judged, a.passed, b.judged, b.passed) = (100, 60, 100, 90);
    let c = crate::quality_figures::compare_variants("support", ("control", &a), ("candidate", &b));
    assert!(c.pass_rate.significant);
    assert_eq!(
        c.pass_rate.verdict,
        "candidate passes more often than control (90.0% vs 60.0%, p < 0.001)"
    );
}

#[test]
fn the_report_carries_quality_per_grouping() {
    let (_s, conn) = seeded();
    let q = report_quality(&conn, 0, 1_000).unwrap();
    let names: Vec<&str> = q.by_variant.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["(none)", "support/candidate", "support/control"]);
    assert_eq!(q.by_model.len(), 2);
    assert_eq!(q.by_prompt_version.len(), 3);
    assert_eq!(q.comparisons.len(), 1);
    assert!(!q.is_empty());
    assert!(report_quality(&conn, 10_000, 20_000).unwrap().is_empty());
}

#[test]
fn a_windows_quality_reads_the_scores_written_since_and_seeks_each_call_by_id() {
    let (_s, conn) = seeded();
    for g in [
        QualityGrouping::Function,
        QualityGrouping::Variant,
        QualityGrouping::PromptVersion,
        QualityGrouping::Model,
    ] {
        for sql in [
            calls_sql(g, false, Dialect::Sqlite),
            evals_sql(g, false, Dialect::Sqlite),
            metrics_sql(g, false, Dialect::Sqlite),
            feedback_sql(g, false, Dialect::Sqlite),
        ] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params![0, 1_000], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let plan = plan.join("\n");
            // The window's scores or feedback by when they were written, then each
            // call by its id: never a walk over the window's traces.
            assert!(
                plan.contains("scores_created (created_at_ms>?)")
                    || plan.contains("feedback_at (at_ms>?)"),
                "{sql}\n{plan}"
            );
            assert!(plan.contains("traces_id (id=?)"), "{sql}\n{plan}");
        }
    }
}

#[test]
fn the_report_shows_online_quality_only_when_there_is_some() {
    let (_s, conn) = seeded();
    let report = crate::build_report(&conn, 0, 1_000, 5).unwrap();
    let table = crate::render_table(&report);
    for want in [
        "Online quality by function",
        "Online quality by variant",
        "support/control",
        "Online quality by prompt version",
        "support/answer v2",
        "Online quality by model",
        "75.0% [30.1–95.4%]",
        "helpful 0.75 [0.62–0.88] n=4",
        "short/word-count 0.00",
        "50.0% [15.0–85.0%] of 4",
        "1 (1 category)",
        "Variants compared (two-proportion z-test)",
        "no significant difference (p = 0.44, n = 4 vs 2)",
    ] {
        assert!(table.contains(want), "lacks {want}:\n{table}");
    }
    let md = crate::render_markdown(&report);
    assert!(md.contains("### Online quality by variant"), "{md}");
    assert!(
        md.contains("| support/control | 4 | 75.0% [30.1–95.4%] |"),
        "{md}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["quality"]["by_variant"][2]["judged"], 4);
    assert_eq!(json["quality"]["by_model"][0]["name"], "fast");
    assert_eq!(
        json["quality"]["comparisons"][0]["pass_rate"]["p_value"]
            .as_f64()
            .map(|p| (p * 100.0).round()),
        Some(44.0)
    );

    // A window with traffic but nothing judged: no quality sections, empty lists.
    let store = Store::open(":memory:").unwrap();
    let w = store.writer_conn().unwrap();
    trace_row::insert_batch(&w, &[call("x", 10, None, "fast")]).unwrap();
    let report = crate::build_report(&w, 0, 1_000, 5).unwrap();
    assert!(!crate::render_table(&report).contains("Online quality"));
    assert_eq!(
        serde_json::to_value(&report).unwrap()["quality"]["by_function"],
        serde_json::json!([])
    );
}

#[test]
fn the_online_quality_sections_are_pinned() {
    let (_s, conn) = seeded();
    let report = crate::build_report(&conn, 0, 1_000, 5).unwrap();
    let md = crate::render_markdown(&report);
    let at = md.find("### Online quality").unwrap();
    insta::assert_snapshot!("online_quality_markdown", &md[at..]);
    let table = crate::render_table(&report);
    let at = table.find("Online quality").unwrap();
    insta::assert_snapshot!("online_quality_table", &table[at..]);
}

#[test]
fn release_quality_reads_only_the_listed_releases_by_their_index() {
    for (backend, store, _db) in test_stores() {
        let conn = store.conn().unwrap();
        seed(&conn);
        let sums = release_quality_sums(&conn, &["rel_control"], 0).unwrap();
        assert_eq!(sums.len(), 1, "{backend}");
        // Every control call from 0 on, the late one included (no upper bound).
        assert_eq!(
            (sums[0].name.as_str(), sums[0].judged, sums[0].passed),
            ("rel_control", 5, 3),
            "{backend}"
        );
        let both = release_quality_sums(&conn, &["rel_candidate", "rel_control", "nope"], 0);
        let names: Vec<String> = both.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["rel_candidate", "rel_control"], "{backend}");
        assert!(
            release_quality_sums(&conn, &[], 0).unwrap().is_empty(),
            "{backend}"
        );
    }
    let (_s, conn) = seeded();
    let g = QualityGrouping::Release;
    for sql in [
        calls_sql(g, true, Dialect::Sqlite),
        metrics_sql(g, true, Dialect::Sqlite),
        feedback_sql(g, true, Dialect::Sqlite),
    ] {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = stmt
            .query_map(params![0, i64::MAX, "[]"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("traces_release"), "{sql}\n{plan}");
    }
}
