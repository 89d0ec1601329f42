#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The trace writer as the gateway uses it: records from many tasks all land, a full
//! queue counts drops instead of blocking, shutdown drains, failures are counted.
//!
//! Tests that need the writer stuck hold a write lock from another connection on a file
//! store (busy_timeout applies there; a shared-cache in-memory store would fail the batch
//! at once instead of waiting).

use std::time::{Duration, Instant};

use keel_core::trace::TraceRecord;
use keel_store::{count_traces, spawn, Connection, Store, WriterOptions};

fn trace(i: usize) -> TraceRecord {
    let mut t = TraceRecord::new(
        format!("req-{i}"),
        1_700_000_000_000 + i as i64,
        "openai",
        "/v1/chat/completions",
    );
    t.model_requested = Some("gpt-4o-mini".into());
    t.latency_ms = 10;
    t
}

/// A file store and a second connection holding its write lock.
fn locked_file_store(dir: &tempfile::TempDir) -> (Store, Connection) {
    let path = dir.path().join("keel.db");
    let store = Store::open(path.to_str().unwrap()).unwrap();
    let blocker = Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    (store, blocker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_from_many_tasks_all_land() {
    let store = Store::open(":memory:").unwrap();
    let (writer, handle) = spawn(&store, WriterOptions::default()).unwrap();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..1250 {
                writer.record(trace(task * 1250 + i));
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
    assert_eq!(stats.written_total, 10_000);
    assert_eq!(stats.dropped_total, 0);
    assert_eq!(stats.queue_len, 0);
    assert!(
        stats.flushes_total >= 10,
        "batches are at most 1024: {stats:?}"
    );
    assert!(stats.last_batch_size >= 1);
    assert_eq!(count_traces(&store.reader().unwrap()).unwrap(), 10_000);
    assert_eq!(writer.written_total(), 10_000);
    assert_eq!(writer.stats().written_total, 10_000);
}

#[test]
fn a_full_queue_without_wait_counts_drops_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blocker) = locked_file_store(&dir);
    let opts = WriterOptions {
        capacity: 2,
        max_batch: 1,
        full_wait: Duration::ZERO,
    };
    let (writer, handle) = spawn(&store, opts).unwrap();
    let started = Instant::now();
    for i in 0..50 {
        writer.record(trace(i));
    }
    // 50 try_sends against a 2-slot queue: no waiting for the stuck writer.
    assert!(started.elapsed() < Duration::from_secs(2));
    // At most one in the writer's hands and two queued.
    let dropped = writer.dropped_total();
    assert!(dropped >= 47, "dropped {dropped}");
    assert!(writer.queue_len() <= 2);

    blocker.execute_batch("COMMIT").unwrap();
    let stats = handle.shutdown();
    assert_eq!(stats.written_total + stats.dropped_total, 50, "{stats:?}");
    assert_eq!(
        count_traces(&store.reader().unwrap()).unwrap(),
        stats.written_total
    );
}

#[test]
fn without_a_runtime_a_full_queue_drops_even_with_full_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blocker) = locked_file_store(&dir);
    let opts = WriterOptions {
        capacity: 1,
        max_batch: 1,
        full_wait: Duration::from_millis(50),
    };
    let (writer, handle) = spawn(&store, opts).unwrap();
    for i in 0..10 {
        writer.record(trace(i));
    }
    assert!(writer.dropped_total() >= 8);
    blocker.execute_batch("COMMIT").unwrap();
    let stats = handle.shutdown();
    assert_eq!(stats.written_total + stats.dropped_total, 10, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_wait_lets_a_burst_through_a_small_queue() {
    let store = Store::open(":memory:").unwrap();
    let opts = WriterOptions {
        capacity: 4,
        max_batch: 4,
        full_wait: Duration::from_secs(5),
    };
    let (writer, handle) = spawn(&store, opts).unwrap();
    for i in 0..200 {
        writer.record(trace(i));
    }
    // The overflow waits for room instead of being dropped.
    while writer.written_total() + writer.dropped_total() < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
    assert_eq!(stats.dropped_total, 0, "{stats:?}");
    assert_eq!(stats.written_total, 200);
    assert_eq!(stats.waiting, 0);
}

#[test]
fn shutdown_drains_the_queue_and_later_records_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blocker) = locked_file_store(&dir);
    let opts = WriterOptions {
        capacity: 1000,
        max_batch: 64,
        full_wait: Duration::ZERO,
    };
    let (writer, handle) = spawn(&store, opts).unwrap();
    for i in 0..500 {
        writer.record(trace(i));
    }
    assert!(writer.queue_len() > 0);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        blocker.execute_batch("COMMIT").unwrap();
    });
    let stats = handle.shutdown();
    releaser.join().unwrap();
    assert_eq!(stats.written_total, 500, "{stats:?}");
    assert_eq!(stats.dropped_total, 0);
    assert_eq!(count_traces(&store.reader().unwrap()).unwrap(), 500);

    writer.record(trace(9999));
    assert_eq!(writer.dropped_total(), 1);
    assert_eq!(count_traces(&store.reader().unwrap()).unwrap(), 500);
}

#[test]
fn a_failed_batch_is_counted_and_the_writer_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let store = Store::open(path.to_str().unwrap()).unwrap();
    let (writer, handle) = spawn(&store, WriterOptions::default()).unwrap();
    // Take the table away from under the writer, then give it back.
    let admin = Connection::open(&path).unwrap();
    admin
        .execute_batch("ALTER TABLE traces RENAME TO traces_away")
        .unwrap();
    writer.record(trace(1));
    while writer.flushes_total() < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(writer.dropped_total(), 1);
    assert_eq!(writer.written_total(), 0);
    admin
        .execute_batch("ALTER TABLE traces_away RENAME TO traces")
        .unwrap();
    writer.record(trace(2));
    let stats = handle.shutdown();
    assert_eq!(stats.written_total, 1, "{stats:?}");
    assert_eq!(stats.dropped_total, 1);
    assert_eq!(count_traces(&store.reader().unwrap()).unwrap(), 1);
}
