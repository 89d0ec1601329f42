//! Quality alerts: the significance tests against noise with a known false-positive rate
//! (seeded), and the rules against a real store — a degraded variant fires with its
//! rate, interval, baseline, sample count and the label move; noise, too few samples and
//! a not-yet-sustained drop stay quiet; the judging stall fires only with traffic.

use std::path::Path;
use std::sync::Arc;

use keel_core::config::alerting::AlertRule;
use keel_core::config::Config;
use keel_core::trace::TraceRecord;
use keel_store::audit::{record_audit, NewAuditEvent};
use keel_store::feedback::{upsert_feedback, Feedback, FeedbackValue};
use keel_store::scores::{replace_scores, ScoreRow};
use keel_store::{Store, WriterOptions};

use super::*;
use crate::alerts::rules::{notice, RuleEvaluator};
use crate::alerts::AlertState;

const H: i64 = 3_600_000;
/// A fixed "now" (2027-01-15), on no window boundary in particular.
const NOW: i64 = 1_800_000_000_000;

// ---- the tests on their own: noise has a known false-positive rate --------------------

fn binomial(rng: &mut fastrand::Rng, n: u64, p: f64) -> u64 {
    (0..n).filter(|_| rng.f64() < p).count() as u64
}

/// The share of `trials` windows that fire when window and baseline are drawn from the
/// same true rate.
fn false_positive_share(
    p: f64,
    n: u64,
    against: &dyn Fn(&mut fastrand::Rng) -> Against<Counts>,
    worse: Worse,
    seed: u64,
) -> f64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let trials = 3000;
    let fired = (0..trials)
        .filter(|_| {
            let a = against(&mut rng);
            let w = Counts {
                n,
                hits: binomial(&mut rng, n, p),
            };
            judge_rate(w, a, worse, 0.95).bad
        })
        .count();
    fired as f64 / trials as f64
}

#[test]
fn on_noise_a_rate_fires_in_at_most_one_window_in_twenty() {
    // Window and 6 baseline windows of 80 calls each from the same true pass rate.
    for (p, seed) in [(0.9, 1), (0.7, 2), (0.5, 3)] {
        let share = false_positive_share(
            p,
            80,
            &|rng| {
                Against::Baseline(Counts {
                    n: 480,
                    hits: binomial(rng, 480, p),
                })
            },
            Worse::Lower,
            seed,
        );
        assert!(
            share <= 0.05 + 0.01,
            "pass rate {p}: {share} of windows fired"
        );
    }
    // A fixed floor at exactly the true rate: the worst case for a floor.
    let share = false_positive_share(0.8, 60, &|_| Against::Floor(0.8), Worse::Lower, 4);
    assert!(share <= 0.05 + 0.01, "floor: {share} of windows fired");
    // Negative feedback, the mirror: fires when the rate is significantly higher.
    let share = false_positive_share(
        0.1,
        100,
        &|rng| {
            Against::Baseline(Counts {
                n: 300,
                hits: binomial(rng, 300, 0.1),
            })
        },
        Worse::Higher,
        5,
    );
    assert!(
        share <= 0.05 + 0.01,
        "negative feedback: {share} of windows fired"
    );
}

fn sums(values: impl Iterator<Item = f64>) -> Sums {
    values.fold(Sums::default(), |s, v| Sums {
        n: s.n + 1,
        sum: s.sum + v,
        sum_sq: s.sum_sq + v * v,
    })
}

#[test]
fn on_noise_a_mean_score_fires_in_at_most_one_window_in_twenty() {
    let mut rng = fastrand::Rng::with_seed(7);
    // Scores from a lumpy distribution: most calls good, some poor.
    let draw = |rng: &mut fastrand::Rng| {
        if rng.f64() < 0.8 {
            0.7 + 0.3 * rng.f64()
        } else {
            0.3 * rng.f64()
        }
    };
    let trials = 2000;
    let fired = (0..trials)
        .filter(|_| {
            let base = sums((0..300).map(|_| draw(&mut rng)));
            let w = sums((0..50).map(|_| draw(&mut rng)));
            judge_mean(w, Against::Baseline(base), 0.95).bad
        })
        .count();
    let share = fired as f64 / trials as f64;
    assert!(share <= 0.05 + 0.01, "{share} of windows fired");
}

#[test]
fn a_real_drop_fires_almost_always() {
    let mut rng = fastrand::Rng::with_seed(11);
    let trials = 500;
    let fired = (0..trials)
        .filter(|_| {
            let base = Counts {
                n: 480,
                hits: binomial(&mut rng, 480, 0.9),
            };
            let w = Counts {
                n: 80,
                hits: binomial(&mut rng, 80, 0.6),
            };
            judge_rate(w, Against::Baseline(base), Worse::Lower, 0.95).bad
        })
        .count();
    assert!(fired as f64 / trials as f64 >= 0.99, "{fired} of {trials}");
}

// ---- against a store -----------------------------------------------------------------

fn config(alert: &str) -> Config {
    let text = format!(
        r#"
[providers.up]
kind = "mock"
[models.mock-1]
provider = "up"

[functions.support-answer]
[[functions.support-answer.variants]]
name = "control"
prompt = "support/answer"
prompt_label = "production"
model = "mock-1"
weight = 50
[[functions.support-answer.variants]]
name = "concise"
prompt = "support/answer"
prompt_label = "production"
model = "mock-1"
weight = 50

[[online_evals]]
name = "q"
function = "support-answer"
sample_rate = 0.5
assert = [{{ type = "not-is-refusal" }}]

[[alerts]]
name = "support-quality"
{alert}
"#
    );
    Config::from_toml(&text, Path::new("/tmp/keel.toml")).unwrap()
}

fn rule(alert: &str) -> AlertRule {
    config(alert).alerting.rules.remove(0)
}

struct Seed {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    next: u64,
}

impl Seed {
    fn new() -> Seed {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
        Seed {
            _dir: dir,
            store: Arc::new(store),
            next: 0,
        }
    }

    /// `n` live calls of `variant` spread over window `idx` before `end`; the first
    /// `passed` judged passing, the rest failing (`judged = false`: not judged at all).
    fn window(
        &mut self,
        end: i64,
        idx: i64,
        variant: &str,
        n: u64,
        passed: u64,
        judged: bool,
    ) -> Vec<String> {
        let (writer, handle) = keel_store::spawn(
            &self.store,
            WriterOptions {
                capacity: 100_000,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        let start = end - (idx + 1) * H;
        let mut ids = Vec::new();
        for j in 0..n {
            self.next += 1;
            let id = format!("t{}", self.next);
            let at = start + 1 + (j as i64) * (H - 2) / n as i64;
            let mut t = TraceRecord::new(id.clone(), at, "openai", "/v1/chat/completions");
            t.function = Some("support-answer".into());
            t.variant = Some(variant.into());
            t.model_requested = Some("support-answer".into());
            writer.record(t);
            ids.push((id, at));
        }
        drop(writer);
        handle.shutdown();
        if judged {
            let mut c = self.store.writer_conn().unwrap();
            for (j, (id, at)) in ids.iter().enumerate() {
                let ok = (j as u64) < passed;
                let row = ScoreRow {
                    metric: "helpful".into(),
                    value: if ok { 0.9 } else { 0.2 },
                    passed: ok,
                    reason: None,
                };
                replace_scores(&mut c, id, "q", "online", &[row], None, at + 2_000).unwrap();
            }
        }
        ids.into_iter().map(|(id, _)| id).collect()
    }

    fn label_move(&self, at: i64) {
        self.label_move_of("support/answer@production", at);
    }

    fn label_move_of(&self, target: &str, at: i64) {
        record_audit(
            &self.store.writer_conn().unwrap(),
            at,
            &NewAuditEvent {
                actor: "alice",
                action: "prompt.label",
                target,
                from_value: Some("v3".into()),
                to_value: Some("v4".into()),
                reason: Some("shorter answers"),
                details: None,
            },
        )
        .unwrap();
    }

    fn assess(&self, rule: &AlertRule, now: i64) -> Assessment {
        assess_with(self.store.conn().unwrap().db(), rule, now).unwrap()
    }
}

const PASS_RATE: &str = r#"metric = "online_pass_rate"
online_eval = "q"
scope = "variant=concise"
window = "1h""#;

/// Six baseline windows at 90 % (72 of 80) before window 0.
fn baseline(seed: &mut Seed, end: i64, from: i64) {
    for idx in from..from + 6 {
        seed.window(end, idx, "concise", 80, 72, true);
    }
}

#[test]
fn a_degraded_variant_fires_and_says_rate_interval_baseline_n_and_the_label_move() {
    let mut s = Seed::new();
    baseline(&mut s, NOW, 1);
    s.window(NOW, 0, "concise", 80, 48, true);
    // The other variant did fine; it is not in scope.
    s.window(NOW, 0, "control", 80, 79, true);
    s.label_move(NOW - 50 * 60_000);
    // A label no variant in scope serves: not a change in scope.
    s.label_move_of("billing/answer@production", NOW - 40 * 60_000);
    let r = rule(PASS_RATE);
    let a = s.assess(&r, NOW);
    assert_eq!(a.firing, Some(true), "{}", a.measured.detail);
    let n = notice(&r, AlertState::Firing, &a.measured, NOW);
    let m = &n.message;
    assert_eq!(n.scope, "function=support-answer,variant=concise");
    assert!(
        m.starts_with("online_pass_rate is significantly worse than its baseline"),
        "{m}"
    );
    for want in [
        "pass rate 60.0 %",
        "95 % Wilson interval 49.0 %–70.0 %",
        "n = 80 judged calls",
        "baseline 90.0 % pooled over the previous 6 windows of 1h (n = 480)",
        "two-proportion z-test p = 0.0000",
        "prompt.label support/answer@production v3 → v4 by alice (shorter answers)",
    ] {
        assert!(m.contains(want), "missing `{want}` in:\n{m}");
    }
    assert!(!m.contains("billing/answer"), "{m}");
    assert_eq!(n.value, Some(0.6));
}

#[test]
fn a_small_dip_within_noise_stays_quiet() {
    let mut s = Seed::new();
    baseline(&mut s, NOW, 1);
    s.window(NOW, 0, "concise", 80, 68, true); // 85 % against 90 %
    let a = s.assess(&rule(PASS_RATE), NOW);
    assert_eq!(a.firing, Some(false), "{}", a.measured.detail);
}

#[tokio::test]
async fn below_min_samples_the_rule_is_quiet_however_bad_the_window() {
    let mut s = Seed::new();
    baseline(&mut s, NOW, 1);
    s.window(NOW, 0, "concise", 20, 2, true); // 10 %, but only 20 calls
    let r = rule(PASS_RATE);
    let a = s.assess(&r, NOW);
    assert_eq!(a.firing, None);
    assert!(
        a.measured.detail.contains("fewer than min_samples = 30"),
        "{}",
        a.measured.detail
    );
    let mut ev = RuleEvaluator::default();
    assert!(ev.evaluate(&[r], &s.store, None, NOW).await.is_empty());
}

#[tokio::test]
async fn sustained_fires_only_on_the_kth_consecutive_bad_window() {
    let mut s = Seed::new();
    let r = rule(&format!("{PASS_RATE}\nsustained = 2"));
    baseline(&mut s, NOW, 1);
    s.window(NOW, 0, "concise", 80, 48, true);
    let mut ev = RuleEvaluator::default();
    let first = ev
        .evaluate(std::slice::from_ref(&r), &s.store, None, NOW)
        .await;
    assert!(
        first.iter().all(|n| n.state != AlertState::Firing),
        "{first:?}"
    );
    assert!(s
        .assess(&r, NOW)
        .measured
        .detail
        .contains("Consecutive bad windows: 1 of sustained = 2"));
    // An hour later the next window is bad too: now it fires.
    let later = NOW + H;
    s.window(later, 0, "concise", 80, 50, true);
    let second = ev
        .evaluate(std::slice::from_ref(&r), &s.store, None, later)
        .await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].state, AlertState::Firing);
    assert!(
        second[0]
            .message
            .contains("Consecutive bad windows: 2 of sustained = 2"),
        "{}",
        second[0].message
    );
}

#[test]
fn a_fixed_floor_fires_only_when_the_whole_interval_is_below_it() {
    let mut s = Seed::new();
    s.window(NOW, 0, "concise", 80, 60, true); // 75 %, interval ~64–84 %
    let floor = |f: f64| rule(&format!("{PASS_RATE}\nbelow = {f}"));
    assert_eq!(s.assess(&floor(0.8), NOW).firing, Some(false));
    let a = s.assess(&floor(0.9), NOW);
    assert_eq!(a.firing, Some(true));
    assert!(
        a.measured.detail.contains("fixed floor 90.0 %"),
        "{}",
        a.measured.detail
    );
}

#[test]
fn online_score_and_negative_feedback_fire_on_a_real_move() {
    let mut s = Seed::new();
    for idx in 1..7 {
        s.window(NOW, idx, "concise", 80, 72, true);
    }
    let now_ids = s.window(NOW, 0, "concise", 80, 40, true);
    let score = rule(
        r#"metric = "online_score"
online_eval = "q"
score_metric = "helpful"
window = "1h""#,
    );
    let a = s.assess(&score, NOW);
    assert_eq!(a.firing, Some(true), "{}", a.measured.detail);
    assert!(
        a.measured.detail.contains("mean `helpful` score 0.550"),
        "{}",
        a.measured.detail
    );

    // Feedback: 10 % negative in the baseline windows' calls, 40 % now.
    let mut c = s.store.writer_conn().unwrap();
    let mut give = |id: &str, up: bool| {
        let fb = Feedback {
            trace_id: id.into(),
            name: "thumbs".into(),
            source: "user".into(),
            value: FeedbackValue::Bool(up),
            comment: None,
            key_id: None,
            at_ms: NOW,
        };
        upsert_feedback(&mut c, &fb, "anonymous").unwrap();
    };
    for (i, id) in now_ids.iter().enumerate() {
        give(id, i % 5 >= 2);
    }
    let older = s.window(NOW, 1, "concise", 200, 0, false);
    for (i, id) in older.iter().enumerate() {
        give(id, i % 10 != 0);
    }
    let fb = rule(
        r#"metric = "feedback_negative_rate"
feedback_name = "thumbs"
scope = "function=support-answer"
window = "1h""#,
    );
    let a = s.assess(&fb, NOW);
    assert_eq!(a.firing, Some(true), "{}", a.measured.detail);
    assert!(
        a.measured
            .detail
            .contains("negative `thumbs` feedback rate 40.0 %"),
        "{}",
        a.measured.detail
    );
}

const STALL: &str = r#"metric = "online_judging_stalled"
online_eval = "q"
window = "1h""#;

#[test]
fn the_stall_alert_fires_on_traffic_with_nothing_judged_and_is_quiet_without_traffic() {
    let r = rule(STALL);
    // No traffic: quiet.
    let mut s = Seed::new();
    assert_eq!(s.assess(&r, NOW).firing, Some(false));
    // 4 calls at sample rate 0.5: 2 expected, e^-2 = 13.5 % by chance: still quiet.
    s.window(NOW, 0, "concise", 4, 0, false);
    assert_eq!(s.assess(&r, NOW).firing, Some(false));
    // 40 calls, none judged: fires.
    s.window(NOW, 0, "control", 36, 0, false);
    let a = s.assess(&r, NOW);
    assert_eq!(a.firing, Some(true), "{}", a.measured.detail);
    let n = notice(&r, AlertState::Firing, &a.measured, NOW);
    assert!(
        n.message.contains(
            "judged 0 calls in the last 1h while its scope (function=support-answer) had"
        ),
        "{}",
        n.message
    );
    // Judging resumes: quiet again.
    let mut s2 = Seed::new();
    s2.window(NOW, 0, "control", 40, 30, true);
    assert_eq!(s2.assess(&r, NOW).firing, Some(false));
}

#[test]
fn quality_keys_are_validated_with_their_key_paths() {
    let bad = |alert: &str| {
        let text = format!("[providers.up]\nkind = \"mock\"\n[models.mock-1]\nprovider = \"up\"\n[[alerts]]\nname = \"a\"\n{alert}\n");
        let e = Config::from_toml(&text, Path::new("/tmp/keel.toml")).unwrap_err();
        e.issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let e = bad("metric = \"online_pass_rate\"\nonline_eval = \"nope\"");
    assert!(
        e.contains("alerts[0].online_eval: online eval `nope` is not configured"),
        "{e}"
    );
    let e = bad("metric = \"online_score\"\nonline_eval = \"nope\"");
    assert!(e.contains("alerts[0].score_metric"), "{e}");
    let e = bad("metric = \"feedback_negative_rate\"\nbelow = 0.2");
    assert!(e.contains("alerts[0].below"), "{e}");
    let e = bad("metric = \"feedback_negative_rate\"\nabove = 0.2\nbaseline_windows = 3");
    assert!(
        e.contains("alerts[0].above: both `above` and `baseline_windows` are set"),
        "{e}"
    );
    let e = bad("metric = \"error_rate\"\nabove = 0.1\nsustained = 2");
    assert!(
        e.contains("alerts[0].sustained: `sustained` applies to quality rules"),
        "{e}"
    );
    let e = bad("metric = \"feedback_negative_rate\"\nconfidence = 1.5\nscope = \"variant=x\"");
    assert!(
        e.contains("alerts[0].confidence") && e.contains("alerts[0].scope"),
        "{e}"
    );
}

#[test]
fn a_human_rule_reads_the_review_queues_verdicts_not_the_judge() {
    // The judge passes all 80 calls of the window; reviewers call 40 of them bad.
    let mut s = Seed::new();
    let ids = s.window(NOW, 0, "concise", 80, 80, true);
    let mut c = s.store.writer_conn().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let good = i % 2 == 0;
        let row = ScoreRow {
            metric: "verdict".into(),
            value: if good { 1.0 } else { 0.0 },
            passed: good,
            reason: None,
        };
        replace_scores(&mut c, id, "rq", "human", &[row], None, NOW - 1_000).unwrap();
    }
    let queue =
        "\n[[review_queues]]\nname = \"rq\"\nfunction = \"support-answer\"\nsample_rate = 0.1\n";
    let human = rule(&format!(
        "metric = \"online_pass_rate\"\nsource = \"human\"\nreview_queue = \"rq\"\nwindow = \"1h\"\nbelow = 0.8\n{queue}"
    ));
    let a = s.assess(&human, NOW);
    assert_eq!(a.firing, Some(true), "{}", a.measured.detail);
    assert!(
        a.measured
            .detail
            .contains("review queue `rq` human pass rate (verdict good) 50.0 %")
            && a.measured.detail.contains("n = 80 reviewed calls"),
        "{}",
        a.measured.detail
    );
    let judge = rule(&format!("{PASS_RATE}\nbelow = 0.8\n{queue}"));
    assert_eq!(s.assess(&judge, NOW).firing, Some(false));
}
