#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel dataset …` on a copy of the quickstart with recorded production calls: each
//! filter of `add --from-traces` narrows to its calls; duplicates and calls kept without
//! input are skipped and counted; an add breaks the suite's lock until `keel eval lock`
//! records the new version; the function's redact policy applies to the cases; dashboard
//! drafts are pulled once; `dataset history` and `eval history` tell dataset versions
//! apart; `dataset sample --fresh` writes a stratified, unlocked fresh suite.

mod common;

use std::fs;
use std::path::Path;

use common::{quickstart, record_traces, stdout, stdout_and_stderr, Keel};
use keel_core::trace::{Origin, TraceRecord, TraceStatus};
use serde_json::{json, Value};

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "ci")]);

const MINUTE_MS: i64 = 60_000;

/// The guardrail policy appended to the quickstart: emails redacted from support-answer's
/// input.
const PII_POLICY: &str = r#"
[guardrails.policies.support-pii]
functions = ["support-answer"]

[[guardrails.policies.support-pii.checks]]
check = "pii"
on = "input"
action = "redact"
kinds = ["email"]
"#;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A live, successful call of support-answer `minutes_ago`, asked `question`.
fn call(id: &str, minutes_ago: i64, feature: &str, question: &str) -> TraceRecord {
    let mut t = TraceRecord::new(
        id.into(),
        now_ms() - minutes_ago * MINUTE_MS,
        "openai",
        "/v1/chat/completions",
    );
    t.function = Some("support-answer".into());
    t.variant = Some("control".into());
    t.model_requested = Some("support-answer".into());
    t.feature = Some(feature.into());
    t.origin = Origin::Live;
    t.input = Some(
        json!({"model": "support-answer", "variables": {"product": "Keel", "question": question}})
            .to_string(),
    );
    t.output = Some("An answer.".into());
    t
}

/// The recorded traffic: one call per filter, and the calls no add may take.
fn production() -> Vec<TraceRecord> {
    let mut no_input = call("t-no-input", 200, "help", "");
    no_input.input = None;
    let mut failed = call("t-error", 100, "help", "Why did it fail?");
    failed.status = TraceStatus::Error;
    failed.error_class = Some("upstream_timeout".into());
    let mut eval = call("t-eval", 100, "help", "An eval's own call");
    eval.origin = Origin::Eval;
    vec![
        call("t-low", 300, "help", "Where is my parcel?"),
        call("t-failed", 240, "help", "Can I pay by invoice?"),
        call("t-thumbs", 180, "billing", "Why was I charged twice?"),
        call(
            "t-bad",
            120,
            "help",
            "Please email me at ana@example.com about my refund",
        ),
        // The same question as the dataset's first case.
        call("t-dup", 60, "help", "Can I get a refund for my order?"),
        no_input,
        failed,
        eval,
        call("t-old", 30 * 24 * 60, "help", "A question from last month"),
    ]
}

/// The quickstart with `production()` recorded, scored, rated and reviewed.
fn project() -> (tempfile::TempDir, std::path::PathBuf) {
    let (guard, dir) = quickstart();
    let config = dir.join("keel.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("{text}\n{PII_POLICY}")).unwrap();
    let store = keel_store::Store::open(dir.join("keel.db").to_str().unwrap()).unwrap();
    let stats = record_traces(&store, production());
    assert_eq!(stats.dropped_total, 0);
    store
        .writer_conn()
        .unwrap()
        .execute_batch(
            "INSERT INTO scores (trace_id, eval, metric, source, value, passed, created_at_ms) VALUES
               ('t-low', 'support-quality', 'helpful', 'online', 0.2, 1, 1),
               ('t-failed', 'support-quality', 'helpful', 'online', 0.9, 0, 1);
             INSERT INTO feedback (trace_id, name, source, value_num, at_ms, value_kind) VALUES
               ('t-thumbs', 'thumbs', 'app', 0, 1, 'boolean'),
               ('t-low', 'thumbs', 'app', 1, 1, 'boolean');
             INSERT INTO review_labels (item_id, queue, trace_id, reviewer, verdict, labels_json, correction, at_ms) VALUES
               (1, 'support-review', 't-bad', 'ana', 'bad', '{}',
                'We refund within 30 days; write to ana@example.com if it is late.', 1),
               (2, 'support-review', 't-low', 'bo', 'good', '{}', NULL, 1);",
        )
        .unwrap();
    (guard, dir)
}

/// `dataset add support --from-traces <args> --dry-run --json`: the ids it would add.
fn would_add(dir: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["dataset", "add", "support", "--from-traces", "--dry-run"];
    all.extend_from_slice(args);
    let v = KEEL.json_ok(dir, &all);
    v["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect()
}

fn cases(dir: &Path, file: &str) -> Vec<Value> {
    fs::read_to_string(dir.join("evals").join(file))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn each_filter_narrows_to_its_calls_and_bad_flags_say_why() {
    let (_guard, dir) = project();
    let before = fs::read(dir.join("evals/support.jsonl")).unwrap();
    // Every live, successful call of the suite's function this week with an input,
    // oldest first; the duplicate of an existing case is not among them.
    assert_eq!(
        would_add(&dir, &[]),
        [
            "trace-t-low",
            "trace-t-failed",
            "trace-t-thumbs",
            "trace-t-bad"
        ]
    );
    assert_eq!(
        would_add(&dir, &["--failed-eval", "support-quality"]),
        ["trace-t-failed"]
    );
    assert_eq!(
        would_add(&dir, &["--score-below", "helpful=0.5"]),
        ["trace-t-low"]
    );
    assert_eq!(
        would_add(&dir, &["--feedback", "negative"]),
        ["trace-t-thumbs"]
    );
    assert_eq!(
        would_add(&dir, &["--review-verdict", "bad"]),
        ["trace-t-bad"]
    );
    assert_eq!(
        would_add(&dir, &["--function", "support-answer", "--since", "150m"]),
        ["trace-t-bad"]
    );
    assert_eq!(
        would_add(&dir, &["--since", "60d", "--limit", "2"]),
        ["trace-t-bad"],
        "the 2 newest calls: the duplicate and t-bad"
    );
    assert_eq!(
        would_add(&dir, &["--since", "60d"])
            .first()
            .map(String::as_str),
        Some("trace-t-old")
    );
    // A dry run writes nothing.
    assert_eq!(fs::read(dir.join("evals/support.jsonl")).unwrap(), before);

    // Nothing matched: exit 0, said plainly.
    let out = KEEL.stdout_ok(
        &dir,
        &[
            "dataset",
            "add",
            "support",
            "--from-traces",
            "--failed-eval",
            "no-such-eval",
        ],
    );
    assert!(out.starts_with("no traces matched"), "{out}");

    // Bad flags: exit 2, naming the problem and the fix.
    for (args, says) in [
        (&["--function", "nope"][..], "no function `nope`"),
        (&["--score-below", "helpful"][..], "is not METRIC=VALUE"),
        (&["--feedback", "positive"][..], "only `negative`"),
        (
            &["--review-verdict", "awful"][..],
            "use good, bad or unsure",
        ),
        (&["--since", "yesterday"][..], "--since"),
    ] {
        let mut all = vec!["dataset", "add", "support", "--from-traces"];
        all.extend_from_slice(args);
        let o = KEEL.run(&dir, &all);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            stdout_and_stderr(&o)
        );
        assert!(
            stdout_and_stderr(&o).contains(says),
            "{args:?}: {}",
            stdout_and_stderr(&o)
        );
    }
    let o = KEEL.run(&dir, &["dataset", "add", "nosuite", "--from-traces"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout_and_stderr(&o).contains("nosuite"),
        "{}",
        stdout_and_stderr(&o)
    );
    let o = KEEL.run(&dir, &["dataset", "add", "support"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout_and_stderr(&o).contains("--from-traces"));
}

#[test]
fn an_add_breaks_the_lock_until_relocked_and_versions_tell_dataset_changes_apart() {
    let (_guard, dir) = project();
    KEEL.push_and_label_production(&dir, &["--author", "t", "--message", "m"], "launch");
    // The quickstart ships locked: its lock is recorded as version 1.
    let out = KEEL.stdout_ok(
        &dir,
        &["eval", "lock", "support", "--reason", "the first 50 cases"],
    );
    assert!(out.contains("dataset v1"), "{out}");
    let run = KEEL.run(&dir, &["eval", "run", "support"]);
    assert_ne!(run.status.code(), Some(2), "{}", stdout_and_stderr(&run));

    // The reviewer's bad call, with the correction as `expected`, redacted.
    let out = KEEL.stdout_ok(
        &dir,
        &[
            "dataset",
            "add",
            "support",
            "--from-traces",
            "--review-verdict",
            "bad",
            "--with-corrections",
        ],
    );
    assert!(
        out.starts_with("added 1 case to ")
            && out.contains("the suite's lock now fails until `keel eval lock support --reason"),
        "{out}"
    );
    let all = cases(&dir, "support.jsonl");
    assert_eq!(all.len(), 51);
    let added = &all[50];
    assert_eq!(added["id"], "trace-t-bad");
    assert_eq!(added["metadata"]["trace_id"], "t-bad");
    assert_eq!(added["metadata"]["function"], "support-answer");
    assert_eq!(added["metadata"]["feature"], "help");
    // The function's redact policy: the email is gone from the input and the expected.
    let line = added.to_string();
    assert!(!line.contains("ana@example.com"), "{line}");
    assert_eq!(
        added["variables"]["question"],
        "Please email me at [EMAIL_1] about my refund"
    );
    assert_eq!(
        added["expected"],
        "We refund within 30 days; write to [EMAIL_1] if it is late."
    );

    // The suite now fails its lock, with the fix.
    let o = KEEL.run(&dir, &["eval", "run", "support"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout_and_stderr(&o));
    assert!(
        stdout_and_stderr(&o).contains("changed since it was locked"),
        "{}",
        stdout_and_stderr(&o)
    );

    // The rest of the week: the same call again and the dataset's own question are
    // duplicates; the call kept without input is counted.
    let v = KEEL.json_ok(&dir, &["dataset", "add", "support", "--from-traces"]);
    assert_eq!(
        v["added"],
        json!(["trace-t-low", "trace-t-failed", "trace-t-thumbs"])
    );
    assert_eq!(v["duplicates"], json!(["trace-t-bad", "trace-t-dup"]));
    assert_eq!(v["no_input"], json!(["t-no-input"]));
    let out = KEEL.stdout_ok(&dir, &["dataset", "add", "support", "--from-traces"]);
    assert!(
        out.starts_with("added 0 cases to ")
            && out.contains("(5 duplicates skipped, 1 without captured input)"),
        "{out}"
    );
    // Whole lines only: every line parses, the first 50 untouched.
    assert_eq!(cases(&dir, "support.jsonl").len(), 54);

    let out = KEEL.stdout_ok(
        &dir,
        &[
            "eval",
            "lock",
            "support",
            "--reason",
            "4 cases from production",
        ],
    );
    assert!(out.contains("dataset v2"), "{out}");
    let run = KEEL.run(&dir, &["eval", "run", "support"]);
    assert_ne!(run.status.code(), Some(2), "{}", stdout_and_stderr(&run));

    // A case removed by hand, then locked: version 3 lists it as removed.
    let path = dir.join("evals/support.jsonl");
    let text = fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"trace-t-low\""))
        .collect();
    fs::write(&path, format!("{}\n", kept.join("\n"))).unwrap();
    KEEL.stdout_ok(
        &dir,
        &[
            "eval",
            "lock",
            "support",
            "--reason",
            "t-low was a test call",
        ],
    );

    let h = KEEL.json_ok(&dir, &["dataset", "history", "support"]);
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(h[0]["version"], 3);
    assert_eq!(h[0]["added"], json!([]));
    assert_eq!(h[0]["removed"], json!(["trace-t-low"]));
    assert_eq!(h[0]["cases"], 53);
    assert_eq!(h[1]["version"], 2);
    assert_eq!(
        h[1]["added"],
        json!([
            "trace-t-bad",
            "trace-t-low",
            "trace-t-failed",
            "trace-t-thumbs"
        ])
    );
    assert_eq!(h[1]["removed"], json!([]));
    assert_eq!(h[1]["reason"], "4 cases from production");
    assert_eq!(h[1]["actor"], "ci");
    assert_eq!(h[2]["cases"], 50);
    assert_eq!(h[2]["added"].as_array().unwrap().len(), 50);
    let table = KEEL.stdout_ok(&dir, &["dataset", "history", "support"]);
    assert!(
        table.contains("v3")
            && table.contains("trace-t-low")
            && table.contains("t-low was a test call"),
        "{table}"
    );

    // Each run shows the dataset version it used, newest first.
    let history = KEEL.stdout_ok(&dir, &["eval", "history", "support"]);
    let v2 = history.find("v2 ·").unwrap_or_else(|| panic!("{history}"));
    let v1 = history.find("v1 ·").unwrap_or_else(|| panic!("{history}"));
    assert!(v2 < v1, "{history}");
}

#[test]
fn dashboard_drafts_are_pulled_into_the_file_once() {
    use keel_gateway::case_drafts::CaseDrafts;
    let (_guard, dir) = project();
    let config = keel_core::config::Config::load(&dir.join("keel.toml")).unwrap();
    let store = keel_store::Store::open(dir.join("keel.db").to_str().unwrap()).unwrap();
    let conn = store.writer_conn().unwrap();
    let drafts = keel_evals::from_traces::Drafts;
    assert!(drafts
        .propose(&config, (&conn).into(), "support", "t-bad", "ana", now_ms())
        .unwrap());
    assert!(drafts
        .propose(
            &config,
            (&conn).into(),
            "support",
            "t-thumbs",
            "ana",
            now_ms()
        )
        .unwrap());
    assert!(drafts
        .propose(
            &config,
            (&conn).into(),
            "support",
            "t-no-input",
            "ana",
            now_ms()
        )
        .unwrap_err()
        .contains("no input"));
    assert!(drafts
        .propose(&config, (&conn).into(), "nosuite", "t-bad", "ana", now_ms())
        .is_err());
    // Nothing is written until pulled.
    assert_eq!(cases(&dir, "support.jsonl").len(), 50);

    let out = KEEL.stdout_ok(&dir, &["dataset", "pull", "support"]);
    assert!(out.starts_with("added 2 cases to "), "{out}");
    let all = cases(&dir, "support.jsonl");
    assert_eq!(all[50]["id"], "trace-t-bad");
    // Proposed as the reviewer corrected it, and redacted like `add`.
    assert_eq!(
        all[50]["expected"],
        "We refund within 30 days; write to [EMAIL_1] if it is late."
    );
    assert_eq!(all[51]["id"], "trace-t-thumbs");
    let out = KEEL.stdout_ok(&dir, &["dataset", "pull", "support"]);
    assert!(out.starts_with("no cases proposed"), "{out}");
    assert_eq!(cases(&dir, "support.jsonl").len(), 52);
}

#[test]
fn a_fresh_sample_is_stratified_repeatable_and_unlocked() {
    let (_guard, dir) = quickstart();
    let store = keel_store::Store::open(dir.join("keel.db").to_str().unwrap()).unwrap();
    // 18 calls of the `help` feature, 2 of `billing`, and calls a sample never takes.
    let mut traffic: Vec<TraceRecord> = (0..20)
        .map(|i| {
            let feature = if i < 18 { "help" } else { "billing" };
            call(
                &format!("f-{i:02}"),
                (1 + i) * 60,
                feature,
                &format!("Question {i}?"),
            )
        })
        .collect();
    traffic.push(call(
        "f-old",
        30 * 24 * 60,
        "help",
        "Last month's question?",
    ));
    let mut eval = call("f-eval", 60, "billing", "An eval's call?");
    eval.origin = Origin::Eval;
    traffic.push(eval);
    record_traces(&store, traffic);

    let args = [
        "dataset", "sample", "support", "--fresh", "5", "--since", "7d", "--seed", "7",
    ];
    let v = KEEL.json_ok(&dir, &args);
    assert_eq!(v["suite"], "support-fresh");
    assert_eq!(v["cases"], 5);
    assert_eq!(v["seed"], 7);
    assert_eq!(v["replaced"], false);
    // Proportional (18:2 of 5 is 4.5:0.5), and the small feature still gets one.
    assert_eq!(
        v["strata"],
        json!({"support-answer/billing": 1, "support-answer/help": 4})
    );
    let first = cases(&dir, "support-fresh.jsonl");
    assert_eq!(first.len(), 5);
    for c in &first {
        let id = c["id"].as_str().unwrap();
        assert!(id.starts_with("trace-f-") && id != "trace-f-old", "{id}");
        assert!(c["variables"]["question"].is_string(), "{c}");
    }
    // The suite copies the source's target and gate, on its own unlocked dataset.
    let toml = fs::read_to_string(dir.join("evals/support-fresh.toml")).unwrap();
    assert!(
        toml.contains("path = \"support-fresh.jsonl\"")
            && !toml.contains("hash = ")
            && toml.contains("function = \"support-answer\"")
            && toml.contains("min_pass_rate = 0.8"),
        "{toml}"
    );
    let o = KEEL.run(&dir, &["eval", "run", "support-fresh"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout_and_stderr(&o));
    assert!(
        stdout_and_stderr(&o).contains("keel eval lock support-fresh"),
        "{}",
        stdout_and_stderr(&o)
    );

    // The same seed draws the same cases; a re-run replaces the sample and says so.
    let o = KEEL.run(&dir, &args);
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("replaced ")
            && out.contains("support-fresh.jsonl with 5 fresh cases (seed 7;"),
        "{out}"
    );
    let again = cases(&dir, "support-fresh.jsonl");
    let ids = |c: &[Value]| c.iter().map(|c| c["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first));

    // No calls in the window: exit 0, nothing written.
    let out = KEEL.stdout_ok(
        &dir,
        &[
            "dataset",
            "sample",
            "support",
            "--fresh",
            "5",
            "--since",
            "2099-01-01T00:00:00Z",
        ],
    );
    assert!(out.starts_with("no traces matched"), "{out}");
}
