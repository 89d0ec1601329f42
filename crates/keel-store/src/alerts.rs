//! Alert events: every firing, resolution and test an alert rule, budget threshold or
//! spike detector produced, with where it was delivered. `keel alerts list` and the
//! de-duplication of a restarted gateway read them back.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub id: i64,
    pub at_ms: i64,
    /// `rule`, `budget`, `spike`, `backend` or `test`.
    pub source: String,
    pub name: String,
    pub scope: String,
    /// `firing`, `resolved` or `test`.
    pub state: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    pub dedupe_key: String,
    /// Destination → `ok` or the delivery error.
    pub delivered: Option<serde_json::Value>,
}

/// An event to append (its id is assigned when written).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlertEvent {
    pub at_ms: i64,
    pub source: String,
    pub name: String,
    pub scope: String,
    pub state: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    pub dedupe_key: String,
    pub delivered: Option<serde_json::Value>,
}

const COLUMNS: &str =
    "id, at_ms, source, name, scope, state, value, threshold, message, dedupe_key, delivered";

fn from_row(r: &Row<'_>) -> rusqlite::Result<AlertEvent> {
    let delivered: Option<String> = r.get(10)?;
    Ok(AlertEvent {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        source: r.get(2)?,
        name: r.get(3)?,
        scope: r.get(4)?,
        state: r.get(5)?,
        value: r.get(6)?,
        threshold: r.get(7)?,
        message: r.get(8)?,
        dedupe_key: r.get(9)?,
        delivered: delivered.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

pub fn record_alert_event(conn: &Connection, e: &NewAlertEvent) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO alert_events (at_ms, source, name, scope, state, value, threshold, message, dedupe_key, delivered)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            e.at_ms,
            e.source,
            e.name,
            e.scope,
            e.state,
            e.value,
            e.threshold,
            e.message,
            e.dedupe_key,
            e.delivered.as_ref().map(|d| d.to_string()),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Events at or after `since_ms`, newest first, at most `limit` (0 = all).
pub fn list_alert_events(
    conn: &Connection,
    since_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<AlertEvent>> {
    let limit = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM alert_events WHERE at_ms >= ?1 ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![since_ms, limit], from_row)?;
    rows.collect()
}

/// The newest event with this de-duplication key (is it firing now?).
pub fn last_alert_event(
    conn: &Connection,
    dedupe_key: &str,
) -> rusqlite::Result<Option<AlertEvent>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM alert_events WHERE dedupe_key = ?1 AND state != 'test' ORDER BY id DESC LIMIT 1"),
        [dedupe_key],
        from_row,
    )
    .optional()
}

/// Keys whose newest event is `firing` (what is active now).
pub fn firing_alerts(conn: &Connection) -> rusqlite::Result<Vec<AlertEvent>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM alert_events WHERE id IN
           (SELECT MAX(id) FROM alert_events WHERE state != 'test' GROUP BY dedupe_key)
         AND state = 'firing' ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str, state: &str, at: i64) -> NewAlertEvent {
        NewAlertEvent {
            at_ms: at,
            source: "rule".into(),
            name: "r".into(),
            scope: "global".into(),
            state: state.into(),
            value: Some(2.0),
            threshold: Some(1.0),
            message: "m".into(),
            dedupe_key: key.into(),
            delivered: Some(serde_json::json!({"log": "ok"})),
        }
    }

    #[test]
    fn the_newest_event_per_key_says_what_fires() {
        let store = crate::Store::open(":memory:").unwrap();
        let c = store.writer_conn().unwrap();
        record_alert_event(&c, &ev("a", "firing", 1)).unwrap();
        record_alert_event(&c, &ev("b", "firing", 2)).unwrap();
        record_alert_event(&c, &ev("a", "resolved", 3)).unwrap();
        record_alert_event(&c, &ev("b", "test", 4)).unwrap();
        let firing = firing_alerts(&c).unwrap();
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].dedupe_key, "b");
        assert_eq!(
            last_alert_event(&c, "a").unwrap().unwrap().state,
            "resolved"
        );
        assert_eq!(list_alert_events(&c, 2, 0).unwrap().len(), 3);
        assert_eq!(
            list_alert_events(&c, 0, 1).unwrap()[0].delivered,
            Some(serde_json::json!({"log": "ok"}))
        );
    }
}
