//! Measuring the rules that fire on what happens to a model (`model_changed`,
//! `model_behaviour_changed`, `model_retiring`; config in
//! `keel_core::config::model_alerts`). The first two read the audit log — the version
//! watch and the canaries write there, so a restarted gateway, or another replica, sees
//! the same events; the third reads the lifecycle dates the rule was given at load.

use keel_core::config::alerting::{AlertMetric, AlertRule};
use keel_core::lifecycle::{day_of_ms, format_date};
use keel_store::{AuditEvent, Store};

use super::rules::Measured;

/// The audit action of a version change (written by the gateway's version watch).
pub const VERSION_CHANGED: &str = "model.version_changed";
/// The audit action of a canary's significant change (written by scheduled canaries).
pub const BEHAVIOUR_CHANGED: &str = "model.behaviour_changed";

/// The measurement and whether it fires.
pub async fn assess(
    rule: &AlertRule,
    store: &std::sync::Arc<Store>,
    now_ms: i64,
) -> Result<(Measured, bool), String> {
    match rule.metric {
        AlertMetric::ModelRetiring => Ok(retiring(rule, now_ms)),
        AlertMetric::ModelChanged | AlertMetric::ModelBehaviourChanged => {
            let action = if rule.metric == AlertMetric::ModelChanged {
                VERSION_CHANGED
            } else {
                BEHAVIOUR_CHANGED
            };
            let since = now_ms - i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
            let store = store.clone();
            let events = tokio::task::spawn_blocking(move || {
                let conn = store.conn().map_err(|e| e.to_string())?;
                keel_store::audit::list_audit_action(&conn, action, since, 100)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            let model = rule.scope.value.as_deref();
            let events: Vec<_> = events
                .into_iter()
                .filter(|e| model.is_none_or(|m| e.target == m))
                .collect();
            Ok(events_measured(rule, &events))
        }
        _ => Err(format!("{} is not a model rule", rule.metric.as_str())),
    }
}

fn events_measured(rule: &AlertRule, events: &[AuditEvent]) -> (Measured, bool) {
    let window = humantime::format_duration(rule.window).to_string();
    let n = events.len();
    if n == 0 {
        let what = if rule.metric == AlertMetric::ModelChanged {
            "no model answered with a new version"
        } else {
            "no canary found a change in behaviour"
        };
        return (
            Measured {
                value: Some(0.0),
                detail: format!("{what} in the last {window}"),
            },
            false,
        );
    }
    let shown: Vec<String> = events.iter().take(3).map(|e| describe(rule, e)).collect();
    let more = if n > 3 {
        format!("; and {} more", n - 3)
    } else {
        String::new()
    };
    (
        Measured {
            value: Some(n as f64),
            detail: format!("{}{more}", shown.join("; ")),
        },
        true,
    )
}

fn describe(rule: &AlertRule, e: &AuditEvent) -> String {
    let details: serde_json::Value = e
        .details_json
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    let old = e.from_value.as_deref().unwrap_or("?");
    let new = e.to_value.as_deref().unwrap_or("?");
    let s = |k: &str| {
        details
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    if rule.metric == AlertMetric::ModelChanged {
        return format!(
            "`{}` now answers as `{new}` (was `{old}`) on deployment `{}`, first trace {}",
            e.target,
            s("deployment"),
            s("first_trace_id")
        );
    }
    let num = |k: &str| details.get(k).and_then(|v| v.as_f64());
    let ci = details
        .get("delta_ci")
        .and_then(|v| v.as_array())
        .and_then(|a| Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?)));
    let flipped: Vec<String> = details
        .get("flipped_cases")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let size = match (num("delta"), ci) {
        (Some(d), Some((lo, hi))) => format!("{d:+.3} (95% CI {lo:+.3} to {hi:+.3})"),
        (Some(d), None) => format!("{d:+.3}"),
        _ => "changed".into(),
    };
    let cases = if flipped.is_empty() {
        String::new()
    } else {
        let head: Vec<_> = flipped.iter().take(5).cloned().collect();
        format!(
            "; {} case(s) flipped: {}{}",
            flipped.len(),
            head.join(", "),
            if flipped.len() > 5 { ", …" } else { "" }
        )
    };
    format!(
        "canary of suite `{}` on `{}` after `{old}` → `{new}`: {} {size}{cases}",
        s("suite"),
        e.target,
        s("metric")
    )
}

/// The model in scope retiring soonest (within 90 days, or retired).
fn retiring(rule: &AlertRule, now_ms: i64) -> (Measured, bool) {
    let today = day_of_ms(now_ms);
    let soonest = rule
        .lifecycle
        .iter()
        .filter(|(_, l)| l.retiring(today))
        .filter_map(|(m, l)| Some((m, l, l.days_left(today)?, l.retires?)))
        .min_by_key(|(_, _, left, _)| *left);
    match soonest {
        None => (
            Measured {
                value: None,
                detail: "no model in scope retires within 90 days".into(),
            },
            false,
        ),
        Some((model, l, left, retires)) => {
            let when = if left < 0 {
                format!("retired on {} ({} days ago)", format_date(retires), -left)
            } else {
                format!("retires on {} (in {left} days)", format_date(retires))
            };
            let next = match &l.successor {
                Some(s) => format!("; successor `{s}`: keel models check-successor {model}"),
                None => "; no successor known".into(),
            };
            (
                Measured {
                    value: Some(left as f64),
                    detail: format!("`{model}` {when}{next}"),
                },
                true,
            )
        }
    }
}

/// The stage (days) a `model_retiring` value reached: each stage is its own alert.
pub fn stage_of(days_left: f64) -> i64 {
    keel_core::lifecycle::stage_of(days_left.floor() as i64)
        .unwrap_or(keel_core::lifecycle::WARN_DAYS)
}
