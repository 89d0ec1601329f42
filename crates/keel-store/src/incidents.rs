//! Incidents (migration 0025): a scope and a time window with its events — opened by
//! hand (`keel incident open`) or by an alert rule with `open_incident = true` — notes,
//! alerts attached, actions, and the close with its summary. An alert rule that fires
//! again while its incident is open is attached to it rather than opening another. Every
//! change is audited in the same transaction (`incident.open`, `incident.note`,
//! `incident.alert`, `incident.close`; target `incident-ID`).

use serde::Serialize;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;
use crate::sql::{Db, Row};
use crate::values;

/// One incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    pub id: i64,
    pub title: String,
    /// A playbook kind (`cost-runaway`, …), when known.
    pub kind: Option<String>,
    /// `function=F`, `feature=X`, `tenant=T` or `model=M`; `None`: global.
    pub scope: Option<String>,
    /// `sev1` (worst) to `sev4`.
    pub severity: String,
    /// `open` or `closed`.
    pub status: String,
    pub opened_at_ms: i64,
    pub opened_by: String,
    /// The first signal (the first alert, or the opening): the timeline starts an hour
    /// before it.
    pub first_signal_ms: i64,
    /// The alert rule that opened it, when one did.
    pub alert_rule: Option<String>,
    pub closed_at_ms: Option<i64>,
    pub closed_by: Option<String>,
    pub summary: Option<String>,
}

/// One event of an incident, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentEvent {
    pub id: i64,
    pub at_ms: i64,
    /// `opened`, `note`, `alert`, `action` or `closed`.
    pub kind: String,
    pub actor: String,
    pub text: String,
}

/// What opens an incident.
#[derive(Debug, Clone, Default)]
pub struct NewIncident<'a> {
    pub title: &'a str,
    pub kind: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub actor: &'a str,
    pub at_ms: i64,
    /// Defaults to `at_ms`.
    pub first_signal_ms: Option<i64>,
    pub alert_rule: Option<&'a str>,
    /// Default `sev2`.
    pub severity: Option<&'a str>,
}

/// The lock incident writes take turns at on PostgreSQL (see `Db::exclusive`).
const LOCK: &str = "incidents";

fn audit(
    db: Db<'_>,
    at_ms: i64,
    actor: &str,
    action: &str,
    id: i64,
    text: &str,
    details: Option<serde_json::Value>,
) -> Result<i64, StoreError> {
    record_audit(
        db,
        at_ms,
        &NewAuditEvent {
            actor,
            action,
            target: &format!("incident-{id}"),
            from_value: None,
            to_value: None,
            reason: Some(text),
            details,
        },
    )
}

fn add_event(
    db: Db<'_>,
    id: i64,
    at_ms: i64,
    kind: &str,
    actor: &str,
    text: &str,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO incident_events (incident_id, at_ms, kind, actor, text) VALUES (?1, ?2, ?3, ?4, ?5)",
        &values![id, at_ms, kind, actor, text],
    )?;
    Ok(())
}

fn insert(db: Db<'_>, n: &NewIncident<'_>) -> Result<i64, StoreError> {
    let id: i64 = db.query_row(
        "INSERT INTO incidents (title, kind, scope, status, opened_at_ms, opened_by, first_signal_ms, alert_rule, severity)
         VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?8) RETURNING id",
        &values![
            n.title,
            n.kind,
            n.scope,
            n.at_ms,
            n.actor,
            n.first_signal_ms.unwrap_or(n.at_ms),
            n.alert_rule,
            n.severity.unwrap_or(DEFAULT_SEVERITY)
        ],
        |r| r.get(0),
    )?;
    add_event(db, id, n.at_ms, "opened", n.actor, n.title)?;
    audit(
        db,
        n.at_ms,
        n.actor,
        "incident.open",
        id,
        n.title,
        Some(serde_json::json!({"kind": n.kind, "scope": n.scope, "alert_rule": n.alert_rule})),
    )?;
    Ok(id)
}

/// Open an incident; its id.
pub fn open<'c>(db: impl Into<Db<'c>>, n: &NewIncident<'_>) -> Result<i64, StoreError> {
    db.into().exclusive_for(LOCK, |tx| insert(tx, n))
}

/// An alert rule fired: attach it to the rule's open incident, or open one. `(id, opened)`.
/// Incident writes take turns (one lock for them all, as SQLite's write lock): replicas
/// handling the same rule at once open one incident, and never attach to one being
/// closed.
pub fn open_or_attach<'c>(
    db: impl Into<Db<'c>>,
    n: &NewIncident<'_>,
    alert_text: &str,
) -> Result<(i64, bool), StoreError> {
    db.into().exclusive_for(LOCK, |tx| {
        let existing: Option<i64> = match n.alert_rule {
            Some(rule) => tx.query_opt(
                "SELECT id FROM incidents WHERE status = 'open' AND alert_rule = ?1 ORDER BY id DESC LIMIT 1",
                &values![rule],
                |r| r.get(0),
            )?,
            None => None,
        };
        let (id, opened) = match existing {
            Some(id) => (id, false),
            None => (insert(tx, n)?, true),
        };
        add_event(tx, id, n.at_ms, "alert", n.actor, alert_text)?;
        if !opened {
            audit(tx, n.at_ms, n.actor, "incident.alert", id, alert_text, None)?;
        }
        Ok((id, opened))
    })
}

/// Add a note (or an action taken) to an open or closed incident.
pub fn note<'c>(
    db: impl Into<Db<'c>>,
    id: i64,
    kind: &str,
    actor: &str,
    text: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    db.into().exclusive_for(LOCK, |tx| {
        if get_in(tx, id)?.is_none() {
            return Err(StoreError::NotFound(format!("incident {id}")));
        }
        add_event(tx, id, at_ms, kind, actor, text)?;
        audit(tx, at_ms, actor, "incident.note", id, text, None)?;
        Ok(())
    })
}

/// Close an incident with its summary; `false` when it was already closed.
pub fn close<'c>(
    db: impl Into<Db<'c>>,
    id: i64,
    actor: &str,
    summary: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    db.into().exclusive_for(LOCK, |tx| {
        if get_in(tx, id)?.is_none() {
            return Err(StoreError::NotFound(format!("incident {id}")));
        }
        // Conditional, so of two closing at once only one closes (and records it).
        let closed = tx.execute(
            "UPDATE incidents SET status = 'closed', closed_at_ms = ?2, closed_by = ?3, summary = ?4
              WHERE id = ?1 AND status <> 'closed'",
            &values![id, at_ms, actor, summary],
        )?;
        if closed == 0 {
            return Ok(false);
        }
        add_event(tx, id, at_ms, "closed", actor, summary)?;
        audit(tx, at_ms, actor, "incident.close", id, summary, None)?;
        Ok(true)
    })
}

const COLUMNS: &str = "id, title, kind, scope, status, opened_at_ms, opened_by, first_signal_ms, alert_rule, closed_at_ms, closed_by, summary, severity";

/// An incident's severity when none is given.
pub const DEFAULT_SEVERITY: &str = "sev2";
/// The severities, worst first.
pub const SEVERITIES: [&str; 4] = ["sev1", "sev2", "sev3", "sev4"];

fn row(r: &Row<'_>) -> Result<Incident, StoreError> {
    Ok(Incident {
        id: r.get(0)?,
        title: r.get(1)?,
        kind: r.get(2)?,
        scope: r.get(3)?,
        status: r.get(4)?,
        opened_at_ms: r.get(5)?,
        opened_by: r.get(6)?,
        first_signal_ms: r.get(7)?,
        alert_rule: r.get(8)?,
        closed_at_ms: r.get(9)?,
        closed_by: r.get(10)?,
        summary: r.get(11)?,
        severity: r.get(12)?,
    })
}

fn get_in(db: Db<'_>, id: i64) -> Result<Option<Incident>, StoreError> {
    db.query_opt(
        &format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"),
        &values![id],
        row,
    )
}

/// One incident and its events, oldest first.
pub fn get<'c>(
    db: impl Into<Db<'c>>,
    id: i64,
) -> Result<Option<(Incident, Vec<IncidentEvent>)>, StoreError> {
    let db = db.into();
    let Some(inc) = get_in(db, id)? else {
        return Ok(None);
    };
    let events = db.query(
        "SELECT id, at_ms, kind, actor, text FROM incident_events WHERE incident_id = ?1 ORDER BY at_ms, id",
        &values![id],
        |r| {
            Ok(IncidentEvent {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                kind: r.get(2)?,
                actor: r.get(3)?,
                text: r.get(4)?,
            })
        },
    )?;
    Ok(Some((inc, events)))
}

/// Incidents, newest first: open ones only unless `all`.
pub fn list<'c>(
    db: impl Into<Db<'c>>,
    all: bool,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.into().query(
        &format!(
            "SELECT {COLUMNS} FROM incidents WHERE ?1 = 1 OR status = 'open' ORDER BY id DESC LIMIT ?2"
        ),
        &values![all, limit],
        row,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every audit entry, oldest first: (action, actor, target).
    fn audit_log(db: Db<'_>) -> Vec<(String, String, String)> {
        db.query(
            "SELECT action, actor, target FROM audit_events ORDER BY id",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    #[test]
    fn an_incident_opens_takes_notes_and_closes_audited() {
        for (backend, store, _db) in crate::testing::stores() {
            let c = store.conn().unwrap();
            let id = open(
                &c,
                &NewIncident {
                    title: "answers are wrong",
                    kind: Some("hallucination"),
                    scope: Some("function=support"),
                    actor: "ana",
                    at_ms: 1_000,
                    ..NewIncident::default()
                },
            )
            .unwrap();
            note(&c, id, "note", "bo", "looking at v7", 2_000).unwrap();
            assert!(close(&c, id, "ana", "rolled back v7", 3_000).unwrap());
            assert!(!close(&c, id, "ana", "again", 4_000).unwrap());
            let (inc, events) = get(&c, id).unwrap().unwrap();
            assert_eq!(inc.status, "closed", "{backend}");
            assert_eq!(inc.severity, "sev2", "{backend}");
            assert_eq!(inc.summary.as_deref(), Some("rolled back v7"));
            assert_eq!(inc.closed_at_ms, Some(3_000));
            let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(kinds, ["opened", "note", "closed"], "{backend}");
            let target = format!("incident-{id}");
            assert_eq!(
                audit_log(c.db()),
                [
                    (
                        "incident.open".to_string(),
                        "ana".to_string(),
                        target.clone()
                    ),
                    ("incident.note".into(), "bo".into(), target.clone()),
                    ("incident.close".into(), "ana".into(), target),
                ],
                "{backend}"
            );
            assert!(matches!(
                note(&c, 99, "note", "x", "y", 1),
                Err(StoreError::NotFound(_))
            ));
            assert!(matches!(
                close(&c, 99, "x", "y", 1),
                Err(StoreError::NotFound(_))
            ));
            assert!(get(&c, 99).unwrap().is_none());
            assert!(list(&c, false, 10).unwrap().is_empty(), "{backend}");
            assert_eq!(list(&c, true, 10).unwrap().len(), 1, "{backend}");
        }
    }

    #[test]
    fn a_rule_firing_again_attaches_to_its_open_incident() {
        for (backend, store, _db) in crate::testing::stores() {
            let c = store.conn().unwrap();
            let n = NewIncident {
                title: "cost runaway",
                kind: Some("cost-runaway"),
                scope: Some("feature=chat"),
                actor: "keel",
                at_ms: 1_000,
                alert_rule: Some("chat-spend"),
                ..NewIncident::default()
            };
            let (a, opened) = open_or_attach(&c, &n, "spend 3x").unwrap();
            assert!(opened, "{backend}");
            let (b, opened) = open_or_attach(
                &c,
                &NewIncident {
                    at_ms: 2_000,
                    ..n.clone()
                },
                "again",
            )
            .unwrap();
            assert_eq!((a, opened), (b, false), "{backend}");
            close(&c, a, "ana", "capped", 3_000).unwrap();
            let (d, opened) =
                open_or_attach(&c, &NewIncident { at_ms: 4_000, ..n }, "back").unwrap();
            assert!(
                opened && d != a,
                "{backend}: a closed incident is not reopened"
            );
            let (_, events) = get(&c, a).unwrap().unwrap();
            assert_eq!(events.iter().filter(|e| e.kind == "alert").count(), 2);
            assert_eq!(
                list(&c, true, 10)
                    .unwrap()
                    .iter()
                    .map(|i| i.id)
                    .collect::<Vec<_>>(),
                [d, a],
                "{backend}: newest first"
            );
        }
    }

    #[test]
    fn replicas_firing_one_rule_at_once_open_one_incident() {
        for (backend, store, _db) in crate::testing::stores() {
            let n = NewIncident {
                title: "errors",
                actor: "keel",
                at_ms: 1_000,
                alert_rule: Some("errors"),
                ..NewIncident::default()
            };
            let got = crate::alerts::tests::race(backend, 4, |_| {
                let c = store.conn().unwrap();
                open_or_attach(&c, &n, "fired").unwrap()
            });
            assert_eq!(
                got.iter().filter(|(_, opened)| *opened).count(),
                1,
                "{backend}"
            );
            let c = store.conn().unwrap();
            assert_eq!(list(&c, true, 10).unwrap().len(), 1, "{backend}");
            let closed = crate::alerts::tests::race(backend, 3, |_| {
                let c = store.conn().unwrap();
                close(&c, got[0].0, "ana", "done", 2_000).unwrap()
            });
            assert_eq!(closed.iter().filter(|c| **c).count(), 1, "{backend}");
        }
    }
}
