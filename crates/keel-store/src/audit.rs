//! The audit log: an append-only record of every change to prompts and labels (and, as
//! they arrive, keys, budgets and policies) — who did what to which target, from what to
//! what, and why. Written in the same transaction as the change it records.

use serde::Serialize;

use crate::error::StoreError;
use crate::sql::{lock_id, Db, Dialect, Row, Value};
use crate::values;

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
///
/// On PostgreSQL, replicas' audit writes take turns (a transaction-scoped advisory lock,
/// taken by the insert itself so it holds in an autocommit statement too), so ids
/// follow commit order: "the last event" on a target ([`last_value`], [`value_before`])
/// is the one committed last, even when two replicas record one at the same moment.
/// No deadlock: an event is written after the change it records, so this is the last
/// lock any transaction takes.
pub fn record_audit<'c>(
    db: impl Into<Db<'c>>,
    at_ms: i64,
    e: &NewAuditEvent<'_>,
) -> Result<i64, StoreError> {
    let db = db.into();
    let values = values![
        at_ms,
        e.actor,
        e.action,
        e.target,
        &e.from_value,
        &e.to_value,
        e.reason,
        e.details.as_ref().map(|d| d.to_string()),
    ];
    match db.dialect() {
        Dialect::Sqlite => db.query_row(
            "INSERT INTO audit_events (at_ms, actor, action, target, from_value, to_value, reason, details_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            &values,
            |r| r.get(0),
        ),
        Dialect::Postgres => {
            let mut values = values;
            values.push(Value::Int(lock_id("audit-write")));
            db.query_row(
                "WITH turn AS (SELECT pg_advisory_xact_lock(?9))
                 INSERT INTO audit_events (at_ms, actor, action, target, from_value, to_value, reason, details_json)
                 SELECT ?1::bigint, ?2::text, ?3::text, ?4::text, ?5::text, ?6::text, ?7::text, ?8::text
                   FROM turn RETURNING id",
                &values,
                |r| r.get(0),
            )
        }
    }
}

/// The `to_value` of the newest `action` event on `target` (e.g. the last config hash).
pub fn last_value<'c>(
    db: impl Into<Db<'c>>,
    action: &str,
    target: &str,
) -> Result<Option<String>, StoreError> {
    db.into()
        .query_opt(
            "SELECT to_value FROM audit_events WHERE action = ?1 AND target = ?2 ORDER BY id DESC LIMIT 1",
            &values![action, target],
            |r| r.get::<Option<String>>(0),
        )
        .map(Option::flatten)
}

/// An event's `to_value` and `details_json`.
pub type EventValues = (Option<String>, Option<String>);

/// The last `action` on `target`: its `to_value` and `details_json`.
pub fn last_event_values<'c>(
    db: impl Into<Db<'c>>,
    action: &str,
    target: &str,
) -> Result<Option<EventValues>, StoreError> {
    db.into().query_opt(
        "SELECT to_value, details_json FROM audit_events WHERE action = ?1 AND target = ?2 ORDER BY id DESC LIMIT 1",
        &values![action, target],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The `to_value` of the last `action` on `target` recorded before event `before_id`
/// (e.g. the config hash loaded before a given load).
pub fn value_before<'c>(
    db: impl Into<Db<'c>>,
    action: &str,
    target: &str,
    before_id: i64,
) -> Result<Option<String>, StoreError> {
    db.into()
        .query_opt(
            "SELECT to_value FROM audit_events WHERE action = ?1 AND target = ?2 AND id < ?3 ORDER BY id DESC LIMIT 1",
            &values![action, target, before_id],
            |r| r.get::<Option<String>>(0),
        )
        .map(Option::flatten)
}

/// `limit` as SQL reads it: 0 (all) is the most rows either backend can count.
fn sql_limit(limit: usize) -> i64 {
    if limit == 0 {
        i64::MAX
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    }
}

/// Events at or after `since_ms`, newest first, at most `limit` (0 = all).
pub fn list_audit<'c>(
    db: impl Into<Db<'c>>,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<AuditEvent>, StoreError> {
    db.into().query(
        "SELECT id, at_ms, actor, action, target, from_value, to_value, reason, details_json
         FROM audit_events WHERE at_ms >= ?1 ORDER BY id DESC LIMIT ?2",
        &values![since_ms, sql_limit(limit)],
        audit_row,
    )
}

/// The events of one `action` (e.g. `model.version_changed`) at or after `since_ms`,
/// newest first, at most `limit` (0 = all).
pub fn list_audit_action<'c>(
    db: impl Into<Db<'c>>,
    action: &str,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<AuditEvent>, StoreError> {
    db.into().query(
        "SELECT id, at_ms, actor, action, target, from_value, to_value, reason, details_json
         FROM audit_events WHERE action = ?1 AND at_ms >= ?2 ORDER BY id DESC LIMIT ?3",
        &values![action, since_ms, sql_limit(limit)],
        audit_row,
    )
}

fn audit_row(r: &Row<'_>) -> Result<AuditEvent, StoreError> {
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
pub fn list_blocks<'c>(
    db: impl Into<Db<'c>>,
    classes: &[&str],
    since_ms: i64,
    limit: usize,
) -> Result<Vec<AuditEvent>, StoreError> {
    if classes.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; classes.len()].join(", ");
    let sql = format!(
        "SELECT rowid, started_at_ms, key_id, error_class, tenant, feature, model_requested,
                error_message, id
         FROM traces WHERE error_class IN ({marks}) AND started_at_ms >= ?
         ORDER BY started_at_ms DESC LIMIT ?"
    );
    let mut args: Vec<crate::sql::Value> = classes.iter().map(|c| (*c).into()).collect();
    args.push(since_ms.into());
    args.push(sql_limit(limit).into());
    db.into().query(&sql, &args, |r| {
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
            id: -r.get::<i64>(0)?,
            at_ms: r.get(1)?,
            actor: r
                .get::<Option<String>>(2)?
                .map_or_else(|| "anonymous".to_string(), |k| format!("key:{k}")),
            action: format!("block.{class}"),
            target,
            from_value: None,
            to_value: None,
            reason: r.get(7)?,
            details_json: Some(serde_json::json!({ "request_id": request_id }).to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;
    use keel_core::trace::{TraceRecord, TraceStatus};

    fn event<'a>(action: &'a str, target: &'a str, to: &str) -> NewAuditEvent<'a> {
        NewAuditEvent {
            actor: "ana",
            action,
            target,
            to_value: Some(to.to_string()),
            details: Some(serde_json::json!({"n": 1})),
            ..NewAuditEvent::default()
        }
    }

    /// Two replicas recording an event on one target at once: the one that commits
    /// last has the larger id, so it is "the last event".
    #[test]
    fn on_postgresql_audit_ids_follow_commit_order() {
        let db = crate::testing::TestDb::new();
        let store = crate::Store::open(&db.url()).unwrap();
        let (a, b) = (store.conn().unwrap(), store.conn().unwrap());
        let hold = std::time::Duration::from_millis(400);
        let (first, second, waited) = std::thread::scope(|scope| {
            a.db()
                .transaction(|tx| {
                    // Replica A records its event first and commits it last.
                    let first = record_audit(tx, 10, &event("config.load", "keel.toml", "a"))?;
                    let replica_b = scope.spawn(move || {
                        let started = std::time::Instant::now();
                        let id = record_audit(b.db(), 20, &event("config.load", "keel.toml", "b"))
                            .unwrap();
                        (id, started.elapsed())
                    });
                    std::thread::sleep(hold);
                    Ok((first, replica_b))
                })
                .map(|(first, replica_b)| {
                    let (second, waited) = replica_b.join().unwrap();
                    (first, second, waited)
                })
                .unwrap()
        });
        assert!(
            waited >= hold / 2,
            "replica B's insert did not wait for A's commit ({waited:?})"
        );
        assert!(first < second, "ids {first} then {second}");
        assert_eq!(
            last_value(a.db(), "config.load", "keel.toml")
                .unwrap()
                .as_deref(),
            Some("b")
        );
    }

    #[test]
    fn events_are_appended_with_ids_and_read_back_by_action_and_target() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            let db = conn.db();
            let first = record_audit(db, 10, &event("config.load", "keel.toml", "h1")).unwrap();
            let second = record_audit(db, 20, &event("config.load", "keel.toml", "h2")).unwrap();
            let other = record_audit(db, 30, &event("model.changed", "m", "v2")).unwrap();
            assert!(first < second && second < other, "{backend}");
            assert_eq!(
                last_value(db, "config.load", "keel.toml")
                    .unwrap()
                    .as_deref(),
                Some("h2"),
                "{backend}"
            );
            assert_eq!(last_value(db, "config.load", "other").unwrap(), None);
            assert_eq!(
                last_event_values(db, "config.load", "keel.toml").unwrap(),
                Some((Some("h2".to_string()), Some("{\"n\":1}".to_string()))),
                "{backend}"
            );
            assert_eq!(last_event_values(db, "nope", "keel.toml").unwrap(), None);
            assert_eq!(
                value_before(db, "config.load", "keel.toml", second)
                    .unwrap()
                    .as_deref(),
                Some("h1"),
                "{backend}"
            );
            assert_eq!(
                value_before(db, "config.load", "keel.toml", first).unwrap(),
                None
            );
            let changed = list_audit_action(db, "model.changed", 0, 0).unwrap();
            assert_eq!(changed.len(), 1, "{backend}");
            assert_eq!(
                (changed[0].id, changed[0].at_ms, changed[0].actor.as_str()),
                (other, 30, "ana"),
                "{backend}"
            );
            assert!(list_audit_action(db, "model.changed", 31, 0)
                .unwrap()
                .is_empty());
            assert_eq!(
                list_audit_action(db, "config.load", 0, 1).unwrap()[0].id,
                second
            );
            let all = list_audit(db, 15, 0).unwrap();
            assert_eq!(
                all.iter().map(|e| e.id).collect::<Vec<_>>(),
                [other, second],
                "{backend}"
            );
        }
    }

    fn blocked(id: &str, at: i64, class: &str, key: Option<&str>) -> TraceRecord {
        let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
        t.status = TraceStatus::Error;
        t.error_class = Some(class.into());
        t.error_message = Some(format!("refused: {class}"));
        t.key_id = key.map(str::to_string);
        t.tenant = Some("acme".into());
        t.model_requested = Some("fast".into());
        t
    }

    #[test]
    fn refused_calls_read_as_block_events() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            crate::trace_row::insert_batch(
                &conn,
                &[
                    blocked("a", 100, "budget_exceeded", Some("k1")),
                    blocked("b", 200, "rate_limited", None),
                    blocked("c", 300, "upstream_timeout", None),
                    blocked("d", 400, "budget_exceeded", None),
                ],
            )
            .unwrap();
            let classes = ["budget_exceeded", "rate_limited"];
            let got = list_blocks(&conn, &classes, 0, 0).unwrap();
            let seen: Vec<(&str, &str, &str)> = got
                .iter()
                .map(|e| (e.action.as_str(), e.actor.as_str(), e.target.as_str()))
                .collect();
            assert_eq!(
                seen,
                [
                    (
                        "block.budget_exceeded",
                        "anonymous",
                        "tenant=acme model=fast"
                    ),
                    ("block.rate_limited", "anonymous", "tenant=acme model=fast"),
                    ("block.budget_exceeded", "key:k1", "tenant=acme model=fast"),
                ],
                "{backend}"
            );
            assert!(got.iter().all(|e| e.id < 0), "{backend}");
            assert_eq!(got[2].reason.as_deref(), Some("refused: budget_exceeded"));
            assert_eq!(
                got[2].details_json.as_deref(),
                Some("{\"request_id\":\"a\"}"),
                "{backend}"
            );
            assert_eq!(list_blocks(&conn, &classes, 150, 0).unwrap().len(), 2);
            assert_eq!(list_blocks(&conn, &classes, 0, 1).unwrap().len(), 1);
            assert!(list_blocks(&conn, &[], 0, 0).unwrap().is_empty());
        }
    }
}
