//! Model rules end to end in-process: config → evaluator → notices. A version change
//! audited by the watch fires `model_changed` once (scoped by model), a canary's
//! `model.behaviour_changed` fires with the metric, interval and flipped cases, and
//! `model_retiring` announces each stage (90, 30, 7 days) once.

use std::path::Path;
use std::sync::Arc;

use keel_core::config::alerting::AlertMetric;
use keel_core::config::Config;
use keel_core::lifecycle::parse_date;
use keel_store::audit::{record_audit, NewAuditEvent};
use keel_store::Store;

use super::rules::RuleEvaluator;
use super::AlertState;

const BASE: &str = r#"
[providers.up]
kind = "mock"
[models.chat]
provider = "up"
upstream_model = "house-v1"
input_price_per_mtok = 1
output_price_per_mtok = 2
[models.other]
provider = "up"
upstream_model = "house-v2"
input_price_per_mtok = 1
output_price_per_mtok = 2
"#;

fn config(extra: &str) -> Result<Config, String> {
    Config::from_toml(&format!("{BASE}{extra}"), Path::new("/tmp/keel.toml"))
        .map_err(|e| e.to_string())
}

fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
    (dir, Arc::new(s))
}

fn audit(store: &Store, at_ms: i64, action: &str, model: &str, details: serde_json::Value) {
    let conn = store.writer_conn().unwrap();
    record_audit(
        &conn,
        at_ms,
        &NewAuditEvent {
            actor: "keel",
            action,
            target: model,
            from_value: Some("fp_a".into()),
            to_value: Some("fp_b".into()),
            reason: None,
            details: Some(details),
        },
    )
    .unwrap();
}

#[test]
fn model_rules_take_no_threshold_and_are_scoped_by_model() {
    let c = config(
        "[[alerts]]\nname = \"changed\"\nmetric = \"model_changed\"\nscope = \"model=chat\"\n",
    )
    .unwrap();
    let r = &c.alerting.rules[0];
    assert_eq!(r.metric, AlertMetric::ModelChanged);
    assert_eq!(r.window.as_secs(), 3600);
    let e = config(
        "[[alerts]]\nname = \"x\"\nmetric = \"model_changed\"\nabove = 1\nscope = \"feature=a\"\n",
    )
    .unwrap_err();
    assert!(e.contains("alerts[0].above"), "{e}");
    assert!(e.contains("alerts[0].scope"), "{e}");
    let e = config("[[alerts]]\nname = \"x\"\nmetric = \"model_retiring\"\nscope = \"model=nope\"\nwindow = \"1h\"\n").unwrap_err();
    assert!(e.contains("model `nope` is not configured"), "{e}");
    assert!(e.contains("alerts[0].window"), "{e}");
}

#[tokio::test]
async fn a_version_change_fires_model_changed_once_in_its_scope() {
    let c = config(
        "[[alerts]]\nname = \"chat-changed\"\nmetric = \"model_changed\"\nscope = \"model=chat\"\nwindow = \"30m\"\n\
         [[alerts]]\nname = \"other-changed\"\nmetric = \"model_changed\"\nscope = \"model=other\"\n",
    )
    .unwrap();
    let (_d, store) = store();
    let now = 1_800_000_000_000_i64;
    let mut ev = RuleEvaluator::default();
    let quiet = ev.evaluate(&c.alerting.rules, &store, None, now).await;
    assert!(
        quiet.iter().all(|n| n.state == AlertState::Resolved),
        "{quiet:?}"
    );

    audit(
        &store,
        now + 1_000,
        "model.version_changed",
        "chat",
        serde_json::json!({"deployment": "up", "first_trace_id": "trc_1"}),
    );
    let fired = ev
        .evaluate(&c.alerting.rules, &store, None, now + 2_000)
        .await;
    let firing: Vec<_> = fired
        .iter()
        .filter(|n| n.state == AlertState::Firing)
        .collect();
    assert_eq!(firing.len(), 1, "{fired:?}");
    assert_eq!(firing[0].name, "chat-changed");
    assert_eq!(firing[0].scope, "model=chat");
    assert!(
        firing[0]
            .message
            .contains("`chat` now answers as `fp_b` (was `fp_a`)"),
        "{}",
        firing[0].message
    );
    assert!(firing[0].message.contains("trc_1"), "{}", firing[0].message);

    // Past the window it resolves.
    let later = ev
        .evaluate(&c.alerting.rules, &store, None, now + 31 * 60_000)
        .await;
    assert!(later
        .iter()
        .any(|n| n.name == "chat-changed" && n.state == AlertState::Resolved));
}

#[tokio::test]
async fn a_canary_finding_fires_model_behaviour_changed_with_its_numbers() {
    let c =
        config("[[alerts]]\nname = \"behaviour\"\nmetric = \"model_behaviour_changed\"\n").unwrap();
    let (_d, store) = store();
    let now = 1_800_000_000_000_i64;
    audit(
        &store,
        now,
        "model.behaviour_changed",
        "chat",
        serde_json::json!({
            "suite": "support", "metric": "pass_rate", "delta": -0.4, "delta_ci": [-0.6, -0.2],
            "flipped_cases": ["c1", "c2"]
        }),
    );
    let mut ev = RuleEvaluator::default();
    let n = ev.evaluate(&c.alerting.rules, &store, None, now + 1).await;
    assert_eq!(n[0].state, AlertState::Firing);
    let m = &n[0].message;
    assert!(
        m.contains("suite `support`") && m.contains("pass_rate -0.400 (95% CI -0.600 to -0.200)"),
        "{m}"
    );
    assert!(m.contains("2 case(s) flipped: c1, c2"), "{m}");
}

#[tokio::test]
async fn model_retiring_announces_each_stage_once() {
    // A fixed retirement date; the evaluator's clock moves across the stages.
    let c = config("[models.old]\nprovider = \"up\"\nupstream_model = \"old-v1\"\ninput_price_per_mtok = 1\noutput_price_per_mtok = 2\ndeprecated = \"2030-01-01\"\nretires = \"2030-06-01\"\nsuccessor = \"chat\"\n[[alerts]]\nname = \"retiring\"\nmetric = \"model_retiring\"\n").unwrap();
    assert_eq!(c.alerting.rules[0].lifecycle.len(), 1);
    let (_d, store) = store();
    let day = |s: &str| {
        parse_date(s)
            .unwrap()
            .midnight()
            .assume_utc()
            .unix_timestamp()
            * 1000
            + 3_600_000
    };
    let mut ev = RuleEvaluator::default();
    let early = ev
        .evaluate(&c.alerting.rules, &store, None, day("2030-01-15"))
        .await;
    assert!(
        early.iter().all(|n| n.state == AlertState::Resolved),
        "{early:?}"
    );
    let mut keys = Vec::new();
    for d in [
        "2030-03-10",
        "2030-03-20",
        "2030-05-05",
        "2030-05-28",
        "2030-06-02",
    ] {
        let n = ev.evaluate(&c.alerting.rules, &store, None, day(d)).await;
        let f = n.iter().find(|n| n.state == AlertState::Firing).unwrap();
        assert!(f.message.contains("`old`"), "{}", f.message);
        assert!(
            f.message.contains("keel models check-successor old"),
            "{}",
            f.message
        );
        keys.push(f.dedupe_key.clone());
    }
    assert_eq!(
        keys,
        [
            "rule|retiring|90d",
            "rule|retiring|90d",
            "rule|retiring|30d",
            "rule|retiring|7d",
            "rule|retiring|0d"
        ],
        "the dispatcher sends one notice per stage: the key changes only when the stage does"
    );
}
