//! Trace search with a time budget, for the dashboard: on a store of millions of traces
//! a search whose filters match almost nothing (a cost far above any call, a model no
//! call used) would scan the whole window before it could say so. Here the scan stops
//! after a budget and the page shows what was found, newest first, marked incomplete.
//!
//! The query is `list_traces`'s own (`query::select_sql`): indexed, newest first,
//! never sorting the matches, so the rows found before the budget runs out are exactly
//! the newest matches among the traces scanned so far.
//!
//! How the scan is stopped: on SQLite a watchdog thread interrupts the connection; on
//! PostgreSQL the statement runs in a transaction with a `statement_timeout` of the
//! budget, its rows handed over as they arrive, so those sent before the server cancels
//! it are kept.

use std::sync::mpsc;
use std::time::Duration;

use keel_core::trace::TraceRecord;
use rusqlite::{params_from_iter, Connection, ErrorCode};
use tokio_postgres::error::SqlState;

use crate::error::StoreError;
use crate::query::{select_sql, TraceFilter};
use crate::sql::{Db, Row, Value};
use crate::trace_row;

/// What a budgeted search found.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSearch {
    /// Matches, newest first (all of them up to the filter's limit when `complete`).
    pub traces: Vec<TraceRecord>,
    /// False when the budget ran out first: older traces were not all looked at, so
    /// more (older) matches may exist.
    pub complete: bool,
}

/// The traces matching `filter`, newest first, looking for at most `budget`.
pub fn search_traces<'c>(
    db: impl Into<Db<'c>>,
    filter: &TraceFilter,
    budget: Duration,
) -> Result<TraceSearch, StoreError> {
    let (sql, values) = select_sql(filter);
    let (traces, complete) = budgeted(db.into(), &sql, values, budget, trace_row::from_row)?;
    Ok(TraceSearch { traces, complete })
}

/// The rows of `sql`, read until done or until `budget` has passed; true when done.
fn budgeted<T>(
    db: Db<'_>,
    sql: &str,
    values: Vec<Value>,
    budget: Duration,
    map: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<(Vec<T>, bool), StoreError> {
    match db {
        Db::Sqlite(conn) => budgeted_sqlite(conn, sql, values, budget, map),
        Db::Postgres(conn) => {
            // At least 1 ms: a statement_timeout of 0 means none.
            let timeout_ms = budget.as_millis().clamp(1, i64::MAX as u128);
            let mut out = Vec::new();
            let done = db.transaction(|tx| {
                tx.batch(&format!("SET LOCAL statement_timeout = {timeout_ms}"))?;
                conn.query_each(sql, &values, |row| {
                    out.push(map(&Row::Postgres(row))?);
                    Ok(())
                })
            });
            match done {
                Ok(()) => Ok((out, true)),
                Err(StoreError::Postgres(e)) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
                    Ok((out, false))
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// [`budgeted`] on SQLite: a watchdog interrupts the statement once the budget passed.
fn budgeted_sqlite<T>(
    conn: &Connection,
    sql: &str,
    values: Vec<Value>,
    budget: Duration,
    map: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<(Vec<T>, bool), StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let watchdog = Watchdog::start(conn, budget);
    let mut out = Vec::new();
    let result = (|| -> Result<(), StoreError> {
        let mut rows = stmt.query(params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            out.push(map(&Row::Sqlite(row))?);
        }
        Ok(())
    })();
    // Stop the watchdog before anything else runs on this connection.
    let fired = watchdog.stop();
    match result {
        Ok(()) => Ok((out, true)),
        Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
            if e.code == ErrorCode::OperationInterrupted && fired =>
        {
            Ok((out, false))
        }
        Err(e) => Err(e),
    }
}

/// Interrupts the connection's running statement once the budget has passed, unless
/// stopped first. It repeats the interrupt every millisecond until stopped, because an
/// interrupt that lands before the statement starts stepping is a no-op in SQLite.
struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn start(conn: &Connection, budget: Duration) -> Watchdog {
        let handle = conn.get_interrupt_handle();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut wait = budget;
            let mut fired = false;
            // Stopped, or the search ended and dropped the sender: done.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                handle.interrupt();
                fired = true;
                wait = Duration::from_millis(1);
            }
            fired
        });
        Watchdog { stop, thread }
    }

    /// Stop it and wait for it; true when it interrupted the search.
    fn stop(self) -> bool {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::money::Nanos;

    #[test]
    fn a_search_within_budget_is_complete() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let traces: Vec<TraceRecord> = (0..2_000)
                .map(|i| {
                    let mut t =
                        TraceRecord::new(format!("t{i}"), i, "openai", "/v1/chat/completions");
                    t.cost = Some(Nanos(if i == 1_990 { 1_000 } else { 1 }));
                    t
                })
                .collect();
            crate::trace_row::insert_batch(&conn, &traces).unwrap();
            let rare = TraceFilter {
                min_cost_nanos: Some(500),
                ..TraceFilter::default()
            };
            let found = search_traces(&conn, &rare, Duration::from_secs(30)).unwrap();
            assert!(found.complete, "{backend}");
            assert_eq!(found.traces.len(), 1, "{backend}");
            assert_eq!(found.traces[0].id, "t1990", "{backend}");
            let all =
                search_traces(&conn, &TraceFilter::default(), Duration::from_secs(30)).unwrap();
            assert!(all.complete, "{backend}");
            assert_eq!(all.traces.len(), TraceFilter::DEFAULT_LIMIT, "{backend}");
            assert_eq!(all.traces[0].id, "t1999", "{backend}");
        }
    }

    #[test]
    fn a_scan_past_its_budget_stops_with_what_it_found_and_the_connection_still_works() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            // Minutes of work: every 10 millionth number below 10 billion (on
            // PostgreSQL generate_series in the select list, so it streams).
            let slow = match conn.db().dialect() {
                crate::sql::Dialect::Sqlite => {
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10000000000) \
                     SELECT x FROM n WHERE x % 10000000 = 0"
                }
                crate::sql::Dialect::Postgres => {
                    "SELECT x FROM (SELECT generate_series(1, 10000000000) AS x) AS n \
                     WHERE x % 10000000 = 0"
                }
            };
            let started = std::time::Instant::now();
            let (found, complete) = budgeted(
                conn.db(),
                slow,
                Vec::new(),
                Duration::from_millis(300),
                |row| row.get::<i64>(0),
            )
            .unwrap();
            assert!(!complete, "{backend}");
            assert!(started.elapsed() < Duration::from_secs(5), "{backend}");
            // What was found before the stop is what the query yields first, in order.
            let want: Vec<i64> = (1..=found.len() as i64).map(|i| i * 10_000_000).collect();
            assert_eq!(found, want, "{backend}");
            let (again, complete) = budgeted(
                conn.db(),
                "SELECT 1",
                Vec::new(),
                Duration::from_secs(30),
                |row| row.get::<i64>(0),
            )
            .unwrap();
            assert!(complete, "{backend}");
            assert_eq!(again, vec![1], "{backend}");
        }
    }

    #[test]
    fn a_search_past_its_budget_returns_the_newest_matches_found() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            // Ten matches among the newest traces, then nothing older matches: the
            // scan goes on through the (slow, made-up) rest until the budget stops it.
            let traces: Vec<TraceRecord> = (0..3_000)
                .map(|i| {
                    let mut t =
                        TraceRecord::new(format!("t{i}"), i, "openai", "/v1/chat/completions");
                    t.cost = Some(Nanos(1_000));
                    t
                })
                .collect();
            crate::trace_row::insert_batch(&conn, &traces).unwrap();
            let (sql, values) = select_sql(&TraceFilter {
                min_cost_nanos: Some(500),
                ..TraceFilter::default()
            });
            // The same statement, each older trace made to cost a heavy computation
            // (that never holds).
            let heavy = match conn.db().dialect() {
                crate::sql::Dialect::Sqlite => {
                    "(SELECT COUNT(*) FROM (WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL \
                     SELECT x + 1 FROM n WHERE x < 3000000 + traces.started_at_ms * 0) SELECT x FROM n)) < 0"
                }
                crate::sql::Dialect::Postgres => {
                    "(SELECT COUNT(*) FROM generate_series(1, 3000000 + traces.started_at_ms * 0)) < 0"
                }
            };
            let sql = sql.replacen(
                "cost_nanos >= ?1",
                &format!("cost_nanos >= ?1 AND (started_at_ms >= 2990 OR {heavy})"),
                1,
            );
            let started = std::time::Instant::now();
            let (found, complete) =
                budgeted(conn.db(), &sql, values, Duration::from_millis(800), |row| {
                    crate::trace_row::from_row(row)
                })
                .unwrap();
            assert!(!complete, "{backend}");
            assert!(started.elapsed() < Duration::from_secs(5), "{backend}");
            let ids: Vec<String> = found.iter().map(|t| t.id.clone()).collect();
            let want: Vec<String> = (2_990..3_000).rev().map(|i| format!("t{i}")).collect();
            assert_eq!(ids, want, "{backend}");
        }
    }
}
