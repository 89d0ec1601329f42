//! Quality alert rules (`online_pass_rate`, `online_score`, `feedback_negative_rate`,
//! `online_judging_stalled`): statistically honest — a rule fires when its window is
//! *significantly* worse than its baseline, never on one bad sample.
//!
//! How a window is judged (window 0 is `[now - window, now)`, window i the one i
//! windows before it; calls are placed by when they started):
//! - **rates** (`online_pass_rate`: judged calls that passed every assertion;
//!   `feedback_negative_rate`: feedback values `<= 0` among numbers and booleans): the
//!   window's rate gets a two-sided Wilson interval at `confidence`. Against a fixed
//!   floor (`below`/`above`) the window is bad when the whole interval is on the wrong
//!   side of it. Against the baseline (`baseline_windows = N`: the N windows before the
//!   judged ones, pooled) it is bad when the interval is on the wrong side of the pooled
//!   rate **and** a one-sided two-proportion z-test (pooled variance, so the baseline's
//!   own noise counts; with Yates' continuity correction, so small rates' skewed tails
//!   do not fire too often) gives p < 1 - confidence.
//! - **scores** (`online_score`: the mean of one assertion metric, one value per judged
//!   call): the same, with a normal interval of the mean (sample standard deviation) and
//!   a one-sided Welch z-test against the baseline's mean.
//! - a window with fewer than `min_samples` samples is not judged (quiet: the rule keeps
//!   its state), nor is a baseline with fewer than `min_samples` samples in all.
//! - `sustained = K`: the rule fires only when windows 0..K-1 are all bad (the baseline
//!   is then the N windows before those K).
//! - **stall** (`online_judging_stalled`): the eval judged nothing in the window while
//!   its scope (the eval's coverage and the rule's scope) had `c` live calls, started up
//!   to [`STALL_LAG`] before the window's end (so the judging queue can catch up). With
//!   sample rate `r`, `λ = c·r` calls were expected to be judged; the chance that none
//!   was sampled is `e^-λ`, so it fires when `e^-λ < 1 - confidence` (λ ≥ 3 at 0.95). An
//!   eval paused by its daily judge spend cap does not fire.
//!
//! - **people** (`source = "human"`, `review_queue = NAME`): the same rates and means
//!   over the `human` scores the queue's labels become (pass = verdict good; a number
//!   label's mean), instead of the judge's (`keel_core::config::score_source`).
//!
//! The notice says the rate, its interval, the baseline and how it was computed, the
//! sample counts, and what changed in scope during the bad windows and the one before:
//! moves and rollbacks of the labels its variants serve, config loads, canary and split
//! moves of its function, model version changes, and any change naming one of the
//! scope's values (the newest [`CHANGES_SHOWN`]).

use std::sync::Arc;
use std::time::Duration;

use keel_core::config::alerting::{AlertMetric, AlertRule, Threshold};
use keel_core::config::quality_alerts::QualityRule;
use keel_core::config::score_source::ScoreSource;
use keel_stats::intervals::{normal_cdf, normal_quantile, wilson};
use keel_store::quality_windows::{CallFilter, Counts, ScoreSources, Sums, Windows};
use keel_store::{AuditEvent, Store};

use super::rules::Measured;

/// Calls started this close to a stall window's end are not expected to be judged yet.
pub const STALL_LAG: Duration = Duration::from_secs(60);

/// At most this many changes in scope are listed in a notice.
pub const CHANGES_SHOWN: usize = 5;

/// Which way is worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worse {
    /// Pass rates and scores.
    Lower,
    /// Negative feedback rates.
    Higher,
}

/// What a window is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Against<T> {
    Floor(f64),
    Baseline(T),
}

/// One window judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub n: u64,
    /// The baseline's rate or mean (the floor for a fixed one).
    pub baseline: f64,
    /// Samples in the baseline (`None`: a fixed floor).
    pub baseline_n: Option<u64>,
    /// One-sided p-value against the baseline (`None`: a fixed floor).
    pub p_value: Option<f64>,
    pub bad: bool,
}

fn worse_side(worse: Worse, low: f64, high: f64, reference: f64) -> bool {
    match worse {
        Worse::Lower => high < reference,
        Worse::Higher => low > reference,
    }
}

/// One-sided p-value of a standardised difference `d / se` in the worse direction
/// (`d` = how much worse the window is); a zero `se` is certain either way.
fn one_sided_p(d: f64, se: f64) -> f64 {
    if se > 0.0 && se.is_finite() {
        1.0 - normal_cdf(d / se)
    } else if d > 0.0 {
        0.0
    } else {
        1.0
    }
}

/// Judge a rate window (`hits` of `n`) against a floor or a pooled baseline.
pub fn judge_rate(w: Counts, against: Against<Counts>, worse: Worse, confidence: f64) -> Judged {
    let i = wilson(w.hits, w.n, confidence);
    let p = if w.n > 0 {
        w.hits as f64 / w.n as f64
    } else {
        0.0
    };
    match against {
        Against::Floor(f) => Judged {
            estimate: p,
            low: i.low,
            high: i.high,
            n: w.n,
            baseline: f,
            baseline_n: None,
            p_value: None,
            bad: w.n > 0 && worse_side(worse, i.low, i.high, f),
        },
        Against::Baseline(b) => {
            let pb = if b.n > 0 {
                b.hits as f64 / b.n as f64
            } else {
                0.0
            };
            let pooled = (w.hits + b.hits) as f64 / (w.n + b.n).max(1) as f64;
            let se =
                (pooled * (1.0 - pooled) * (1.0 / w.n.max(1) as f64 + 1.0 / b.n.max(1) as f64))
                    .sqrt();
            let d = match worse {
                Worse::Lower => pb - p,
                Worse::Higher => p - pb,
            };
            // Yates' continuity correction: the normal tail is too thin for a skewed
            // binomial (small rates, the side a negative-feedback rate fires on).
            let cc = 0.5 * (1.0 / w.n.max(1) as f64 + 1.0 / b.n.max(1) as f64);
            let pv = one_sided_p(d - cc, se);
            Judged {
                estimate: p,
                low: i.low,
                high: i.high,
                n: w.n,
                baseline: pb,
                baseline_n: Some(b.n),
                p_value: Some(pv),
                bad: w.n > 0
                    && b.n > 0
                    && worse_side(worse, i.low, i.high, pb)
                    && pv < 1.0 - confidence,
            }
        }
    }
}

fn mean_var(s: Sums) -> (f64, f64) {
    if s.n == 0 {
        return (0.0, 0.0);
    }
    let n = s.n as f64;
    let mean = s.sum / n;
    let var = if s.n > 1 {
        ((s.sum_sq - n * mean * mean) / (n - 1.0)).max(0.0)
    } else {
        0.0
    };
    (mean, var)
}

/// Judge a window of scores (lower is worse) against a floor or a pooled baseline.
pub fn judge_mean(w: Sums, against: Against<Sums>, confidence: f64) -> Judged {
    let (m, var) = mean_var(w);
    let se = (var / w.n.max(1) as f64).sqrt();
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let (low, high) = ((m - z * se).clamp(0.0, 1.0), (m + z * se).clamp(0.0, 1.0));
    match against {
        Against::Floor(f) => Judged {
            estimate: m,
            low,
            high,
            n: w.n,
            baseline: f,
            baseline_n: None,
            p_value: None,
            bad: w.n > 0 && high < f,
        },
        Against::Baseline(b) => {
            let (mb, vb) = mean_var(b);
            let se_diff = (var / w.n.max(1) as f64 + vb / b.n.max(1) as f64).sqrt();
            let pv = one_sided_p(mb - m, se_diff);
            Judged {
                estimate: m,
                low,
                high,
                n: w.n,
                baseline: mb,
                baseline_n: Some(b.n),
                p_value: Some(pv),
                bad: w.n > 0 && b.n > 0 && high < mb && pv < 1.0 - confidence,
            }
        }
    }
}

/// A quality rule's measurement: what the notice says, and whether it fires (`None`:
/// too few samples to say either way).
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub measured: Measured,
    pub firing: Option<bool>,
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn filter(q: &QualityRule) -> CallFilter<'_> {
    CallFilter {
        function: q.scope.function.as_deref(),
        variant: q.scope.variant.as_deref(),
        tenant: q.scope.tenant.as_deref(),
        feature: q.scope.feature.as_deref(),
        model: q.scope.model.as_deref(),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4).max(1)
}

/// Measure a quality rule at `now_ms` (off the request path: a blocking store read).
pub async fn assess(
    rule: &AlertRule,
    store: &Arc<Store>,
    now_ms: i64,
) -> Result<Assessment, String> {
    let rule = rule.clone();
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let conn = store.conn().map_err(|e| e.to_string())?;
        assess_with(conn.db(), &rule, now_ms).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// [`assess`] on an open connection.
pub fn assess_with(
    conn: keel_store::sql::Db<'_>,
    rule: &AlertRule,
    now_ms: i64,
) -> Result<Assessment, keel_store::StoreError> {
    let Some(q) = &rule.quality else {
        return Ok(Assessment {
            measured: Measured {
                value: None,
                detail: "not a quality rule".into(),
            },
            firing: None,
        });
    };
    if rule.metric == AlertMetric::OnlineJudgingStalled {
        return stall(conn, rule, q, now_ms);
    }
    let width = ms(rule.window);
    let k = q.sustained.max(1) as usize;
    let base_n = match rule.threshold {
        Threshold::Baseline(n) => n as usize,
        _ => 0,
    };
    let w = Windows {
        end_ms: now_ms,
        width_ms: width,
        count: k + base_n,
    };
    let f = filter(q);
    let eval = q.scores_eval();
    let sources = match q.source {
        ScoreSource::Judge => ScoreSources::Judge,
        ScoreSource::Human { .. } => ScoreSources::Human,
    };
    let floor = match rule.threshold {
        Threshold::Above(t) | Threshold::Below(t) => Some(t),
        _ => None,
    };
    let judged: Vec<Judged> = if rule.metric == AlertMetric::OnlineScore {
        let metric = q.score_metric.as_deref().unwrap_or_default();
        let s = keel_store::quality_windows::score_sums(conn, eval, metric, sources, &f, &w)?;
        let base = s[k..].iter().fold(Sums::default(), |a, b| Sums {
            n: a.n + b.n,
            sum: a.sum + b.sum,
            sum_sq: a.sum_sq + b.sum_sq,
        });
        let against = floor.map_or(Against::Baseline(base), Against::Floor);
        s[..k]
            .iter()
            .map(|x| judge_mean(*x, against, q.confidence))
            .collect()
    } else {
        let (c, worse) = if rule.metric == AlertMetric::FeedbackNegativeRate {
            let c = keel_store::quality_windows::negative_feedback_counts(
                conn,
                q.feedback_name.as_deref(),
                &f,
                &w,
            )?;
            (c, Worse::Higher)
        } else {
            (
                keel_store::quality_windows::pass_counts(conn, eval, sources, &f, &w)?,
                Worse::Lower,
            )
        };
        let base = c[k..].iter().fold(Counts::default(), |a, b| Counts {
            n: a.n + b.n,
            hits: a.hits + b.hits,
        });
        let against = floor.map_or(Against::Baseline(base), Against::Floor);
        c[..k]
            .iter()
            .map(|x| judge_rate(*x, against, worse, q.confidence))
            .collect()
    };
    let changes = changes_in_scope(
        conn,
        q,
        now_ms.saturating_sub(width.saturating_mul(k as i64 + 1)),
    )?;
    Ok(describe(rule, q, &judged, base_n, &changes))
}

fn what(rule: &AlertRule, q: &QualityRule) -> (String, &'static str) {
    let eval = q.scores_eval();
    if let ScoreSource::Human { queue } = &q.source {
        return match rule.metric {
            AlertMetric::OnlineScore => (
                format!(
                    "review queue `{queue}` mean human `{}` score",
                    q.score_metric.as_deref().unwrap_or_default()
                ),
                "reviewed calls",
            ),
            _ => (
                format!("review queue `{queue}` human pass rate (verdict good)"),
                "reviewed calls",
            ),
        };
    }
    match rule.metric {
        AlertMetric::OnlineScore => (
            format!(
                "online eval `{eval}` mean `{}` score",
                q.score_metric.as_deref().unwrap_or_default()
            ),
            "judged calls",
        ),
        AlertMetric::FeedbackNegativeRate => (
            match &q.feedback_name {
                Some(n) => format!("negative `{n}` feedback rate"),
                None => "negative feedback rate".to_string(),
            },
            "feedback values",
        ),
        _ => (format!("online eval `{eval}` pass rate"), "judged calls"),
    }
}

fn describe(
    rule: &AlertRule,
    q: &QualityRule,
    judged: &[Judged],
    base_windows: usize,
    changes: &[AuditEvent],
) -> Assessment {
    let window = humantime::format_duration(rule.window).to_string();
    let (name, unit) = what(rule, q);
    let score = rule.metric == AlertMetric::OnlineScore;
    let show = |x: f64| if score { format!("{x:.3}") } else { pct(x) };
    let Some(now) = judged.first() else {
        return Assessment {
            measured: Measured {
                value: None,
                detail: "no window".into(),
            },
            firing: None,
        };
    };
    let conf = format!("{:.0} %", q.confidence * 100.0);
    let mut detail = format!(
        "{name} {} ({conf} {} interval {}–{}) over the last {window}, n = {} {unit}",
        show(now.estimate),
        if score { "normal" } else { "Wilson" },
        show(now.low),
        show(now.high),
        now.n
    );
    let baseline = match (now.baseline_n, now.p_value) {
        (Some(bn), Some(p)) => format!(
            "baseline {} pooled over the previous {base_windows} windows of {window} (n = {bn}); one-sided {} p = {p:.4} (bad below {:.4})",
            show(now.baseline),
            if score { "Welch z-test" } else { "two-proportion z-test" },
            1.0 - q.confidence
        ),
        _ => format!("fixed floor {}", show(now.baseline)),
    };
    detail.push_str(&format!("; {baseline}"));
    let base_short = now.baseline_n.is_some_and(|bn| bn < q.min_samples);
    let short = judged.iter().any(|j| j.n < q.min_samples);
    let bad = judged.iter().take_while(|j| j.bad).count();
    let firing = if short || base_short {
        if now.n < q.min_samples {
            detail.push_str(&format!(
                ". Quiet: fewer than min_samples = {} {unit} in the window",
                q.min_samples
            ));
        } else if base_short {
            detail.push_str(&format!(
                ". Quiet: fewer than min_samples = {} {unit} in the baseline",
                q.min_samples
            ));
        } else {
            detail.push_str(&format!(
                ". Quiet: an earlier window of the sustained = {} has fewer than min_samples = {}",
                judged.len(),
                q.min_samples
            ));
        }
        None
    } else {
        if judged.len() > 1 {
            detail.push_str(&format!(
                ". Consecutive bad windows: {bad} of sustained = {}",
                judged.len()
            ));
        }
        Some(bad == judged.len())
    };
    detail.push_str(&format!(
        ". Changes in scope ({}) since {} windows ago:",
        q.scope,
        judged.len() + 1
    ));
    if changes.is_empty() {
        detail.push_str(" none");
    }
    for c in changes {
        detail.push_str(&format!("\n- {}", super::deliver::describe(c)));
    }
    Assessment {
        measured: Measured {
            value: firing.map(|_| now.estimate),
            detail,
        },
        firing,
    }
}

/// Whether an audit event can change what the scope serves: a move of a label its
/// variants serve (any label when the scope names no function), a config load, a canary
/// or split move of its function, a model version change, or any change naming one of
/// the scope's values.
fn in_scope(q: &QualityRule, e: &AuditEvent) -> bool {
    let a = e.action.as_str();
    let label = a.starts_with("prompt.label") || a == "prompt.rollback";
    (label && q.labels.as_ref().is_none_or(|l| l.contains(&e.target)))
        || a == "config.load"
        || a.starts_with("model.version")
        || (a.starts_with("function.canary")
            && q.scope.function.as_ref().is_none_or(|f| *f == e.target))
        || q.scope.values().iter().any(|v| {
            e.target == *v
                || e.target.starts_with(&format!("{v}@"))
                || e.details_json
                    .as_deref()
                    .is_some_and(|d| d.contains(&format!("\"{v}\"")))
        })
}

fn changes_in_scope(
    conn: keel_store::sql::Db<'_>,
    q: &QualityRule,
    since_ms: i64,
) -> Result<Vec<AuditEvent>, keel_store::StoreError> {
    let all = keel_store::list_audit(conn, since_ms, 500)?;
    Ok(all
        .into_iter()
        .filter(|e| in_scope(q, e))
        .take(CHANGES_SHOWN)
        .collect())
}

fn stall(
    conn: keel_store::sql::Db<'_>,
    rule: &AlertRule,
    q: &QualityRule,
    now_ms: i64,
) -> Result<Assessment, keel_store::StoreError> {
    let Some(e) = &q.online_eval else {
        return Ok(Assessment {
            measured: Measured {
                value: None,
                detail: "no online eval".into(),
            },
            firing: None,
        });
    };
    let width = ms(rule.window);
    let lag = ms(STALL_LAG).min(width / 4);
    let f = filter(q);
    let since = now_ms - width;
    let traffic = keel_store::quality_windows::calls_between(conn, &f, since, now_ms - lag)?;
    let (judged, failed) =
        keel_store::quality_windows::judged_between(conn, &e.name, &f, since, now_ms)?;
    let expected = traffic as f64 * e.sample_rate;
    let chance = (-expected).exp();
    let day = now_ms.div_euclid(86_400_000) * 86_400_000;
    let paused = match e.max_judge_spend_per_day {
        Some(cap) => keel_store::scores::judge_spend_since(conn, &e.name, day)? >= cap.0,
        None => false,
    };
    let window = humantime::format_duration(rule.window).to_string();
    let mut detail = format!(
        "online eval `{}` judged {judged} calls in the last {window} while its scope ({}) had {traffic} live calls (≈ {expected:.1} expected to be judged at sample rate {}; the chance of sampling none is {:.2} %)",
        e.name,
        q.scope,
        e.sample_rate,
        chance * 100.0
    );
    if failed > 0 {
        let last = keel_store::scores::judging_figures(conn, &e.name, since)?.last_error;
        detail.push_str(&format!(
            "; {failed} calls could not be judged, last error: {}",
            last.unwrap_or_default()
        ));
    }
    if paused {
        detail.push_str("; judging is paused by max_judge_spend_usd_per_day until 00:00 UTC");
    }
    let firing = judged == 0 && !paused && chance < 1.0 - q.confidence;
    if firing {
        let changes = changes_in_scope(conn, q, now_ms - 2 * width)?;
        detail.push_str(". Changes in scope since 2 windows ago:");
        if changes.is_empty() {
            detail.push_str(" none");
        }
        for c in &changes {
            detail.push_str(&format!("\n- {}", super::deliver::describe(c)));
        }
    }
    Ok(Assessment {
        measured: Measured {
            value: Some(judged as f64),
            detail,
        },
        firing: Some(firing),
    })
}

#[cfg(test)]
#[path = "quality_tests.rs"]
mod tests;
