//! An incident's timeline: for its scope and window — from an hour before the first
//! signal until now, or until it closed — alert events, audit changes (prompt pushes and
//! label moves, config loads, split moves, key and budget changes, model version changes),
//! the change points of the scope's metrics, and the incident's own events (opened, notes,
//! alerts attached, actions, closed), in time order.
//!
//! A change belongs to a scoped incident when it names the scope's value (target or
//! details), or changes what every scope serves (a config load), is a mitigation (a kill
//! switch, a budget freeze: always shown), or touches what the
//! scope runs on: for `function=F` the prompts and models of F's variants; for
//! `model=M` the functions and prompts of the variants served on M.

use keel_core::config::Config;
use keel_store::incidents::{Incident, IncidentEvent};
use keel_store::AuditEvent;
use serde::Serialize;

use crate::series::{metrics, MetricSeries};

/// The window starts this long before the first signal.
pub const LEAD_MS: i64 = 3_600_000;
/// Most alert and audit events read for a window.
const MAX_EVENTS: usize = 5_000;

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub at_ms: i64,
    /// `alert`, `change`, `action`, `change_point`, or the incident's own `opened`,
    /// `note`, `closed`.
    pub kind: String,
    pub title: String,
    pub detail: String,
    pub actor: Option<String>,
    /// Traces to open (change points: from the bucket after the change).
    pub traces: Vec<String>,
    /// The audit event, for changes and actions.
    pub audit_id: Option<i64>,
}

/// The timeline of one incident.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub since_ms: i64,
    pub until_ms: i64,
    pub entries: Vec<Entry>,
    /// The scope's metrics over the window (what the page charts).
    pub metrics: Vec<MetricSeries>,
    /// The audit changes in the window, for [`crate::suspects`].
    #[serde(skip)]
    pub changes: Vec<AuditEvent>,
    /// For each config load in `changes` (by audit id), the hash loaded before it.
    #[serde(skip)]
    pub previous_config: std::collections::HashMap<i64, String>,
}

/// The window of `incident` at `now_ms`.
pub fn window(incident: &Incident, now_ms: i64) -> (i64, i64) {
    let since = incident.first_signal_ms.min(incident.opened_at_ms) - LEAD_MS;
    (
        since,
        incident.closed_at_ms.unwrap_or(now_ms).max(since + 1),
    )
}

/// Audit actions that are mitigations (shown as actions, never suspects).
pub fn is_action(action: &str) -> bool {
    action.starts_with("switch.")
        || action.starts_with("budget.freeze")
        || action.starts_with("budget.unfreeze")
}

/// Whether audit event `e` belongs to an incident on `scope`.
pub fn relevant(config: &Config, scope: Option<&str>, e: &AuditEvent) -> bool {
    if e.action.starts_with("incident.") {
        return false;
    }
    let Some((kind, value)) = scope.and_then(|s| s.split_once('=')) else {
        return true;
    };
    let mentions = |v: &str| {
        e.target == v
            || e.target.starts_with(&format!("{v}@"))
            || e.target.ends_with(&format!("={v}"))
            || e.details_json
                .as_deref()
                .is_some_and(|d| d.contains(&format!("\"{v}\"")))
    };
    // Mitigations (switches, freezes) are few and the on-call's own: always shown.
    if mentions(value)
        || e.action == "config.load"
        || e.action.starts_with("budget.")
        || is_action(&e.action)
    {
        return true;
    }
    match kind {
        "function" => config.functions.get(value).is_some_and(|f| {
            f.variants
                .iter()
                .any(|v| mentions(&v.prompt) || mentions(&v.model))
        }),
        // The functions and prompts served on the model.
        "model" => config.functions.values().any(|f| {
            f.variants
                .iter()
                .any(|v| v.model == value && (mentions(&f.name) || mentions(&v.prompt)))
        }),
        // A feature or tenant calls every function and model: what they serve counts.
        _ => {
            e.action.starts_with("prompt.")
                || e.action.starts_with("function.")
                || e.action == "model.version_changed"
        }
    }
}

fn alert_relevant(incident: &Incident, scope: &str, name: &str) -> bool {
    incident.scope.is_none()
        || incident.alert_rule.as_deref() == Some(name)
        || incident.scope.as_deref() == Some(scope)
        || scope == "global"
        || incident
            .scope
            .as_deref()
            .and_then(|s| s.split_once('='))
            .is_some_and(|(_, v)| scope.split(',').any(|p| p.ends_with(&format!("={v}"))))
}

/// Build the timeline of `incident` (with its `events`) at `now_ms`.
pub fn build(
    conn: keel_store::sql::Db<'_>,
    config: &Config,
    incident: &Incident,
    events: &[IncidentEvent],
    now_ms: i64,
) -> rusqlite::Result<Timeline> {
    let (since, until) = window(incident, now_ms);
    let scope = incident.scope.as_deref();
    let mut entries = Vec::new();
    for a in keel_store::alerts::list_alert_events(conn, since, MAX_EVENTS)
        .map_err(crate::series::sql)?
    {
        if a.at_ms >= until || a.state == "test" || !alert_relevant(incident, &a.scope, &a.name) {
            continue;
        }
        entries.push(Entry {
            at_ms: a.at_ms,
            kind: "alert".into(),
            title: format!("alert `{}` {} ({})", a.name, a.state, a.scope),
            detail: a.message,
            actor: None,
            traces: Vec::new(),
            audit_id: None,
        });
    }
    let mut changes = Vec::new();
    for e in keel_store::list_audit(conn, since, MAX_EVENTS)? {
        if e.at_ms >= until || !relevant(config, scope, &e) {
            continue;
        }
        let action = is_action(&e.action);
        entries.push(Entry {
            at_ms: e.at_ms,
            kind: if action { "action" } else { "change" }.into(),
            title: format!("{} {}", e.action, e.target),
            detail: describe_change(&e),
            actor: Some(e.actor.clone()),
            traces: Vec::new(),
            audit_id: Some(e.id),
        });
        if !action {
            changes.push(e);
        }
    }
    let mut previous_config = std::collections::HashMap::new();
    for e in changes.iter().filter(|e| e.action == "config.load") {
        if let Some(h) = keel_store::audit::value_before(conn, &e.action, &e.target, e.id)? {
            previous_config.insert(e.id, h);
        }
    }
    let metrics = metrics(conn, scope, since, until)?;
    for m in &metrics {
        for c in &m.change_points {
            entries.push(Entry {
                at_ms: c.point.at_ms,
                kind: "change_point".into(),
                title: format!(
                    "{} shifted: {} → {}",
                    m.metric,
                    fmt(c.point.before),
                    fmt(c.point.after)
                ),
                detail: format!(
                    "statistic {:.1} over threshold {:.1} (five-minute buckets)",
                    c.point.statistic.min(999.0),
                    c.point.threshold
                ),
                actor: None,
                traces: c.example_traces.clone(),
                audit_id: None,
            });
        }
    }
    for ev in events {
        entries.push(Entry {
            at_ms: ev.at_ms,
            kind: ev.kind.clone(),
            title: match ev.kind.as_str() {
                "opened" => "incident opened".into(),
                "closed" => "incident closed".into(),
                "alert" => "alert attached".into(),
                k => k.to_string(),
            },
            detail: ev.text.clone(),
            actor: Some(ev.actor.clone()),
            traces: Vec::new(),
            audit_id: None,
        });
    }
    entries.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.kind.cmp(&b.kind)));
    changes.sort_by_key(|e| e.at_ms);
    Ok(Timeline {
        since_ms: since,
        until_ms: until,
        entries,
        metrics,
        changes,
        previous_config,
    })
}

/// A number as a person reads it: 3 significant figures.
pub fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn describe_change(e: &AuditEvent) -> String {
    let mut parts = Vec::new();
    match (&e.from_value, &e.to_value) {
        (Some(f), Some(t)) => parts.push(format!("{f} → {t}")),
        (None, Some(t)) => parts.push(format!("→ {t}")),
        (Some(f), None) => parts.push(format!("{f} →")),
        (None, None) => {}
    }
    if let Some(r) = &e.reason {
        parts.push(format!("\"{r}\""));
    }
    parts.join(" ")
}
