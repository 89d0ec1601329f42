//! Where the trace writer's batches go: a SQLite connection it owns, or a PostgreSQL
//! pool it may lose and get back.
//!
//! SQLite is a local file: a batch that fails to write is a bad batch, logged and
//! counted as dropped. PostgreSQL is a server that can restart, fail over or be
//! unreachable for a while: a batch that fails for that reason is kept and retried
//! with back-off (0.1 s doubling to 5 s) while the queue absorbs what arrives, so
//! nothing is lost that the queue can hold; past that, `record` drops and counts as it
//! always does. Meanwhile the writer reports the store degraded (`/health`). A batch
//! the server refuses for what it holds (a constraint, a type) is not retried.
//! On shutdown a batch is retried for at most [`SHUTDOWN_RETRY`] before it is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_core::trace::TraceRecord;
use rusqlite::Connection;

use crate::error::StoreError;
use crate::partitions::{is_missing_partition, KnownDays};
use crate::rollup_cache::RollupCache;
use crate::sql::{PgConn, Postgres};
use crate::trace_row;
use crate::writer::Linger;

/// First and longest wait between attempts to reach PostgreSQL again.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a shutting-down writer keeps retrying a batch PostgreSQL did not take.
pub(crate) const SHUTDOWN_RETRY: Duration = Duration::from_secs(10);

/// The store's state as the writer last found it, shared with `/health`.
#[derive(Debug, Default)]
pub(crate) struct StoreHealth {
    degraded: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl StoreHealth {
    pub(crate) fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set(&self, error: Option<String>) {
        self.degraded.store(error.is_some(), Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = error;
        }
    }
}

/// What a flush came to.
pub(crate) enum Flushed {
    Written,
    /// Not written and not to be retried (counted as dropped).
    Failed(StoreError),
}

pub(crate) enum Sink {
    Sqlite {
        conn: Connection,
        /// The rollup rows of the last batch (`rollup_cache`).
        rollups: RollupCache,
    },
    Postgres {
        pg: Arc<Postgres>,
        conn: Option<PgConn>,
        /// The days whose partitions exist (`partitions::KnownDays`).
        days: KnownDays,
    },
}

impl Sink {
    /// How the writer lets a small batch fill before writing it here.
    pub(crate) fn linger(&self) -> Linger {
        match self {
            Sink::Sqlite { .. } => Linger::SQLITE,
            Sink::Postgres { .. } => Linger::POSTGRES,
        }
    }

    /// Write `batch` in one transaction. On PostgreSQL, keep trying while the server
    /// cannot be reached (until `stopping` is set and [`SHUTDOWN_RETRY`] has passed).
    pub(crate) fn flush(
        &mut self,
        batch: &[TraceRecord],
        health: &StoreHealth,
        stopping: &AtomicBool,
    ) -> Flushed {
        match self {
            Sink::Sqlite { conn, rollups } => {
                match trace_row::insert_batch_cached(&*conn, batch, Some(rollups), None) {
                    Ok(()) => Flushed::Written,
                    Err(e) => Flushed::Failed(e),
                }
            }
            Sink::Postgres { pg, conn, days } => {
                let mut backoff = BACKOFF_FIRST;
                let mut stop_deadline: Option<Instant> = None;
                let mut days_rechecked = false;
                loop {
                    let result = connected(pg, conn).and_then(|c| {
                        trace_row::insert_batch_cached(c, batch, None, Some(&mut *days))
                    });
                    match result {
                        Ok(()) => {
                            if health.degraded() {
                                tracing::info!(
                                    store = pg.shown_url(),
                                    "PostgreSQL store reachable again; trace writes resumed"
                                );
                                health.set(None);
                            }
                            return Flushed::Written;
                        }
                        Err(e) if is_unavailable(&e) => {
                            if !health.degraded() {
                                tracing::warn!(store = pg.shown_url(), error = %e, records = batch.len(), "PostgreSQL store unreachable; traces wait in the queue while the writer retries");
                            }
                            health.set(Some(e.to_string()));
                            *conn = None;
                            if stopping.load(Ordering::SeqCst) {
                                let deadline = *stop_deadline
                                    .get_or_insert_with(|| Instant::now() + SHUTDOWN_RETRY);
                                if Instant::now() >= deadline {
                                    return Flushed::Failed(e);
                                }
                            }
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                        // A day it knew was detached since: forget the days, check
                        // them again (once).
                        Err(e) if !days_rechecked && is_missing_partition(&e) => {
                            tracing::info!(error = %e, "a day's trace partition is gone (detached?); making it again");
                            days.forget();
                            days_rechecked = true;
                        }
                        Err(e) => return Flushed::Failed(e),
                    }
                }
            }
        }
    }

    /// A sink writing to the SQLite connection `conn`.
    pub(crate) fn sqlite(conn: Connection) -> Sink {
        Sink::Sqlite {
            conn,
            rollups: RollupCache::default(),
        }
    }

    /// Recompute rollups of days whose traces changed behind the writer's back.
    pub(crate) fn repair_rollups(&mut self) {
        let result = match self {
            Sink::Sqlite { conn, rollups } => {
                let repaired = crate::rollup::repair(&*conn);
                // Days recomputed (or a failed attempt): the cached rows may be stale.
                if !matches!(repaired, Ok(0)) {
                    rollups.clear();
                }
                repaired
            }
            Sink::Postgres { pg, conn, .. } => connected(pg, conn).and_then(crate::rollup::repair),
        };
        match result {
            Ok(0) => {}
            Ok(days) => tracing::info!(days, "trace rollups recomputed after traces changed"),
            Err(error) => {
                tracing::warn!(%error, "trace rollups could not be recomputed; retrying after the next batch")
            }
        }
    }

    /// Hourly upkeep: SQLite's planner statistics follow the store's growth (it
    /// re-analyzes only the tables that changed a lot, on a sample), so searches keep
    /// their indexes. PostgreSQL's autovacuum does this itself.
    pub(crate) fn hourly(&mut self) {
        if let Sink::Sqlite { conn, .. } = self {
            if let Err(error) = conn.execute_batch("PRAGMA optimize") {
                tracing::debug!(%error, "PRAGMA optimize failed");
            }
        }
    }
}

/// The writer's PostgreSQL connection, opened (again) when it has none or lost it.
fn connected<'a>(
    pg: &Arc<Postgres>,
    conn: &'a mut Option<PgConn>,
) -> Result<&'a PgConn, StoreError> {
    let open = match conn.take() {
        Some(c) if !c.is_closed() => c,
        _ => pg.conn()?,
    };
    Ok(conn.insert(open))
}

/// Whether `e` says the server could not be reached or is not taking work now (so the
/// batch is worth retrying), rather than that it refused the batch itself.
pub(crate) fn is_unavailable(e: &StoreError) -> bool {
    match e {
        StoreError::PostgresPool { .. } => true,
        StoreError::Postgres(e) => match e.code() {
            // No SQLSTATE: the connection broke or closed.
            None => true,
            // 08 connection exception, 53 insufficient resources, 57 operator
            // intervention (shutdown, cancel, lock timeout), 40 rolled back.
            Some(code) => ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.code().starts_with(class)),
        },
        _ => false,
    }
}
