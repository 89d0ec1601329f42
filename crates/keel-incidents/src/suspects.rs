//! Suspects: the changes that precede the incident's first change point (up to the end of
//! the five-minute bucket it was seen in) or its first signal, when no metric shifted,
//! ranked, each with the command that reverts it.
//!
//! **Ranking.** Each change scores `closeness + scope + kind`: closeness `1 / (1 + h)` with
//! `h` the hours between the change and the first shift; `+1` when the change names the
//! incident's scope value itself; and `+1` (or `+2`) when its kind is known to cause this
//! kind of incident — a prompt label move for a cost runaway or hallucinated facts, a
//! model version change for a model regression, a config load (guardrails) for a
//! prompt-injected agent — or to move the metric that shifted first (a label move before
//! tokens per call or spend, a version change before the online pass rate).

use keel_store::AuditEvent;
use serde::Serialize;

use crate::timeline::Timeline;

/// One ranked suspect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suspect {
    pub at_ms: i64,
    pub action: String,
    pub target: String,
    pub actor: String,
    pub from_value: Option<String>,
    pub to_value: Option<String>,
    pub score: f64,
    /// Why it ranks where it does.
    pub why: String,
    /// The command that undoes it (or the closest mitigation), when there is one.
    pub revert: Option<String>,
}

/// The suspects of an incident of `kind` on `scope`, best first.
pub fn rank(
    timeline: &Timeline,
    kind: Option<&str>,
    scope: Option<&str>,
    incident_id: i64,
    first_signal_ms: i64,
) -> Vec<Suspect> {
    let first_shift = timeline
        .metrics
        .iter()
        .flat_map(|m| m.change_points.iter())
        .min_by_key(|c| c.point.at_ms);
    // A shift is seen in its five-minute bucket: a change inside that bucket precedes it.
    let cutoff = first_shift.map_or(first_signal_ms, |c| {
        c.point.at_ms + keel_store::incident_series::BUCKET_MS
    });
    let shift_at = first_shift.map_or(first_signal_ms, |c| c.point.at_ms);
    let shifted = first_shift.map(|c| c.metric.as_str()).unwrap_or("");
    let value = scope.and_then(|s| s.split_once('=')).map(|(_, v)| v);
    let mut out: Vec<Suspect> = timeline
        .changes
        .iter()
        .filter(|e| e.at_ms <= cutoff)
        .map(|e| {
            let hours = (shift_at - e.at_ms).max(0) as f64 / 3_600_000.0;
            let mut score = 1.0 / (1.0 + hours);
            let mut why = vec![format!("{:.0} min before the first shift", hours * 60.0)];
            if value.is_some_and(|v| e.target == v || e.target.starts_with(&format!("{v}@"))) {
                score += 1.0;
                why.push("in the incident's scope".into());
            }
            let fit = kind_fit(kind, shifted, &e.action);
            if fit > 0.0 {
                score += fit;
                why.push(format!("a {} is known to cause this", e.action));
            }
            Suspect {
                at_ms: e.at_ms,
                action: e.action.clone(),
                target: e.target.clone(),
                actor: e.actor.clone(),
                from_value: e.from_value.clone(),
                to_value: e.to_value.clone(),
                score,
                why: why.join("; "),
                revert: revert(e, timeline.previous_config.get(&e.id), incident_id),
            }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.at_ms.cmp(&a.at_ms)));
    out
}

/// How well a change of `action` explains an incident of `kind` whose first shift was
/// in `metric`.
fn kind_fit(kind: Option<&str>, metric: &str, action: &str) -> f64 {
    let label = action.starts_with("prompt.label") || action == "prompt.rollback";
    let version = action == "model.version_changed";
    let split = action.starts_with("function.canary");
    let config = action == "config.load";
    let by_kind: f64 = match kind.unwrap_or("") {
        "cost-runaway" if label || split => 2.0,
        "cost-runaway" if config || version => 1.0,
        "model-regression" if version => 2.0,
        "model-regression" if split || label => 0.5,
        "hallucination" if label || split => 1.5,
        "hallucination" if version => 1.0,
        "prompt-injection" if config => 1.5,
        "prompt-injection" if label => 1.0,
        _ => 0.0,
    };
    let by_metric = match metric {
        "tokens_per_call" | "spend_usd_per_hour" if label || split => 1.0,
        "online_pass_rate" | "negative_feedback_rate" if version || label => 1.0,
        m if m.starts_with("errors.") && (config || version) => 0.5,
        _ => 0.0,
    };
    by_kind.max(by_metric)
}

/// The command that undoes `e`.
fn revert(e: &AuditEvent, previous_config: Option<&String>, incident_id: i64) -> Option<String> {
    let reason = format!("--reason \"revert: incident {incident_id}\"");
    match e.action.as_str() {
        "prompt.label" | "prompt.rollback" => {
            let (name, label) = e.target.split_once('@')?;
            match &e.from_value {
                Some(v) => Some(format!(
                    "keel prompt label {name} {} {label} {reason}",
                    v.trim_start_matches('v')
                )),
                None => Some(format!("keel prompt rollback {name} {label} {reason}")),
            }
        }
        "function.canary" => {
            let details: serde_json::Value = e
                .details_json
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            let variant = details.get("variant").and_then(|v| v.as_str())?;
            Some(format!(
                "keel function canary {} {variant} --percent 0 {reason}",
                e.target
            ))
        }
        "config.load" => {
            Some(match previous_config {
                Some(h) => format!("redeploy the previous config of {} (sha256 {h})", e.target),
                None => format!("redeploy the config {} had before this load", e.target),
            })
        }
        "model.version_changed" => Some(format!(
            "keel switch off --model {} {reason}  (or pin a dated snapshot in its upstream_model; it answered as {} before)",
            e.target,
            e.from_value.as_deref().unwrap_or("?")
        )),
        "key.create" | "key.rotate" => Some(format!("keel keys revoke {} {reason}", e.target)),
        _ => None,
    }
}
