//! Incidents (migration 0025): a scope and a time window with its events — opened by
//! hand (`keel incident open`) or by an alert rule with `open_incident = true` — notes,
//! alerts attached, actions, and the close with its summary. An alert rule that fires
//! again while its incident is open is attached to it rather than opening another. Every
//! change is audited in the same transaction (`incident.open`, `incident.note`,
//! `incident.alert`, `incident.close`; target `incident-ID`).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;

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

fn audit(
    conn: &Connection,
    at_ms: i64,
    actor: &str,
    action: &str,
    id: i64,
    text: &str,
    details: Option<serde_json::Value>,
) -> rusqlite::Result<i64> {
    record_audit(
        conn,
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
    .map_err(crate::error::into_sqlite)
}

fn add_event(
    conn: &Connection,
    id: i64,
    at_ms: i64,
    kind: &str,
    actor: &str,
    text: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO incident_events (incident_id, at_ms, kind, actor, text) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, at_ms, kind, actor, text],
    )?;
    Ok(())
}

fn insert(conn: &Connection, n: &NewIncident<'_>) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO incidents (title, kind, scope, status, opened_at_ms, opened_by, first_signal_ms, alert_rule, severity)
         VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?8)",
        params![
            n.title,
            n.kind,
            n.scope,
            n.at_ms,
            n.actor,
            n.first_signal_ms.unwrap_or(n.at_ms),
            n.alert_rule,
            n.severity.unwrap_or(DEFAULT_SEVERITY)
        ],
    )?;
    let id = conn.last_insert_rowid();
    add_event(conn, id, n.at_ms, "opened", n.actor, n.title)?;
    audit(
        conn,
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
pub fn open(conn: &mut Connection, n: &NewIncident<'_>) -> Result<i64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = insert(&tx, n)?;
    tx.commit()?;
    Ok(id)
}

/// An alert rule fired: attach it to the rule's open incident, or open one. `(id, opened)`.
pub fn open_or_attach(
    conn: &mut Connection,
    n: &NewIncident<'_>,
    alert_text: &str,
) -> Result<(i64, bool), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<i64> = match n.alert_rule {
        Some(rule) => tx
            .query_row(
                "SELECT id FROM incidents WHERE status = 'open' AND alert_rule = ?1 ORDER BY id DESC LIMIT 1",
                params![rule],
                |r| r.get(0),
            )
            .optional()?,
        None => None,
    };
    let (id, opened) = match existing {
        Some(id) => (id, false),
        None => (insert(&tx, n)?, true),
    };
    add_event(&tx, id, n.at_ms, "alert", n.actor, alert_text)?;
    if !opened {
        audit(
            &tx,
            n.at_ms,
            n.actor,
            "incident.alert",
            id,
            alert_text,
            None,
        )?;
    }
    tx.commit()?;
    Ok((id, opened))
}

/// Add a note (or an action taken) to an open or closed incident.
pub fn note(
    conn: &mut Connection,
    id: i64,
    kind: &str,
    actor: &str,
    text: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if get_in(&tx, id)?.is_none() {
        return Err(StoreError::NotFound(format!("incident {id}")));
    }
    add_event(&tx, id, at_ms, kind, actor, text)?;
    audit(&tx, at_ms, actor, "incident.note", id, text, None)?;
    tx.commit()?;
    Ok(())
}

/// Close an incident with its summary; `false` when it was already closed.
pub fn close(
    conn: &mut Connection,
    id: i64,
    actor: &str,
    summary: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(inc) = get_in(&tx, id)? else {
        return Err(StoreError::NotFound(format!("incident {id}")));
    };
    if inc.status == "closed" {
        return Ok(false);
    }
    tx.execute(
        "UPDATE incidents SET status = 'closed', closed_at_ms = ?2, closed_by = ?3, summary = ?4 WHERE id = ?1",
        params![id, at_ms, actor, summary],
    )?;
    add_event(&tx, id, at_ms, "closed", actor, summary)?;
    audit(&tx, at_ms, actor, "incident.close", id, summary, None)?;
    tx.commit()?;
    Ok(true)
}

const COLUMNS: &str = "id, title, kind, scope, status, opened_at_ms, opened_by, first_signal_ms, alert_rule, closed_at_ms, closed_by, summary, severity";

/// An incident's severity when none is given.
pub const DEFAULT_SEVERITY: &str = "sev2";
/// The severities, worst first.
pub const SEVERITIES: [&str; 4] = ["sev1", "sev2", "sev3", "sev4"];

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
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

fn get_in(conn: &Connection, id: i64) -> rusqlite::Result<Option<Incident>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"),
        params![id],
        row,
    )
    .optional()
}

/// One incident and its events, oldest first.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<(Incident, Vec<IncidentEvent>)>> {
    let Some(inc) = get_in(conn, id)? else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT id, at_ms, kind, actor, text FROM incident_events WHERE incident_id = ?1 ORDER BY at_ms, id",
    )?;
    let events = stmt
        .query_map(params![id], |r| {
            Ok(IncidentEvent {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                kind: r.get(2)?,
                actor: r.get(3)?,
                text: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some((inc, events)))
}

/// Incidents, newest first: open ones only unless `all`.
pub fn list(conn: &Connection, all: bool, limit: usize) -> rusqlite::Result<Vec<Incident>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM incidents WHERE ?1 OR status = 'open' ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![all, limit], row)?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_conn as conn;

    #[test]
    fn an_incident_opens_takes_notes_and_closes_audited() {
        let (_d, mut c) = conn();
        let id = open(
            &mut c,
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
        note(&mut c, id, "note", "bo", "looking at v7", 2_000).unwrap();
        assert!(close(&mut c, id, "ana", "rolled back v7", 3_000).unwrap());
        assert!(!close(&mut c, id, "ana", "again", 4_000).unwrap());
        let (inc, events) = get(&c, id).unwrap().unwrap();
        assert_eq!(inc.status, "closed");
        assert_eq!(inc.summary.as_deref(), Some("rolled back v7"));
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["opened", "note", "closed"]);
        let audit: Vec<_> = crate::list_audit(&c, 0, 0)
            .unwrap()
            .into_iter()
            .rev()
            .map(|e| (e.action, e.actor))
            .collect();
        assert_eq!(
            audit,
            [
                ("incident.open".to_string(), "ana".to_string()),
                ("incident.note".into(), "bo".into()),
                ("incident.close".into(), "ana".into()),
            ]
        );
        assert!(matches!(
            note(&mut c, 99, "note", "x", "y", 1),
            Err(StoreError::NotFound(_))
        ));
        assert!(list(&c, false, 10).unwrap().is_empty());
        assert_eq!(list(&c, true, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_rule_firing_again_attaches_to_its_open_incident() {
        let (_d, mut c) = conn();
        let n = NewIncident {
            title: "cost runaway",
            kind: Some("cost-runaway"),
            scope: Some("feature=chat"),
            actor: "keel",
            at_ms: 1_000,
            alert_rule: Some("chat-spend"),
            ..NewIncident::default()
        };
        let (a, opened) = open_or_attach(&mut c, &n, "spend 3x").unwrap();
        assert!(opened);
        let (b, opened) = open_or_attach(
            &mut c,
            &NewIncident {
                at_ms: 2_000,
                ..n.clone()
            },
            "again",
        )
        .unwrap();
        assert_eq!((a, opened), (b, false));
        close(&mut c, a, "ana", "capped", 3_000).unwrap();
        let (d, opened) =
            open_or_attach(&mut c, &NewIncident { at_ms: 4_000, ..n }, "back").unwrap();
        assert!(opened && d != a, "a closed incident is not reopened");
        let (_, events) = get(&c, a).unwrap().unwrap();
        assert_eq!(events.iter().filter(|e| e.kind == "alert").count(), 2);
    }
}
