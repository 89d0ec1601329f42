//! Application spans: what an app sent to Keel's OTLP endpoint (`POST /v1/traces`) —
//! its retrieval, tool calls and other work — kept in `app_spans` so a trace page can
//! show them beside Keel's own call (`traces.otel_trace_id`).
//!
//! Writes come from the ingest endpoint off the request path (one transaction per
//! export request); a span sent twice (an exporter's retry) replaces the first copy —
//! but only when the same owner (the sending key's tenant) sends it: a span is never
//! replaced by another tenant's (migration 0018), whatever ids it names.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::sql::Db;
use crate::values;
use crate::Store;

/// A span's outcome, as OTLP's `Status.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Unset => "unset",
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }

    /// From the OTLP `StatusCode` number (anything unknown is `Unset`).
    pub fn from_code(code: i64) -> SpanStatus {
        match code {
            1 => SpanStatus::Ok,
            2 => SpanStatus::Error,
            _ => SpanStatus::Unset,
        }
    }

    fn parse(s: &str) -> SpanStatus {
        match s {
            "ok" => SpanStatus::Ok,
            "error" => SpanStatus::Error,
            _ => SpanStatus::Unset,
        }
    }
}

/// One span an application exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpan {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    /// The resource's `service.name`, when it has one.
    pub service: Option<String>,
    /// OTLP `SpanKind` (0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// The span's attributes as a JSON object (`{"db.system": "postgresql", …}`).
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub status: SpanStatus,
    pub status_message: Option<String>,
}

/// Nanosecond times past i64::MAX (year 2262) are not real; clamp rather than fail.
fn nanos(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Store `spans` sent by `owner` (the key's tenant; `None` for the admin key or an open
/// gateway) in one transaction. A span already stored is replaced only when it has the
/// same owner; the count of spans refused because another owner holds their ids.
pub fn insert_spans<'c>(
    db: impl Into<Db<'c>>,
    spans: &[AppSpan],
    received_at_ms: i64,
    owner: Option<&str>,
) -> Result<u64, StoreError> {
    let sets = spans
        .iter()
        .map(|s| {
            let attrs = serde_json::Value::Object(s.attributes.clone()).to_string();
            values![
                &s.trace_id,
                &s.span_id,
                &s.parent_span_id,
                &s.name,
                &s.service,
                s.kind,
                nanos(s.start_unix_nano),
                nanos(s.end_unix_nano),
                attrs,
                s.status.as_str(),
                &s.status_message,
                received_at_ms,
                owner,
            ]
        })
        .collect::<Vec<_>>();
    // `IS NOT DISTINCT FROM`: equal owners, NULL (the admin key) matching NULL.
    let written = db.into().transaction(|tx| {
        tx.execute_many(
            "INSERT INTO app_spans (trace_id, span_id, parent_span_id, name, service, kind,
                 start_unix_nano, end_unix_nano, attributes_json, status, status_message, received_at_ms, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (trace_id, span_id) DO UPDATE SET
                 parent_span_id = excluded.parent_span_id, name = excluded.name,
                 service = excluded.service, kind = excluded.kind,
                 start_unix_nano = excluded.start_unix_nano, end_unix_nano = excluded.end_unix_nano,
                 attributes_json = excluded.attributes_json, status = excluded.status,
                 status_message = excluded.status_message, received_at_ms = excluded.received_at_ms
             WHERE app_spans.owner IS NOT DISTINCT FROM excluded.owner",
            &sets,
        )
    })?;
    Ok(written.iter().filter(|n| **n == 0).count() as u64)
}

impl Store {
    /// Open a write connection and store `spans` sent by `owner` (for the ingest
    /// endpoint, which calls this on a blocking thread): see [`insert_spans`].
    pub fn insert_app_spans(
        &self,
        spans: &[AppSpan],
        received_at_ms: i64,
        owner: Option<&str>,
    ) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        insert_spans(&conn, spans, received_at_ms, owner)
    }
}

/// Every app span of `trace_id` (32 hex digits, any case), earliest first.
pub fn spans_for_trace<'c>(
    db: impl Into<Db<'c>>,
    trace_id: &str,
) -> Result<Vec<AppSpan>, StoreError> {
    db.into().query(
        "SELECT trace_id, span_id, parent_span_id, name, service, kind, start_unix_nano,
                end_unix_nano, attributes_json, status, status_message
         FROM app_spans WHERE trace_id = ?1 ORDER BY start_unix_nano, span_id",
        &values![trace_id.to_ascii_lowercase()],
        |r| {
            let attrs: String = r.get(8)?;
            let status: String = r.get(9)?;
            let start: i64 = r.get(6)?;
            let end: i64 = r.get(7)?;
            Ok(AppSpan {
                trace_id: r.get(0)?,
                span_id: r.get(1)?,
                parent_span_id: r.get(2)?,
                name: r.get(3)?,
                service: r.get(4)?,
                kind: r.get(5)?,
                start_unix_nano: u64::try_from(start).unwrap_or(0),
                end_unix_nano: u64::try_from(end).unwrap_or(0),
                attributes: match serde_json::from_str(&attrs) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                },
                status: SpanStatus::parse(&status),
                status_message: r.get(10)?,
            })
        },
    )
}

/// Keel's own calls in `trace_id` (their `otel_trace_id`), earliest first: the other
/// half of a trace page that shows app spans.
pub fn calls_in_trace<'c>(
    db: impl Into<Db<'c>>,
    trace_id: &str,
) -> Result<Vec<keel_core::trace::TraceRecord>, StoreError> {
    let sql = format!(
        "SELECT {} FROM traces WHERE otel_trace_id = ?1 ORDER BY started_at_ms, rowid",
        crate::trace_row::COLUMNS
    );
    db.into().query(
        &sql,
        &[trace_id.to_ascii_lowercase().into()],
        crate::trace_row::from_row,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, start: u64) -> AppSpan {
        AppSpan {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: id.into(),
            parent_span_id: Some("00f067aa0ba902b7".into()),
            name: format!("step {id}"),
            service: Some("app".into()),
            kind: 1,
            start_unix_nano: start,
            end_unix_nano: start + 10,
            attributes: serde_json::json!({"db.system": "postgresql", "n": 3})
                .as_object()
                .cloned()
                .unwrap(),
            status: SpanStatus::Ok,
            status_message: None,
        }
    }

    #[test]
    fn spans_come_back_by_trace_sorted_by_start_and_resends_replace() {
        for (backend, store, _db) in crate::testing::stores() {
            let b = span("bbbbbbbbbbbbbbbb", 2_000);
            let a = span("aaaaaaaaaaaaaaaa", 1_000);
            let refused = store
                .insert_app_spans(&[b.clone(), a.clone()], 1, None)
                .unwrap();
            assert_eq!(refused, 0, "{backend}");
            let mut again = b.clone();
            again.status = SpanStatus::Error;
            store.insert_app_spans(&[again.clone()], 2, None).unwrap();
            let conn = store.conn().unwrap();
            let got = spans_for_trace(&conn, "4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
            assert_eq!(got, vec![a, again.clone()], "{backend}");
            assert!(spans_for_trace(&conn, "0".repeat(32).as_str())
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn a_span_is_replaced_only_by_its_owner() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let a = span("aaaaaaaaaaaaaaaa", 1_000);
            assert_eq!(
                insert_spans(&conn, std::slice::from_ref(&a), 1, Some("acme")).unwrap(),
                0
            );
            let mut other = a.clone();
            other.name = "hijacked".into();
            // Another tenant, or the admin key (no owner): refused, the span kept.
            assert_eq!(
                insert_spans(&conn, &[other.clone()], 2, Some("globex")).unwrap(),
                1,
                "{backend}"
            );
            assert_eq!(insert_spans(&conn, &[other.clone()], 2, None).unwrap(), 1);
            let trace = a.trace_id.as_str();
            assert_eq!(spans_for_trace(&conn, trace).unwrap(), vec![a.clone()]);
            // The same owner replaces it.
            assert_eq!(
                insert_spans(&conn, &[other.clone()], 3, Some("acme")).unwrap(),
                0
            );
            assert_eq!(
                spans_for_trace(&conn, trace).unwrap(),
                vec![other],
                "{backend}"
            );
        }
    }

    #[test]
    fn calls_in_a_trace_come_back_earliest_first() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
            let calls: Vec<keel_core::trace::TraceRecord> = [("late", 20), ("early", 10)]
                .into_iter()
                .map(|(id, at)| {
                    let mut t = keel_core::trace::TraceRecord::new(
                        id.into(),
                        at,
                        "openai",
                        "/v1/chat/completions",
                    );
                    t.otel_trace_id = Some(trace.into());
                    t
                })
                .collect();
            crate::trace_row::insert_batch(&conn, &calls).unwrap();
            let got = calls_in_trace(&conn, &trace.to_ascii_uppercase()).unwrap();
            let ids: Vec<&str> = got.iter().map(|t| t.id.as_str()).collect();
            assert_eq!(ids, ["early", "late"], "{backend}");
        }
    }
}
