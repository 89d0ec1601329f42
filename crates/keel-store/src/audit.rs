//! The audit log: an append-only record of every change to prompts and labels (and, as
//! they arrive, keys, budgets and policies) — who did what to which target, from what to
//! what, and why. Written in the same transaction as the change it records.

use rusqlite::{params, Connection};
use serde::Serialize;

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    /// `prompt.push`, `prompt.label`, `prompt.rollback`, ...
    pub action: String,
    pub target: String,
    pub from_value: Option<String>,
    pub to_value: Option<String>,
    pub reason: Option<String>,
    pub details_json: Option<String>,
}

/// An event to append (the id and time are assigned when written).
#[derive(Debug, Clone, Default)]
pub struct NewAuditEvent<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub from_value: Option<String>,
    pub to_value: Option<String>,
    pub reason: Option<&'a str>,
    pub details: Option<serde_json::Value>,
}

/// Append one event at `at_ms`; returns its id.
pub fn record_audit(conn: &Connection, at_ms: i64, e: &NewAuditEvent<'_>) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO audit_events (at_ms, actor, action, target, from_value, to_value, reason, details_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            at_ms,
            e.actor,
            e.action,
            e.target,
            e.from_value,
            e.to_value,
            e.reason,
            e.details.as_ref().map(|d| d.to_string()),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The `to_value` of the newest `action` event on `target` (e.g. the last config hash).
pub fn last_value(
    conn: &Connection,
    action: &str,
    target: &str,
) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT to_value FROM audit_events WHERE action = ?1 AND target = ?2 ORDER BY id DESC LIMIT 1",
        params![action, target],
        |r| r.get(0),
    )
    .optional()
    .map(Option::flatten)
}

/// Events at or after `since_ms`, newest first, at most `limit` (0 = all).
pub fn list_audit(
    conn: &Connection,
    since_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<AuditEvent>> {
    let limit = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    let mut stmt = conn.prepare(
        "SELECT id, at_ms, actor, action, target, from_value, to_value, reason, details_json
         FROM audit_events WHERE at_ms >= ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since_ms, limit], |r| {
        Ok(AuditEvent {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            from_value: r.get(5)?,
            to_value: r.get(6)?,
            reason: r.get(7)?,
            details_json: r.get(8)?,
        })
    })?;
    rows.collect()
}
