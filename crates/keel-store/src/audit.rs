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

/// The last `action` on `target`: its `to_value` and `details_json`.
pub fn last_event_values(
    conn: &Connection,
    action: &str,
    target: &str,
) -> rusqlite::Result<Option<(Option<String>, Option<String>)>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT to_value, details_json FROM audit_events WHERE action = ?1 AND target = ?2 ORDER BY id DESC LIMIT 1",
        params![action, target],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// The `to_value` of the last `action` on `target` recorded before event `before_id`
/// (e.g. the config hash loaded before a given load).
pub fn value_before(
    conn: &Connection,
    action: &str,
    target: &str,
    before_id: i64,
) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT to_value FROM audit_events WHERE action = ?1 AND target = ?2 AND id < ?3 ORDER BY id DESC LIMIT 1",
        params![action, target, before_id],
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
    let rows = stmt.query_map(params![since_ms, limit], audit_row)?;
    rows.collect()
}

/// The events of one `action` (e.g. `model.version_changed`) at or after `since_ms`,
/// newest first, at most `limit` (0 = all).
pub fn list_audit_action(
    conn: &Connection,
    action: &str,
    since_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<AuditEvent>> {
    let limit = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, actor, action, target, from_value, to_value, reason, details_json
         FROM audit_events WHERE action = ?1 AND at_ms >= ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![action, since_ms, limit], audit_row)?;
    rows.collect()
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
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
}

/// Every call governance refused, read from the traces (each block is traced with its
/// error class, so the audit log needs no second write on the request path), as audit
/// events: action `block.<class>`, actor the key id (or `anonymous`), target the scope
/// it was refused in, reason the refusal's message. `classes` are the refusal classes
/// (`keel_governance::error::BLOCK_CLASSES`). Newest first, at most `limit` (0 = all);
/// ids are negative trace row ids so they never collide with recorded events.
pub fn list_blocks(
    conn: &Connection,
    classes: &[&str],
    since_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<AuditEvent>> {
    if classes.is_empty() {
        return Ok(Vec::new());
    }
    let limit = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    let marks = vec!["?"; classes.len()].join(", ");
    let sql = format!(
        "SELECT rowid, started_at_ms, key_id, error_class, tenant, feature, model_requested,
                error_message, id
         FROM traces WHERE error_class IN ({marks}) AND started_at_ms >= ?
         ORDER BY started_at_ms DESC LIMIT ?"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut args: Vec<rusqlite::types::Value> = classes
        .iter()
        .map(|c| rusqlite::types::Value::Text((*c).to_string()))
        .collect();
    args.push(since_ms.into());
    args.push(limit.into());
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        let class: String = r.get(3)?;
        let tenant: Option<String> = r.get(4)?;
        let feature: Option<String> = r.get(5)?;
        let model: Option<String> = r.get(6)?;
        let target = [("tenant", tenant), ("feature", feature), ("model", model)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ");
        let request_id: String = r.get(8)?;
        Ok(AuditEvent {
            id: -r.get::<_, i64>(0)?,
            at_ms: r.get(1)?,
            actor: r
                .get::<_, Option<String>>(2)?
                .map_or_else(|| "anonymous".to_string(), |k| format!("key:{k}")),
            action: format!("block.{class}"),
            target,
            from_value: None,
            to_value: None,
            reason: r.get(7)?,
            details_json: Some(serde_json::json!({ "request_id": request_id }).to_string()),
        })
    })?;
    rows.collect()
}
