//! Alerts: what fired, de-duplicated, enriched with what changed recently, recorded and
//! delivered.
//!
//! Everything that alerts — rule evaluation ([`rules`]), budget thresholds and spend
//! spikes (the governor), an unreachable limits backend — sends an [`AlertNotice`] to
//! one [`AlertSink`]: a bounded channel (a full channel drops the notice, counts it and
//! logs). The dispatcher task behind it, off the request path:
//! 1. de-duplicates by `dedupe_key` against the store: a `firing` notice for a key that
//!    is already firing is dropped (unless the rule's `repeat` has passed); a `resolved`
//!    notice for a key that is not firing is dropped;
//! 2. adds the recent changes from the audit log (prompt pushes and label moves, key
//!    changes, config loads) so the alert says what might have caused it;
//! 3. delivers to each destination — a webhook gets Slack-compatible JSON (`text`, plus
//!    the structured `keel` object), `log` writes a warning — with a 5 s timeout and one
//!    retry;
//! 4. records the event in `alert_events`, with each destination's outcome.

pub mod deliver;
pub mod model_events;
pub mod pagerduty;
pub mod quality;
pub mod rules;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_core::config::alerting::Destination;
use keel_store::alerts::{last_alert_event, record_alert_event, NewAlertEvent};
use keel_store::{list_audit, AuditEvent, Store};
use serde_json::json;
use tokio::sync::mpsc;

/// How many notices may wait for the dispatcher.
pub const QUEUE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Firing,
    Resolved,
    /// `keel alerts test`: always delivered, never changes what is firing.
    Test,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::Test => "test",
        }
    }
}

/// Something to alert about.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertNotice {
    /// `rule`, `budget`, `spike`, `backend` or `test`.
    pub source: &'static str,
    pub name: String,
    pub scope: String,
    pub state: AlertState,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    pub dedupe_key: String,
    pub to: Vec<String>,
    /// Send again while still firing after this long.
    pub repeat: Option<Duration>,
    pub at_ms: i64,
    /// A rule with `open_incident = true`: a firing opens an incident (or attaches to
    /// the rule's open one).
    pub incident: Option<keel_core::config::alerting::IncidentOnFire>,
}

/// Where notices are sent. Cloning is cheap.
#[derive(Clone)]
pub struct AlertSink {
    tx: mpsc::Sender<AlertNotice>,
    dropped: Arc<AtomicU64>,
}

impl AlertSink {
    /// Queue a notice; never waits. A full queue drops it, counted and logged.
    pub fn send(&self, n: AlertNotice) {
        if let Err(e) = self.tx.try_send(n) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "alert queue full; an alert was dropped");
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What was delivered for one notice (also the return of [`dispatch_one`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Dispatched {
    /// Recorded as event `id`; destination → "ok" or the error.
    Sent {
        id: i64,
        delivered: BTreeMap<String, String>,
    },
    /// Already firing (or nothing to resolve).
    Deduplicated,
}

/// The dispatcher's fixed parts.
pub struct Dispatcher {
    store: Arc<Store>,
    destinations: BTreeMap<String, Destination>,
    client: reqwest::Client,
}

impl Dispatcher {
    pub fn new(store: Arc<Store>, destinations: BTreeMap<String, Destination>) -> Dispatcher {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Dispatcher {
            store,
            destinations,
            client,
        }
    }

    /// Start the dispatcher task; it ends when every sink is dropped.
    pub fn start(self) -> (AlertSink, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<AlertNotice>(QUEUE);
        let task = tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                if let Err(e) = self.dispatch_one(n).await {
                    tracing::warn!(error = %e, "cannot record an alert");
                }
            }
        });
        (
            AlertSink {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            task,
        )
    }

    /// De-duplicate, enrich, deliver and record one notice.
    pub async fn dispatch_one(&self, n: AlertNotice) -> Result<Dispatched, String> {
        let store = self.store.clone();
        let key = n.dedupe_key.clone();
        let (last, changes) = tokio::task::spawn_blocking(move || {
            let conn = store.conn().map_err(|e| e.to_string())?;
            let last = last_alert_event(&conn, &key).map_err(|e| e.to_string())?;
            let since = keel_store::prompts::now_ms() - 24 * 3_600_000;
            let changes = list_audit(&conn, since, 5).map_err(|e| e.to_string())?;
            Ok::<_, String>((last, changes))
        })
        .await
        .map_err(|e| e.to_string())??;
        let firing = last.as_ref().is_some_and(|e| e.state == "firing");
        match n.state {
            AlertState::Firing if firing => {
                let due = match (n.repeat, &last) {
                    (Some(r), Some(l)) => {
                        n.at_ms - l.at_ms >= i64::try_from(r.as_millis()).unwrap_or(i64::MAX)
                    }
                    _ => false,
                };
                if !due {
                    return Ok(Dispatched::Deduplicated);
                }
            }
            AlertState::Resolved if !firing => return Ok(Dispatched::Deduplicated),
            _ => {}
        }
        let changes = relevant_changes(&n, &changes);
        let incident = match (&n.incident, n.state) {
            (Some(spec), AlertState::Firing) => self.open_incident(&n, spec.kind.clone()).await,
            _ => None,
        };
        let mut text = deliver::text(&n, &changes);
        if let Some((id, opened)) = incident {
            text.push_str(&format!(
                "\n{} incident {id}: `keel incident show {id}` or {}",
                if opened { "Opened" } else { "Attached to" },
                incident_path(id)
            ));
        }
        let payload = json!({
            "text": text,
            "keel": {
                "source": n.source, "name": n.name, "scope": n.scope, "state": n.state.as_str(),
                "value": n.value, "threshold": n.threshold, "message": n.message,
                "at_ms": n.at_ms, "recent_changes": changes.iter().map(deliver::change_json).collect::<Vec<_>>(),
                "incident": incident.map(|(id, opened)| json!({"id": id, "opened": opened, "url": incident_path(id)})),
            }
        });
        let mut delivered = BTreeMap::new();
        for to in &n.to {
            let outcome = match self.destinations.get(to) {
                Some(Destination::Log) => {
                    tracing::warn!(alert = %n.name, scope = %n.scope, state = n.state.as_str(), "{text}");
                    "ok".to_string()
                }
                Some(Destination::Webhook { url }) => {
                    match deliver::webhook(&self.client, url, &payload).await {
                        Ok(()) => "ok".to_string(),
                        Err(e) => {
                            tracing::warn!(destination = %to, error = %e, "alert webhook failed");
                            e
                        }
                    }
                }
                Some(Destination::PagerDuty {
                    url,
                    routing_key_env,
                    severity,
                }) => match std::env::var(routing_key_env)
                    .ok()
                    .filter(|k| !k.is_empty())
                {
                    Some(key) => {
                        let event = pagerduty::event(&n, &text, &key, severity, incident);
                        match pagerduty::send(&self.client, url, &event).await {
                            Ok(()) => "ok".to_string(),
                            Err(e) => {
                                tracing::warn!(destination = %to, error = %e, "PagerDuty alert failed");
                                e
                            }
                        }
                    }
                    None => {
                        let e = format!("the routing key variable {routing_key_env} is not set");
                        tracing::warn!(destination = %to, "{e}");
                        e
                    }
                },
                None => format!("destination `{to}` is not configured"),
            };
            delivered.insert(to.clone(), outcome);
        }
        let event = NewAlertEvent {
            at_ms: n.at_ms,
            source: n.source.to_string(),
            name: n.name.clone(),
            scope: n.scope.clone(),
            state: n.state.as_str().to_string(),
            value: n.value,
            threshold: n.threshold,
            message: text,
            dedupe_key: n.dedupe_key.clone(),
            delivered: Some(json!(delivered)),
        };
        let store = self.store.clone();
        let id = tokio::task::spawn_blocking(move || {
            let conn = store.conn().map_err(|e| e.to_string())?;
            record_alert_event(&conn, &event).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(Dispatched::Sent { id, delivered })
    }
}

impl Dispatcher {
    /// Open the incident of a firing rule with `open_incident = true`, or attach the
    /// firing to the rule's open one: `(id, opened)`; `None` (logged) when the store
    /// cannot.
    async fn open_incident(&self, n: &AlertNotice, kind: Option<String>) -> Option<(i64, bool)> {
        let store = self.store.clone();
        let (name, message, at_ms) = (n.name.clone(), n.message.clone(), n.at_ms);
        let scope = incident_scope(&n.scope);
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = store.conn().map_err(|e| e.to_string())?;
            let title = format!("alert `{name}` fired");
            keel_store::incidents::open_or_attach(
                &mut conn,
                &keel_store::incidents::NewIncident {
                    title: &title,
                    kind: kind.as_deref(),
                    scope: scope.as_deref(),
                    actor: "keel",
                    at_ms,
                    first_signal_ms: Some(at_ms),
                    alert_rule: Some(&name),
                    severity: None,
                },
                &message,
            )
            .map_err(|e| e.to_string())
        })
        .await;
        match result {
            Ok(Ok(r)) => {
                tracing::warn!(alert = %n.name, incident = r.0, opened = r.1, "alert rule opened (or added to) an incident");
                Some(r)
            }
            Ok(Err(e)) => {
                tracing::warn!(alert = %n.name, error = %e, "cannot open the alert's incident");
                None
            }
            Err(e) => {
                tracing::warn!(alert = %n.name, error = %e, "cannot open the alert's incident");
                None
            }
        }
    }
}

/// The dashboard path of incident `id`.
pub fn incident_path(id: i64) -> String {
    format!("/ui/incidents/{id}")
}

/// An alert's scope as an incident's: the first `kind=value` of a kind incidents follow
/// (`function=F,variant=V` → `function=F`); `None` (global) otherwise.
fn incident_scope(scope: &str) -> Option<String> {
    scope
        .split(',')
        .find(|p| {
            p.split_once('=')
                .is_some_and(|(k, _)| matches!(k, "function" | "feature" | "tenant" | "model"))
        })
        .map(str::to_string)
}

/// The audit events worth showing with an alert: everything for a global alert; for a
/// scoped one, changes whose target or details mention one of the scope's values, and every
/// prompt label move and config load (those change what every scope serves).
fn relevant_changes(n: &AlertNotice, all: &[AuditEvent]) -> Vec<AuditEvent> {
    // A quality rule's scope may name several values: `function=F,variant=V`.
    let values: Vec<&str> = n
        .scope
        .split(',')
        .filter_map(|p| p.split_once('=').map(|(_, v)| v))
        .collect();
    all.iter()
        .filter(|e| {
            values.is_empty()
                || e.action.starts_with("prompt.label")
                || e.action == "prompt.rollback"
                || e.action == "config.load"
                || values.iter().any(|v| {
                    e.target == *v || e.details_json.as_deref().is_some_and(|d| d.contains(v))
                })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model_events_tests;

#[cfg(test)]
mod pagerduty_tests;
