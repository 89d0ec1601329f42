//! User feedback on a call (`POST /v1/feedback`): a named value — a number, a boolean or
//! a category — that an app's user gave a response, kept in `feedback` (migrations 0019
//! and 0020) and shown with the trace by `keel traces show` and the trace page.
//!
//! One row per (trace, name, source): a later value for the same name and source
//! replaces the earlier one, and the replacement is an audit event (`feedback.replace`,
//! written in the same transaction) so a changed vote is never silently lost. This
//! module also answers who owns a call ([`feedback_targets`]), which the gateway needs
//! to decide whether a key may attach feedback to it.

use serde_json::{json, Value};

use crate::audit::NewAuditEvent;
use crate::error::StoreError;
use crate::sql::{Db, Dialect, Row};
use crate::values;
use crate::Store;

/// The audit action of a replaced feedback value.
pub const REPLACE_ACTION: &str = "feedback.replace";

/// Most later calls that sent a request id (`client_request_id`) considered as targets.
const MAX_REUSED: i64 = 20;

/// A feedback value, as the app sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackValue {
    /// Finite (JSON has no NaN or infinity).
    Number(f64),
    Bool(bool),
    /// A category label (`"wrong_answer"`).
    Category(String),
}

/// Integers up to 2^53 are exact in an f64; they read back as JSON integers.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

impl FeedbackValue {
    /// The value as the JSON the app sent: `1`, `0.5`, `true`, `"wrong_answer"`.
    pub fn to_json(&self) -> Value {
        match self {
            FeedbackValue::Number(n) if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INT => {
                json!(*n as i64)
            }
            FeedbackValue::Number(n) => json!(n),
            FeedbackValue::Bool(b) => json!(b),
            FeedbackValue::Category(s) => json!(s),
        }
    }

    /// The `value_kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            FeedbackValue::Number(_) => "number",
            FeedbackValue::Bool(_) => "boolean",
            FeedbackValue::Category(_) => "category",
        }
    }

    /// (`value_num`, `value_text`).
    fn columns(&self) -> (Option<f64>, Option<&str>) {
        match self {
            FeedbackValue::Number(n) => (Some(*n), None),
            FeedbackValue::Bool(b) => (Some(if *b { 1.0 } else { 0.0 }), None),
            FeedbackValue::Category(s) => (None, Some(s.as_str())),
        }
    }

    fn from_columns(kind: &str, num: Option<f64>, text: Option<String>) -> FeedbackValue {
        match (kind, num, text) {
            ("boolean", Some(n), _) => FeedbackValue::Bool(n != 0.0),
            ("category", _, Some(t)) | (_, None, Some(t)) => FeedbackValue::Category(t),
            (_, n, _) => FeedbackValue::Number(n.unwrap_or(0.0)),
        }
    }
}

impl std::fmt::Display for FeedbackValue {
    /// For people: a category without quotes, a number without a needless `.0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedbackValue::Category(s) => f.write_str(s),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

/// One feedback row.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// The trace (`traces.id`) it is about.
    pub trace_id: String,
    pub name: String,
    /// Who gave it, as the app says (`user` by default).
    pub source: String,
    pub value: FeedbackValue,
    pub comment: Option<String>,
    /// The virtual key that sent it; `None` for the admin key or an open gateway.
    pub key_id: Option<String>,
    pub at_ms: i64,
}

impl Feedback {
    /// The shape `keel traces show --json` prints: `{"name", "value", "comment",
    /// "source", "at"}` with `value` as the app sent it and `at` in RFC 3339 UTC.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "value": self.value.to_json(),
            "comment": self.comment,
            "source": self.source,
            "at": crate::report::rfc3339(self.at_ms),
        })
    }
}

/// A call feedback may be attached to, with what decides who may: its key and tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackTarget {
    /// The trace's id (`traces.id`).
    pub id: String,
    pub key_id: Option<String>,
    pub tenant: Option<String>,
}

/// The calls `request_id` may name: the call stored under that id first (ids are
/// unique), then later calls that sent the same `x-keel-request-id` and were stored
/// under fresh ids (`client_request_id`, migration 0018), newest first. The gateway
/// takes the first one the caller may see, so an app whose id was taken first by
/// another tenant's call still reaches its own.
pub fn feedback_targets<'c>(
    db: impl Into<Db<'c>>,
    request_id: &str,
) -> Result<Vec<FeedbackTarget>, StoreError> {
    let db = db.into();
    let target = |r: &Row<'_>| {
        Ok(FeedbackTarget {
            id: r.get(0)?,
            key_id: r.get(1)?,
            tenant: r.get(2)?,
        })
    };
    let mut out: Vec<FeedbackTarget> = db
        .query_opt(
            "SELECT id, key_id, tenant FROM traces WHERE id = ?1",
            &values![request_id],
            target,
        )?
        .into_iter()
        .collect();
    out.extend(db.query(
        "SELECT id, key_id, tenant FROM traces WHERE client_request_id = ?1
         ORDER BY started_at_ms DESC, rowid DESC LIMIT ?2",
        &values![request_id, MAX_REUSED],
        target,
    )?);
    Ok(out)
}

const COLUMNS: &str =
    "trace_id, name, source, value_kind, value_num, value_text, comment, key_id, at_ms";

fn from_row(r: &Row<'_>) -> Result<Feedback, StoreError> {
    let kind: String = r.get(3)?;
    Ok(Feedback {
        trace_id: r.get(0)?,
        name: r.get(1)?,
        source: r.get(2)?,
        value: FeedbackValue::from_columns(&kind, r.get(4)?, r.get(5)?),
        comment: r.get(6)?,
        key_id: r.get(7)?,
        at_ms: r.get(8)?,
    })
}

/// Every feedback value on `trace_id`, oldest first.
pub fn feedback_for_trace<'c>(
    db: impl Into<Db<'c>>,
    trace_id: &str,
) -> Result<Vec<Feedback>, StoreError> {
    db.into().query(
        &format!("SELECT {COLUMNS} FROM feedback WHERE trace_id = ?1 ORDER BY at_ms, name, source"),
        &values![trace_id],
        from_row,
    )
}

/// Store `fb`, replacing any earlier value for the same (trace, name, source); returns
/// that earlier value. A replacement is audited in the same transaction, with `actor`
/// (`key:<id>`, `admin` or `anonymous`) as who changed it.
///
/// The earlier value is exact even when two replicas store the same name at once (the
/// gateway answers 201 for a new value, 200 for a replacement): the row is inserted if
/// absent, else locked (`FOR UPDATE` on PostgreSQL; SQLite's write lock is taken at the
/// start) and read before it is overwritten, so of two writers exactly one creates it
/// and the other replaces what the first wrote.
pub fn upsert_feedback<'c>(
    db: impl Into<Db<'c>>,
    fb: &Feedback,
    actor: &str,
) -> Result<Option<Feedback>, StoreError> {
    let (num, text) = fb.value.columns();
    // The same nine values for the insert and, when the row exists, the update.
    let row = values![
        &fb.trace_id,
        &fb.name,
        &fb.source,
        fb.value.kind(),
        num,
        text,
        &fb.comment,
        &fb.key_id,
        fb.at_ms
    ];
    db.into().write_transaction(|tx| {
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO feedback
               (trace_id, name, source, value_kind, value_num, value_text, comment, key_id, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &row,
        )?;
        if inserted == 1 {
            return Ok(None);
        }
        let lock = match tx.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        };
        let old = tx.query_row(
            &format!(
                "SELECT {COLUMNS} FROM feedback WHERE trace_id = ?1 AND name = ?2 AND source = ?3{lock}"
            ),
            &values![&fb.trace_id, &fb.name, &fb.source],
            from_row,
        )?;
        tx.execute(
            "UPDATE feedback SET value_kind = ?4, value_num = ?5, value_text = ?6, comment = ?7,
                    key_id = ?8, at_ms = ?9
              WHERE trace_id = ?1 AND name = ?2 AND source = ?3",
            &row,
        )?;
        crate::audit::record_audit(
            tx,
            fb.at_ms,
            &NewAuditEvent {
                actor,
                action: REPLACE_ACTION,
                target: &format!(
                    "request={} name={} source={}",
                    fb.trace_id, fb.name, fb.source
                ),
                from_value: Some(old.value.to_json().to_string()),
                to_value: Some(fb.value.to_json().to_string()),
                reason: None,
                details: Some(json!({
                    "request_id": fb.trace_id,
                    "name": fb.name,
                    "source": fb.source,
                    "comment_before": old.comment,
                    "comment_after": fb.comment,
                    "key_before": old.key_id,
                    "at_before_ms": old.at_ms,
                })),
            },
        )?;
        Ok(Some(old))
    })
}

impl Store {
    /// Open a write connection and store `fb` (the feedback endpoint calls this on a
    /// blocking thread): see [`upsert_feedback`].
    pub fn record_feedback(
        &self,
        fb: &Feedback,
        actor: &str,
    ) -> Result<Option<Feedback>, StoreError> {
        let conn = self.conn()?;
        upsert_feedback(&conn, fb, actor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn trace(db: Db<'_>, id: &str, tenant: &str, key: &str, client_id: Option<&str>, at: i64) {
        crate::partitions::ensure_days(db, std::iter::once(at), None).unwrap();
        db.execute(
            "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms, status, http_status, tenant, key_id, client_request_id)
             VALUES (?1, ?2, 'openai', '/v1/chat/completions', 0, 0, 5, 'ok', 200, ?3, ?4, ?5)",
            &values![id, at, tenant, key, client_id],
        )
        .unwrap();
    }

    fn fb(name: &str, value: FeedbackValue, at_ms: i64) -> Feedback {
        Feedback {
            trace_id: "t-1".into(),
            name: name.into(),
            source: "user".into(),
            value,
            comment: Some("<b>meh</b>".into()),
            key_id: Some("k1".into()),
            at_ms,
        }
    }

    #[test]
    fn values_read_back_as_the_json_that_was_sent() {
        for (backend, store, _db) in crate::testing::stores() {
            let cases = [
                ("thumbs", FeedbackValue::Number(-1.0), json!(-1)),
                ("rating", FeedbackValue::Number(0.25), json!(0.25)),
                ("helpful", FeedbackValue::Bool(false), json!(false)),
                ("resolved", FeedbackValue::Bool(true), json!(true)),
                (
                    "reason",
                    FeedbackValue::Category("wrong_answer".into()),
                    json!("wrong_answer"),
                ),
            ];
            for (i, (name, value, _)) in cases.iter().enumerate() {
                let prior = store
                    .record_feedback(&fb(name, value.clone(), 10 + i as i64), "key:k1")
                    .unwrap();
                assert_eq!(prior, None, "{backend}");
            }
            let got = feedback_for_trace(&store.conn().unwrap(), "t-1").unwrap();
            assert_eq!(got.len(), cases.len(), "{backend}");
            for (row, (name, value, json)) in got.iter().zip(cases.iter()) {
                assert_eq!(&row.name, name, "{backend}");
                assert_eq!(&row.value, value, "{backend}");
                assert_eq!(row.to_json()["value"], *json, "{backend}");
                assert_eq!(row.to_json()["source"], "user", "{backend}");
                assert_eq!(row.to_json()["comment"], "<b>meh</b>", "{backend}");
            }
            assert_eq!(
                got[0].to_json()["at"],
                "1970-01-01T00:00:00.01Z",
                "{backend}"
            );
            assert_eq!(got[4].value.to_string(), "wrong_answer", "{backend}");
            assert_eq!(got[0].value.to_string(), "-1", "{backend}");
        }
    }

    /// (actor, target, from, to, at, details) of every `feedback.replace` event.
    type Replaced = (
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
        Option<String>,
    );

    fn replacements(db: Db<'_>) -> Vec<Replaced> {
        db.query(
            "SELECT actor, target, from_value, to_value, at_ms, details_json FROM audit_events
              WHERE action = ?1 ORDER BY id",
            &values![REPLACE_ACTION],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap()
    }

    #[test]
    fn a_later_value_replaces_the_earlier_one_and_is_audited() {
        for (backend, store, _db) in crate::testing::stores() {
            let first = fb("thumbs", FeedbackValue::Number(1.0), 100);
            assert_eq!(store.record_feedback(&first, "key:k1").unwrap(), None);
            let mut other_source = fb("thumbs", FeedbackValue::Number(-1.0), 150);
            other_source.source = "support-agent".into();
            assert_eq!(store.record_feedback(&other_source, "admin").unwrap(), None);
            let mut second = fb("thumbs", FeedbackValue::Bool(false), 200);
            second.comment = None;
            second.key_id = Some("k2".into());
            let prior = store.record_feedback(&second, "key:k2").unwrap();
            assert_eq!(prior, Some(first), "{backend}");

            let conn = store.conn().unwrap();
            let got = feedback_for_trace(&conn, "t-1").unwrap();
            assert_eq!(got, vec![other_source, second], "{backend}");
            let replaced = replacements(conn.db());
            assert_eq!(replaced.len(), 1, "{backend}: {replaced:?}");
            let (actor, target, from, to, at, details) = &replaced[0];
            assert_eq!(actor, "key:k2", "{backend}");
            assert_eq!(target, "request=t-1 name=thumbs source=user", "{backend}");
            assert_eq!(from.as_deref(), Some("1"), "{backend}");
            assert_eq!(to.as_deref(), Some("false"), "{backend}");
            assert_eq!(*at, 200, "{backend}");
            let details: Value = serde_json::from_str(details.as_deref().unwrap()).unwrap();
            assert_eq!(details["comment_before"], "<b>meh</b>", "{backend}");
            assert_eq!(details["key_before"], "k1", "{backend}");
        }
    }

    #[test]
    fn of_two_replicas_storing_the_same_name_at_once_exactly_one_creates_it() {
        // Two stores on one database are two replicas; each round, both store the same
        // (trace, name, source) at the same moment.
        for (backend, store, db) in crate::testing::stores() {
            let other = match &db {
                Some(db) => Store::open(&db.url()).unwrap(),
                None => continue, // one SQLite file is one process's: nothing to race
            };
            for round in 0..20 {
                let barrier = std::sync::Barrier::new(2);
                let results: Vec<Option<Feedback>> = std::thread::scope(|s| {
                    let handles: Vec<_> = [&store, &other]
                        .into_iter()
                        .enumerate()
                        .map(|(i, st)| {
                            let barrier = &barrier;
                            s.spawn(move || {
                                let mut f = fb("thumbs", FeedbackValue::Number(i as f64), round);
                                f.trace_id = format!("t-{round}");
                                let conn = st.conn().unwrap();
                                barrier.wait();
                                upsert_feedback(&conn, &f, "admin").unwrap()
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                let created = results.iter().filter(|r| r.is_none()).count();
                assert_eq!(created, 1, "{backend} round {round}: {results:?}");
            }
            let conn = store.conn().unwrap();
            assert_eq!(replacements(conn.db()).len(), 20, "{backend}");
        }
    }

    #[test]
    fn targets_are_the_id_then_later_calls_that_sent_it_newest_first() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            trace(conn.db(), "order-42", "victim", "kv", None, 1);
            trace(conn.db(), "fresh-1", "intruder", "ki", Some("order-42"), 2);
            trace(conn.db(), "fresh-2", "acme", "ka", Some("order-42"), 2);
            let got = feedback_targets(&conn, "order-42").unwrap();
            let ids: Vec<_> = got.iter().map(|t| t.id.as_str()).collect();
            assert_eq!(ids, ["order-42", "fresh-2", "fresh-1"], "{backend}");
            assert_eq!(got[0].tenant.as_deref(), Some("victim"), "{backend}");
            assert_eq!(got[0].key_id.as_deref(), Some("kv"), "{backend}");
            assert!(
                feedback_targets(&conn, "nope").unwrap().is_empty(),
                "{backend}"
            );
        }
    }

    #[test]
    fn migration_20_gives_rows_of_version_19_their_kind() {
        let mut conn = Connection::open_in_memory().unwrap();
        let upto = |v: u32| {
            let n = crate::migrations::MIGRATIONS
                .iter()
                .position(|m| m.version == v)
                .unwrap();
            &crate::migrations::MIGRATIONS[..=n]
        };
        crate::migrations::migrate(&mut conn, "mem", upto(19)).unwrap();
        conn.execute_batch(
            "INSERT INTO feedback (trace_id, name, source, value_num, value_text, at_ms)
                 VALUES ('t-1', 'thumbs', 'user', 1, NULL, 5), ('t-1', 'reason', 'user', NULL, 'slow', 6)",
        )
        .unwrap();
        assert_eq!(
            crate::migrations::migrate(&mut conn, "mem", upto(20)).unwrap(),
            vec![20]
        );
        let got = feedback_for_trace(&conn, "t-1").unwrap();
        assert_eq!(got[0].value, FeedbackValue::Number(1.0));
        assert_eq!(got[1].value, FeedbackValue::Category("slow".into()));
        assert!(conn
            .execute(
                "UPDATE feedback SET value_kind = 'vibes' WHERE name = 'thumbs'",
                []
            )
            .is_err());
    }
}
