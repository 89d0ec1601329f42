//! The trace writer: the only part of the store on the request path.
//!
//! `TraceWriter::record` never blocks and never awaits: it `try_send`s the record on a
//! bounded channel. A dedicated OS thread ("keel-trace-writer") owns the write
//! connection; it takes one record, then whatever else is already queued up to
//! `max_batch`, and writes them in one transaction, so batches grow by themselves under
//! load. Queue length, written, dropped and flush time are counters readable any time.
//!
//! When the queue is full: if `full_wait` is non-zero and a tokio runtime is current, a
//! task waits up to `full_wait` for room; the record is counted as dropped if it still
//! does not fit. Otherwise (no wait configured, no runtime, or already max(`capacity`,
//! 1024) waiters, which keeps memory bounded) it is dropped at once. A dropped record is counted, never silently lost; a failed batch write is
//! logged and its records are counted as dropped.
//!
//! `WriterHandle::shutdown` stops intake, drains every queued record into the store and
//! joins the thread. Records offered after that are counted as dropped.
//!
//! Each batch's transaction also updates the dashboard's rollups (`rollup`); after a
//! batch the writer recomputes the rollups of any day whose traces were deleted or
//! changed behind its back, and hourly it refreshes SQLite's planner statistics.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel_core::trace::TraceRecord;
use rusqlite::Connection;
use serde::Serialize;

use crate::sql::Postgres;
use crate::writer_sink::{Flushed, Sink, StoreHealth};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::db::Store;
use crate::error::StoreError;
use crate::trace_row;

/// Waiters allowed for a full queue, whatever the capacity (see `TraceWriter::record`).
const MIN_WAITERS: usize = 1024;

/// Tuning of the trace writer (`[gateway] trace_queue_capacity`, `trace_batch_max`,
/// `trace_full_wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Records that may wait in the queue; 0 is treated as 1.
    pub capacity: usize,
    /// Most records written in one transaction; 0 is treated as 1.
    pub max_batch: usize,
    /// How long a record may wait for room when the queue is full (zero: drop at once).
    /// Waiting needs a tokio runtime with time enabled (the default of `#[tokio::main]`).
    pub full_wait: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            capacity: 65_536,
            max_batch: 1024,
            full_wait: Duration::from_millis(50),
        }
    }
}

/// A snapshot of the writer's counters (totals since it was spawned).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WriterStats {
    /// Records in the queue now.
    pub queue_len: usize,
    /// Records waiting for room in a full queue now.
    pub waiting: usize,
    pub written_total: u64,
    pub dropped_total: u64,
    /// Batch transactions attempted (successful or not).
    pub flushes_total: u64,
    pub flush_seconds_total: f64,
    pub last_batch_size: usize,
    /// The store could not be reached at the last attempt (PostgreSQL only): traces
    /// wait in the queue while the writer retries.
    pub store_degraded: bool,
}

enum Envelope {
    Trace(Box<TraceRecord>),
    /// Wakes the thread so it sees a shutdown request.
    Wake,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    flushes: AtomicU64,
    flush_nanos: AtomicU64,
    last_batch: AtomicUsize,
    waiting: AtomicUsize,
    health: StoreHealth,
}

impl Counters {
    fn drop_records(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// The request path's handle on the writer. Cheap to clone; `record` never blocks.
#[derive(Clone)]
pub struct TraceWriter {
    tx: mpsc::Sender<Envelope>,
    counters: Arc<Counters>,
    full_wait: Duration,
    max_waiting: usize,
}

impl std::fmt::Debug for TraceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Owns the writer thread; `shutdown` drains and joins it. Dropping the handle without
/// calling `shutdown` detaches the thread: it still writes everything queued, and ends
/// once every `TraceWriter` clone is gone.
#[derive(Debug)]
pub struct WriterHandle {
    wake: mpsc::Sender<Envelope>,
    shutdown: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    counters: Arc<Counters>,
}

/// Start the writer thread on a new write connection to `store`.
pub fn spawn(
    store: &Store,
    opts: WriterOptions,
) -> Result<(TraceWriter, WriterHandle), StoreError> {
    match store.postgres() {
        Some(pg) => spawn_postgres(pg.clone(), opts),
        None => start(Sink::sqlite(store.writer_connection()?), opts),
    }
}

/// Start the writer thread on a PostgreSQL store: a connection of its own to the same
/// database, whose I/O thread runs at the writer's lower priority
/// ([`Postgres::background_twin`]), opened again whenever it is lost (see `writer_sink`).
pub fn spawn_postgres(
    pg: std::sync::Arc<Postgres>,
    opts: WriterOptions,
) -> Result<(TraceWriter, WriterHandle), StoreError> {
    let pg = pg.background_twin()?;
    start(
        Sink::Postgres {
            pg,
            conn: None,
            days: crate::partitions::KnownDays::default(),
        },
        opts,
    )
}

fn start(sink: Sink, opts: WriterOptions) -> Result<(TraceWriter, WriterHandle), StoreError> {
    let capacity = opts.capacity.max(1);
    let max_batch = opts.max_batch.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let counters = Arc::new(Counters::default());
    let shutdown = Arc::new(AtomicBool::new(false));
    let thread = {
        let counters = Arc::clone(&counters);
        let shutdown = Arc::clone(&shutdown);
        std::thread::Builder::new()
            .name("keel-trace-writer".to_string())
            .spawn(move || {
                crate::background::lower_thread_priority();
                run(sink, rx, &counters, &shutdown, max_batch)
            })
            .map_err(StoreError::SpawnWriter)?
    };
    let writer = TraceWriter {
        tx: tx.clone(),
        counters: Arc::clone(&counters),
        full_wait: opts.full_wait,
        max_waiting: capacity.max(MIN_WAITERS),
    };
    let handle = WriterHandle {
        wake: tx,
        shutdown,
        thread,
        counters,
    };
    Ok((writer, handle))
}

impl TraceWriter {
    /// Queue `trace` for writing. Never blocks, never awaits; see the module doc for what
    /// happens when the queue is full.
    pub fn record(&self, trace: TraceRecord) {
        match self.tx.try_send(Envelope::Trace(Box::new(trace))) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => self.counters.drop_records(1),
            Err(TrySendError::Full(envelope)) => self.wait_for_room(envelope),
        }
    }

    fn wait_for_room(&self, envelope: Envelope) {
        if self.full_wait.is_zero() {
            self.counters.drop_records(1);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.counters.drop_records(1);
            return;
        };
        let waiting = self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        if waiting >= self.max_waiting {
            self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
            self.counters.drop_records(1);
            return;
        }
        let waiter = Waiter {
            counters: Arc::clone(&self.counters),
            sent: false,
        };
        let tx = self.tx.clone();
        let wait = self.full_wait;
        runtime.spawn(async move {
            let mut waiter = waiter;
            waiter.sent = tx.send_timeout(envelope, wait).await.is_ok();
        });
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> WriterStats {
        stats(&self.counters, self.queue_len())
    }

    /// Records in the queue now.
    pub fn queue_len(&self) -> usize {
        self.tx.max_capacity().saturating_sub(self.tx.capacity())
    }

    pub fn written_total(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    pub fn dropped_total(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    pub fn flushes_total(&self) -> u64 {
        self.counters.flushes.load(Ordering::Acquire)
    }

    pub fn flush_seconds_total(&self) -> f64 {
        self.counters.flush_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    pub fn last_batch_size(&self) -> usize {
        self.counters.last_batch.load(Ordering::Relaxed)
    }

    /// Whether the store could not be reached at the writer's last attempt.
    pub fn store_degraded(&self) -> bool {
        self.counters.health.degraded()
    }

    /// Why the store could not be reached, while it cannot.
    pub fn store_error(&self) -> Option<String> {
        self.counters.health.last_error()
    }
}

/// Counts a record waiting for room as dropped unless it was sent, even when the
/// runtime shuts down and cancels the wait.
struct Waiter {
    counters: Arc<Counters>,
    sent: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
        if !self.sent {
            self.counters.drop_records(1);
        }
    }
}

impl WriterHandle {
    /// Stop intake, write every record already queued, join the thread and return the
    /// final counters. Blocks: call it from `spawn_blocking` or outside the runtime.
    pub fn shutdown(self) -> WriterStats {
        self.shutdown.store(true, Ordering::SeqCst);
        // If the queue is full the thread is busy and sees the flag after its batch.
        let _ = self.wake.try_send(Envelope::Wake);
        drop(self.wake);
        if self.thread.join().is_err() {
            tracing::error!("the trace writer thread panicked; queued traces were lost");
        }
        stats(&self.counters, 0)
    }

    /// A snapshot of every counter (the same as `TraceWriter::stats`).
    pub fn stats(&self) -> WriterStats {
        let queue_len = self
            .wake
            .max_capacity()
            .saturating_sub(self.wake.capacity());
        stats(&self.counters, queue_len)
    }
}

fn stats(c: &Counters, queue_len: usize) -> WriterStats {
    WriterStats {
        queue_len,
        waiting: c.waiting.load(Ordering::Relaxed),
        written_total: c.written.load(Ordering::Relaxed),
        dropped_total: c.dropped.load(Ordering::Relaxed),
        flushes_total: c.flushes.load(Ordering::Acquire),
        flush_seconds_total: c.flush_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        last_batch_size: c.last_batch.load(Ordering::Relaxed),
        store_degraded: c.health.degraded(),
    }
}

/// How often the writer refreshes the planner's statistics.
const OPTIMIZE_EVERY: Duration = Duration::from_secs(3600);

/// How the writer waits for a small batch to fill before writing it: one transaction
/// per few milliseconds instead of one per request keeps the writer's cost per trace flat
/// as traffic grows. Off the request path: only trace visibility waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Linger {
    /// The longest wait, from the batch's first record.
    pub wait: Duration,
    /// How often the queue is looked at again while waiting.
    pub step: Duration,
    /// The batch is written as soon as it holds this many records.
    pub enough: usize,
}

impl Linger {
    /// SQLite: one look after 25 ms. Each batch costs a transaction and a
    /// read-modify-write of every rollup row it touches (up to 18 per trace); at 5 ms a
    /// moderate load wrote batches of one or two traces, and the writer spent ~60k
    /// instructions per trace (`bench/instructions.sh`).
    pub(crate) const SQLITE: Linger = Linger {
        wait: Duration::from_millis(25),
        step: Duration::from_millis(25),
        enough: usize::MAX,
    };

    /// PostgreSQL: up to 100 ms, but no more than 64 traces. A batch there is 9 round
    /// trips whose fixed cost (parsing and planning each statement, the rollup read, the
    /// commit) is most of the server's work at moderate load: at 1000 calls/s, batches of
    /// ~30 (a 25 ms linger) cost the server ~95 µs of CPU per trace, batches of ~100
    /// ~38 µs. But the server's work on a batch is a burst on a core that may be serving
    /// requests too (the same machine, or a busy shared server): batches of ~200 (100 ms
    /// at 2000 calls/s) raised the gateway's p99, so a batch is written once it holds 64
    /// (`bench/RESULTS.md`, 2026-12-06 19:46-20:05).
    pub(crate) const POSTGRES: Linger = Linger {
        wait: Duration::from_millis(100),
        step: Duration::from_millis(5),
        enough: 64,
    };
}

fn drain_into(rx: &mut mpsc::Receiver<Envelope>, batch: &mut Vec<TraceRecord>, max_batch: usize) {
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(Envelope::Trace(t)) => batch.push(*t),
            Ok(Envelope::Wake) => {}
            Err(_) => break,
        }
    }
}

/// Let a small batch fill as `how` says (see [`Linger`]).
fn linger(
    rx: &mut mpsc::Receiver<Envelope>,
    batch: &mut Vec<TraceRecord>,
    max_batch: usize,
    how: Linger,
) {
    let until = Instant::now() + how.wait;
    let enough = how.enough.min(max_batch);
    while batch.len() < enough {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(how.step.min(left));
        drain_into(rx, batch, max_batch);
    }
}

/// The writer thread: batch, write, repeat; after a shutdown request, close the queue
/// and keep going until it is empty.
fn run(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Envelope>,
    counters: &Counters,
    shutdown: &AtomicBool,
    max_batch: usize,
) {
    let mut batch: Vec<TraceRecord> = Vec::with_capacity(max_batch.min(1024));
    let mut closed = false;
    let mut upkeep = Instant::now();
    loop {
        if !closed && shutdown.load(Ordering::SeqCst) {
            // Refuse new records; blocking_recv still yields everything buffered, then None.
            rx.close();
            closed = true;
        }
        match rx.blocking_recv() {
            Some(Envelope::Trace(t)) => batch.push(*t),
            Some(Envelope::Wake) => {}
            None => break,
        }
        drain_into(&mut rx, &mut batch, max_batch);
        if !closed && !batch.is_empty() {
            linger(&mut rx, &mut batch, max_batch, sink.linger());
        }
        if !batch.is_empty() {
            flush(&mut sink, &mut batch, counters, shutdown);
        }
        if upkeep.elapsed() >= OPTIMIZE_EVERY {
            sink.hourly();
            upkeep = Instant::now();
        }
    }
    tracing::debug!("trace writer stopped");
}

/// Write `traces` now, in one transaction, bypassing the queue: for
/// callers that hold their own connection (other crates' tests, imports).
pub fn write_now(conn: &mut Connection, traces: &[TraceRecord]) -> Result<(), StoreError> {
    trace_row::insert_batch(&*conn, traces)?;
    Ok(())
}

fn flush(
    sink: &mut Sink,
    batch: &mut Vec<TraceRecord>,
    counters: &Counters,
    stopping: &AtomicBool,
) {
    let n = batch.len();
    let started = Instant::now();
    let result = sink.flush(batch, &counters.health, stopping);
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    match result {
        Flushed::Written => {
            counters.written.fetch_add(n as u64, Ordering::Relaxed);
            sink.repair_rollups();
        }
        Flushed::Failed(error) => {
            tracing::error!(%error, records = n, "trace batch could not be written; its traces are dropped");
            counters.drop_records(n as u64);
        }
    }
    counters.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
    counters.last_batch.store(n, Ordering::Relaxed);
    // Last, so whoever sees this flush also sees its written/dropped counts.
    counters.flushes.fetch_add(1, Ordering::Release);
    batch.clear();
}

#[cfg(test)]
mod linger_tests {
    use super::*;

    fn queue(n: usize) -> mpsc::Receiver<Envelope> {
        let (tx, rx) = mpsc::channel(1024);
        for i in 0..n {
            let t = TraceRecord::new(format!("t{i}"), 0, "chat", "/v1/chat/completions");
            tx.try_send(Envelope::Trace(Box::new(t)))
                .unwrap_or_else(|_| unreachable!());
        }
        rx
    }

    #[test]
    fn a_batch_that_holds_enough_is_written_without_waiting_out_the_linger() {
        let mut rx = queue(5);
        let mut batch = Vec::new();
        drain_into(&mut rx, &mut batch, 1024);
        let how = Linger {
            wait: Duration::from_secs(30),
            step: Duration::from_millis(1),
            enough: 5,
        };
        let started = Instant::now();
        linger(&mut rx, &mut batch, 1024, how);
        assert_eq!(batch.len(), 5);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited out the linger"
        );
    }

    #[test]
    fn a_small_batch_waits_out_the_linger_and_takes_what_arrived_meanwhile() {
        let (tx, mut rx) = mpsc::channel(1024);
        let first = TraceRecord::new("a".into(), 0, "chat", "/v1/chat/completions");
        assert!(tx.try_send(Envelope::Trace(Box::new(first))).is_ok());
        let mut batch = Vec::new();
        drain_into(&mut rx, &mut batch, 1024);
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let t = TraceRecord::new("b".into(), 0, "chat", "/v1/chat/completions");
            assert!(tx.try_send(Envelope::Trace(Box::new(t))).is_ok());
            tx
        });
        let started = Instant::now();
        linger(&mut rx, &mut batch, 1024, Linger::POSTGRES);
        assert!(started.elapsed() >= Linger::POSTGRES.wait);
        assert_eq!(
            batch.len(),
            2,
            "the record sent while lingering is in the batch"
        );
        drop(late.join());
    }

    #[test]
    fn max_batch_caps_what_is_enough() {
        let mut rx = queue(3);
        let mut batch = Vec::new();
        drain_into(&mut rx, &mut batch, 3);
        let started = Instant::now();
        linger(&mut rx, &mut batch, 3, Linger::SQLITE);
        assert_eq!(batch.len(), 3);
        assert!(
            started.elapsed() < Linger::SQLITE.wait,
            "a full batch does not linger"
        );
    }
}
