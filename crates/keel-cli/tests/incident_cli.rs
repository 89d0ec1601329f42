#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel incident …` on a copy of the quickstart with staged production traffic: two of
//! the four playbook incidents, each with the change that caused it recorded in the audit
//! log and the metric it moved in the traces.
//!
//! - Cost runaway: a label move of support/answer to a version that triples tokens per
//!   call; the incident's timeline finds the change point in tokens per call and spend,
//!   its first suspect is that label move, with `keel prompt label support/answer 1
//!   production …` to revert it; the postmortem draft has every section.
//! - Model regression: the mock's fingerprint changes and the online pass rate drops; the
//!   first suspect is the `model.version_changed`, with the switch that routes around it.

mod common;

use common::{quickstart, record_traces, stderr, stdout, Keel};
use keel_core::trace::{Origin, TraceRecord, TraceStatus};
use keel_store::audit::{record_audit, NewAuditEvent};
use serde_json::{json, Value};

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "oncall")]);
const MIN: i64 = 60_000;

fn now_ms() -> i64 {
    keel_store::prompts::now_ms()
}

/// A live call of support-answer `minutes_ago`, with `tokens` out.
fn call(i: usize, minutes_ago: i64, tokens: u64, fingerprint: &str) -> TraceRecord {
    let at = now_ms() - minutes_ago * MIN + (i as i64 % 50) * 1_000;
    let mut t = TraceRecord::new(
        format!("t-{minutes_ago}-{i}"),
        at,
        "openai",
        "/v1/chat/completions",
    );
    t.function = Some("support-answer".into());
    t.variant = Some("control".into());
    t.model_requested = Some("mock-1".into());
    t.provider = Some("mock".into());
    t.upstream_model = Some("mock-1".into());
    t.system_fingerprint = Some(fingerprint.into());
    t.origin = Origin::Live;
    t.status = TraceStatus::Ok;
    t.input_tokens = Some(100);
    t.output_tokens = Some(tokens);
    t.cost = Some(keel_core::money::Nanos(tokens as i64 * 600));
    t.latency_ms = 200;
    t
}

fn audit(work: &std::path::Path, minutes_ago: i64, e: NewAuditEvent<'_>) {
    let store = keel_store::Store::open(work.join("keel.db").to_str().unwrap()).unwrap();
    record_audit(
        &store.writer_conn().unwrap(),
        now_ms() - minutes_ago * MIN,
        &e,
    )
    .unwrap();
}

/// 90 minutes of traffic, 8 calls a minute, with `tokens(minutes_ago)` out.
fn traffic(
    work: &std::path::Path,
    tokens: impl Fn(i64) -> u64,
    fp: impl Fn(i64) -> &'static str,
) -> Vec<String> {
    traffic_with(work, |i, m| call(i, m, tokens(m), fp(m)))
}

/// 90 minutes of traffic, 8 calls a minute, each made by `make(i, minutes_ago)`.
fn traffic_with(work: &std::path::Path, make: impl Fn(usize, i64) -> TraceRecord) -> Vec<String> {
    let store = keel_store::Store::open(work.join("keel.db").to_str().unwrap()).unwrap();
    let mut traces = Vec::new();
    for m in (1..=90).rev() {
        for i in 0..8 {
            traces.push(make(i, m));
        }
    }
    let ids = traces.iter().map(|t| t.id.clone()).collect();
    record_traces(&store, traces);
    ids
}

/// Assert the timeline has a change point in `metric`.
fn assert_shifted(v: &Value, metric: &str) {
    let shifts = change_points(v);
    assert!(
        shifts
            .iter()
            .any(|t| t.starts_with(&format!("{metric} shifted"))),
        "no change point in {metric}: {shifts:?}"
    );
}

/// The titles of the timeline's change points.
fn change_points(v: &Value) -> Vec<String> {
    v["timeline"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "change_point")
        .map(|e| e["title"].as_str().unwrap().to_string())
        .collect()
}

fn show(work: &std::path::Path, id: &str) -> Value {
    KEEL.json_ok(work, &["incident", "show", id])
}

#[test]
fn a_label_move_that_triples_tokens_is_the_first_suspect_of_a_cost_runaway() {
    let (_d, work) = quickstart();
    traffic(&work, |m| if m > 40 { 100 } else { 300 }, |_| "fp_mock");
    // The label move, 41 minutes ago; an older, unrelated change before it.
    audit(
        &work,
        80,
        NewAuditEvent {
            actor: "bo",
            action: "key.create",
            target: "key_old",
            ..Default::default()
        },
    );
    audit(
        &work,
        41,
        NewAuditEvent {
            actor: "ana",
            action: "prompt.label",
            target: "support/answer@production",
            from_value: Some("v1".into()),
            to_value: Some("v2".into()),
            reason: Some("longer answers"),
            ..Default::default()
        },
    );
    let out = KEEL.run(
        &work,
        &[
            "incident",
            "open",
            "--title",
            "spend tripled",
            "--kind",
            "cost-runaway",
            "--scope",
            "function=support-answer",
            "--since",
            "30m",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("opened incident 1"),
        "{}",
        stdout(&out)
    );

    let v = show(&work, "1");
    assert_shifted(&v, "tokens_per_call");
    assert_shifted(&v, "spend_usd_per_hour");
    let first = &v["suspects"][0];
    assert_eq!(first["action"], "prompt.label", "{}", v["suspects"]);
    assert_eq!(
        first["revert"],
        "keel prompt label support/answer 1 production --reason \"revert: incident 1\""
    );
    assert_eq!(v["playbook"]["kind"], "cost-runaway");
    let cp = v["timeline"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "change_point")
        .unwrap();
    assert!(
        !cp["traces"].as_array().unwrap().is_empty(),
        "example traces linked: {cp}"
    );

    // Notes, a mitigation (shown as an action), the close, and the postmortem draft.
    KEEL.stdout_ok(
        &work,
        &["incident", "note", "1", "v2 asks for three examples"],
    );
    KEEL.stdout_ok(
        &work,
        &[
            "switch",
            "off",
            "--function",
            "support-answer",
            "--reason",
            "stop the bleeding",
        ],
    );
    KEEL.stdout_ok(
        &work,
        &[
            "incident",
            "close",
            "1",
            "--summary",
            "label moved back to v1",
        ],
    );
    let md = KEEL.stdout_ok(&work, &["incident", "export", "1", "--markdown"]);
    for section in [
        "# Incident 1: spend tripled",
        "## Summary",
        "label moved back to v1",
        "## Impact",
        "## Timeline",
        "## Suspects",
        "keel prompt label support/answer 1 production",
        "## Actions taken",
        "switch.off function=support-answer",
        "## Notes",
        "v2 asks for three examples",
    ] {
        assert!(md.contains(section), "{section} missing from\n{md}");
    }
    let list = KEEL.json_ok(&work, &["incident", "list", "--all"]);
    assert_eq!(list["incidents"][0]["status"], "closed");
    let audit = KEEL.stdout_ok(&work, &["audit", "--json"]);
    for action in ["incident.open", "incident.note", "incident.close"] {
        assert!(audit.contains(action), "{action} not audited");
    }
    assert!(
        audit.contains("\"actor\":\"oncall\""),
        "who acted is recorded"
    );
}

#[test]
fn a_new_model_version_is_the_first_suspect_of_a_model_regression() {
    let (_d, work) = quickstart();
    let ids = traffic(
        &work,
        |_| 120,
        |m| if m > 45 { "fp_mock" } else { "fp_mock_2" },
    );
    // Judged verdicts: 95 % pass before the change, 40 % after.
    let store = keel_store::Store::open(work.join("keel.db").to_str().unwrap()).unwrap();
    {
        let conn = store.writer_conn().unwrap();
        for (n, id) in ids.iter().enumerate() {
            let minutes_ago: i64 = id.split('-').nth(1).unwrap().parse().unwrap();
            let passed = if minutes_ago > 45 {
                n % 20 != 0
            } else {
                n % 5 < 2
            };
            let sql = format!(
                "INSERT INTO scores (trace_id, eval, metric, source, value, passed, created_at_ms) \
                 VALUES ('{id}', 'support-quality', 'helpful', 'judge', {v}, {p}, {at})",
                v = if passed { 1.0 } else { 0.0 },
                p = i32::from(passed),
                at = now_ms()
            );
            conn.execute_batch(&sql).unwrap();
        }
    }
    audit(
        &work,
        46,
        NewAuditEvent {
            actor: "keel",
            action: "model.version_changed",
            target: "mock-1",
            from_value: Some("fp_mock".into()),
            to_value: Some("fp_mock_2".into()),
            details: Some(json!({"deployment": "mock/mock-1"})),
            ..Default::default()
        },
    );
    KEEL.stdout_ok(
        &work,
        &[
            "incident",
            "open",
            "--title",
            "answers got worse",
            "--kind",
            "model-regression",
            "--scope",
            "model=mock-1",
            "--since",
            "35m",
        ],
    );
    let v = show(&work, "1");
    assert_shifted(&v, "online_pass_rate");
    let first = &v["suspects"][0];
    assert_eq!(
        first["action"], "model.version_changed",
        "{}",
        v["suspects"]
    );
    assert!(
        first["revert"]
            .as_str()
            .unwrap()
            .starts_with("keel switch off --model mock-1"),
        "{first}"
    );
    let text = KEEL.stdout_ok(&work, &["incident", "show", "1"]);
    assert!(
        text.contains("playbook (model-regression, shipped)"),
        "{text}"
    );
}

#[test]
fn bad_input_is_refused_with_the_fix() {
    let (_d, work) = quickstart();
    let out = KEEL.run(
        &work,
        &[
            "incident",
            "open",
            "--title",
            "x",
            "--scope",
            "function=nope",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("its functions are: support-answer"),
        "{}",
        stderr(&out)
    );
    let out = KEEL.run(
        &work,
        &["incident", "open", "--title", "x", "--scope", "region=eu"],
    );
    assert!(
        stderr(&out).contains("not a scope kind"),
        "{}",
        stderr(&out)
    );
    let out = KEEL.run(&work, &["incident", "show", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("there is no incident 9"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_label_move_before_thumbs_down_rise_is_the_first_suspect_of_hallucinations() {
    let (_d, work) = quickstart();
    let ids = traffic(&work, |_| 120, |_| "fp_mock");
    // Users' thumbs: 10 % down before the move, 60 % after.
    let store = keel_store::Store::open(work.join("keel.db").to_str().unwrap()).unwrap();
    {
        let conn = store.writer_conn().unwrap();
        for (n, id) in ids.iter().enumerate() {
            let minutes_ago: i64 = id.split('-').nth(1).unwrap().parse().unwrap();
            let down = if minutes_ago > 50 {
                n % 10 == 0
            } else {
                n % 5 < 3
            };
            let sql = format!(
                "INSERT INTO feedback (trace_id, name, source, value_num, at_ms) \
                 VALUES ('{id}', 'thumbs', 'app', {v}, {at})",
                v = if down { -1 } else { 1 },
                at = now_ms()
            );
            conn.execute_batch(&sql).unwrap();
        }
    }
    audit(
        &work,
        51,
        NewAuditEvent {
            actor: "ana",
            action: "prompt.label",
            target: "support/answer@production",
            from_value: Some("v3".into()),
            to_value: Some("v4".into()),
            reason: Some("more confident tone"),
            ..Default::default()
        },
    );
    KEEL.stdout_ok(
        &work,
        &[
            "incident",
            "open",
            "--title",
            "made-up refund policy",
            "--kind",
            "hallucination",
            "--scope",
            "function=support-answer",
            "--since",
            "40m",
            "--severity",
            "sev1",
        ],
    );
    let v = show(&work, "1");
    assert_shifted(&v, "negative_feedback_rate");
    assert_eq!(
        v["suspects"][0]["action"], "prompt.label",
        "{}",
        v["suspects"]
    );
    assert_eq!(
        v["suspects"][0]["revert"],
        "keel prompt label support/answer 3 production --reason \"revert: incident 1\""
    );
    assert_eq!(v["incident"]["severity"], "sev1");
}

#[test]
fn a_config_load_before_guardrail_blocks_is_the_first_suspect_of_an_injection() {
    let (_d, work) = quickstart();
    traffic_with(&work, |i, m| {
        let mut t = call(i, m, 120, "fp_mock");
        if m <= 35 && i % 2 == 0 {
            t.status = TraceStatus::Error;
            t.error_class = Some("guardrail_input_blocked".into());
        }
        t
    });
    for (minutes_ago, hash) in [(85, "aaa111"), (36, "bbb222")] {
        audit(
            &work,
            minutes_ago,
            NewAuditEvent {
                actor: "keel serve",
                action: "config.load",
                target: "/srv/keel.toml",
                to_value: Some(hash.into()),
                reason: Some("a changed config was loaded"),
                ..Default::default()
            },
        );
    }
    KEEL.stdout_ok(
        &work,
        &[
            "incident",
            "open",
            "--title",
            "agent follows injected instructions",
            "--kind",
            "prompt-injection",
            "--scope",
            "function=support-answer",
            "--since",
            "25m",
        ],
    );
    let v = show(&work, "1");
    assert_shifted(&v, "guardrail_blocks");
    assert_shifted(&v, "errors.guardrail_input_blocked");
    let first = &v["suspects"][0];
    assert_eq!(first["action"], "config.load", "{}", v["suspects"]);
    assert_eq!(first["to_value"], "bbb222");
    assert_eq!(
        first["revert"],
        "redeploy the previous config of /srv/keel.toml (sha256 aaa111)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_alert_opens_the_incident_whose_first_suspect_is_the_label_move() {
    use keel_governance::alerts::{rules::RuleEvaluator, AlertState, Dispatcher};
    let (_d, work) = quickstart();
    // Spend on mock-1 triples 40 minutes ago, just after a label move.
    traffic(&work, |m| if m > 40 { 100 } else { 300 }, |_| "fp_mock");
    audit(
        &work,
        41,
        NewAuditEvent {
            actor: "ana",
            action: "prompt.label",
            target: "support/answer@production",
            from_value: Some("v1".into()),
            to_value: Some("v2".into()),
            reason: Some("longer answers"),
            ..Default::default()
        },
    );
    let path = work.join("keel.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!(
        "{text}\n[[alerts]]\nname = \"mock-spend\"\nmetric = \"spend_rate\"\nscope = \"model=mock-1\"\n\
         window = \"30m\"\nabove = 0.05\nopen_incident = true\nincident_kind = \"cost-runaway\"\n"
    )).unwrap();
    let config = keel_core::config::Config::load(&path).unwrap();
    let store = std::sync::Arc::new(
        keel_store::Store::open(work.join("keel.db").to_str().unwrap()).unwrap(),
    );
    let rules: Vec<_> = config
        .alerting
        .rules
        .iter()
        .filter(|r| r.name == "mock-spend")
        .cloned()
        .collect();
    let notices = RuleEvaluator::default()
        .evaluate(&rules, &store, None, now_ms())
        .await;
    let firing: Vec<_> = notices
        .into_iter()
        .filter(|n| n.state == AlertState::Firing)
        .collect();
    assert_eq!(firing.len(), 1, "spend rate ≈ $0.086/h over the threshold");
    let d = Dispatcher::new(store.clone(), config.alerting.destinations.clone());
    d.dispatch_one(firing[0].clone()).await.unwrap();

    let list = KEEL.json_ok(&work, &["incident", "list"]);
    let inc = &list["incidents"][0];
    assert_eq!(inc["alert_rule"], "mock-spend");
    assert_eq!(inc["scope"], "model=mock-1");
    assert_eq!(inc["kind"], "cost-runaway");
    let v = show(&work, &inc["id"].to_string());
    assert_shifted(&v, "spend_usd_per_hour");
    assert_eq!(
        v["suspects"][0]["action"], "prompt.label",
        "{}",
        v["suspects"]
    );
    assert_eq!(
        v["suspects"][0]["revert"],
        format!(
            "keel prompt label support/answer 1 production --reason \"revert: incident {}\"",
            inc["id"]
        )
    );
    assert!(
        v["timeline"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "alert"),
        "the alert is on the timeline"
    );
}
