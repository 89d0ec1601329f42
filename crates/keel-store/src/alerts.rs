//! Alert events: every firing, resolution and test an alert rule, budget threshold or
//! spike detector produced, with where it was delivered. `keel alerts list` and the
//! de-duplication of a restarted gateway read them back.

use serde::Serialize;

use crate::error::StoreError;
use crate::sql::{Db, Row};
use crate::values;

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

fn from_row(r: &Row<'_>) -> Result<AlertEvent, StoreError> {
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

const INSERT: &str = "INSERT INTO alert_events (at_ms, source, name, scope, state, value, threshold, message, dedupe_key, delivered)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id";

pub fn record_alert_event<'c>(db: impl Into<Db<'c>>, e: &NewAlertEvent) -> Result<i64, StoreError> {
    db.into().query_row(
        INSERT,
        &values![
            e.at_ms,
            &e.source,
            &e.name,
            &e.scope,
            &e.state,
            e.value,
            e.threshold,
            &e.message,
            &e.dedupe_key,
            e.delivered.as_ref().map(|d| d.to_string()),
        ],
        |r| r.get(0),
    )
}

/// [`record_alert_event`] unless another process recorded an event of the same key since
/// `last` (the id of the newest event the caller saw, from [`last_alert_event`]; `None`:
/// it saw none): the id, or `None` when it lost the race. Replicas that saw the same
/// newest event and decided the same change (an alert now firing) record it once; the
/// check and the insert hold the key's lock, so two can never both pass.
pub fn record_alert_event_after<'c>(
    db: impl Into<Db<'c>>,
    e: &NewAlertEvent,
    last: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    let db = db.into();
    db.exclusive_for(&format!("alert:{}", e.dedupe_key), |tx| {
        let newest = last_alert_event(tx, &e.dedupe_key)?.map(|n| n.id);
        if newest != last {
            return Ok(None);
        }
        record_alert_event(tx, e).map(Some)
    })
}

/// Events at or after `since_ms`, newest first, at most `limit` (0 = all).
pub fn list_alert_events<'c>(
    db: impl Into<Db<'c>>,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<AlertEvent>, StoreError> {
    let limit = if limit == 0 {
        i64::MAX
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    db.into().query(
        &format!("SELECT {COLUMNS} FROM alert_events WHERE at_ms >= ?1 ORDER BY id DESC LIMIT ?2"),
        &values![since_ms, limit],
        from_row,
    )
}

/// The newest event with this de-duplication key (is it firing now?).
pub fn last_alert_event<'c>(
    db: impl Into<Db<'c>>,
    dedupe_key: &str,
) -> Result<Option<AlertEvent>, StoreError> {
    db.into().query_opt(
        &format!("SELECT {COLUMNS} FROM alert_events WHERE dedupe_key = ?1 AND state != 'test' ORDER BY id DESC LIMIT 1"),
        &values![dedupe_key],
        from_row,
    )
}

/// Keys whose newest event is `firing` (what is active now).
pub fn firing_alerts<'c>(db: impl Into<Db<'c>>) -> Result<Vec<AlertEvent>, StoreError> {
    db.into().query(
        &format!(
            "SELECT {COLUMNS} FROM alert_events WHERE id IN
           (SELECT MAX(id) FROM alert_events WHERE state != 'test' GROUP BY dedupe_key)
         AND state = 'firing' ORDER BY id DESC"
        ),
        &[],
        from_row,
    )
}

#[cfg(test)]
pub(crate) mod tests {
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
        for (backend, store, _db) in crate::testing::stores() {
            let c = store.conn().unwrap();
            record_alert_event(&c, &ev("a", "firing", 1)).unwrap();
            record_alert_event(&c, &ev("b", "firing", 2)).unwrap();
            record_alert_event(&c, &ev("a", "resolved", 3)).unwrap();
            record_alert_event(&c, &ev("b", "test", 4)).unwrap();
            let firing = firing_alerts(&c).unwrap();
            assert_eq!(firing.len(), 1, "{backend}");
            assert_eq!(firing[0].dedupe_key, "b", "{backend}");
            assert_eq!(
                last_alert_event(&c, "a").unwrap().unwrap().state,
                "resolved",
                "{backend}"
            );
            assert!(last_alert_event(&c, "zzz").unwrap().is_none(), "{backend}");
            assert_eq!(list_alert_events(&c, 2, 0).unwrap().len(), 3, "{backend}");
            let newest = &list_alert_events(&c, 0, 1).unwrap()[0];
            assert_eq!(
                (newest.id, newest.value, newest.delivered.clone()),
                (4, Some(2.0), Some(serde_json::json!({"log": "ok"}))),
                "{backend}"
            );
        }
    }

    /// `f(0..n)` at once, each on its own thread, on PostgreSQL (replicas); one after
    /// the other on SQLite (a shared-cache in-memory store does not wait for its lock).
    pub(crate) fn race<T: Send>(backend: &str, n: i64, f: impl Fn(i64) -> T + Sync) -> Vec<T> {
        if backend != "postgres" {
            return (0..n).map(&f).collect();
        }
        let barrier = std::sync::Barrier::new(usize::try_from(n).unwrap());
        std::thread::scope(|s| {
            let racers: Vec<_> = (0..n)
                .map(|i| {
                    let (f, barrier) = (&f, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        f(i)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        })
    }

    #[test]
    fn replicas_that_saw_the_same_event_record_one_firing() {
        for (backend, store, _db) in crate::testing::stores() {
            let c = store.conn().unwrap();
            let resolved = record_alert_event(&c, &ev("k", "resolved", 1)).unwrap();
            // Both saw `resolved` and decided the alert fires again: one records it.
            // (Threads on PostgreSQL; an in-memory SQLite store has one writer at a time.)
            let won: Vec<Option<i64>> = race(backend, 4, |i| {
                let c = store.conn().unwrap();
                record_alert_event_after(&c, &ev("k", "firing", 10 + i), Some(resolved)).unwrap()
            });
            assert_eq!(won.iter().flatten().count(), 1, "{backend}: {won:?}");
            assert_eq!(firing_alerts(&c).unwrap().len(), 1, "{backend}");
            // A caller that saw no event at all records the first of a new key.
            assert!(record_alert_event_after(&c, &ev("n", "firing", 1), None)
                .unwrap()
                .is_some());
            assert!(record_alert_event_after(&c, &ev("n", "firing", 2), None)
                .unwrap()
                .is_none());
        }
    }
}
