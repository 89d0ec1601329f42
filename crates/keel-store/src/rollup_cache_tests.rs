//! The writer's rollup cache saves reads and never a count: after every sequence of
//! batches — with other connections or the writer itself changing the rollups in
//! between — the rows equal a rebuild from the traces.

use keel_core::trace::TraceRecord;

use super::RollupCache;
use crate::rollup::{all_rows, rebuild_all};
use crate::trace_row::insert_batch_cached;
use crate::writer_sink::{Flushed, Sink, StoreHealth};
use crate::Store;

/// Five minutes and one second after a UTC day's start, so batches share buckets.
const T0: i64 = 1_764_979_201_000;

fn call(id: &str, at: i64, model: &str) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.model_requested = Some(model.into());
    t.tenant = Some("acme".into());
    t.input_tokens = Some(10);
    t.output_tokens = Some(4);
    t.latency_ms = 20;
    t
}

fn batch(prefix: &str, n: usize) -> Vec<TraceRecord> {
    (0..n)
        .map(|i| call(&format!("{prefix}{i}"), T0 + i as i64, "m1"))
        .collect()
}

/// A file store (the writer's real case) and its writer connection.
fn file_store(dir: &tempfile::TempDir) -> (Store, rusqlite::Connection) {
    let path = dir.path().join("keel.db");
    let store = Store::open(path.to_str().unwrap()).unwrap();
    let conn = store.writer_connection().unwrap();
    (store, conn)
}

/// The rollups equal what a rebuild from the traces makes.
fn assert_exact(store: &Store, what: &str) {
    let conn = store.conn().unwrap();
    let kept = all_rows(&conn).unwrap();
    conn.db().transaction(|tx| rebuild_all(tx)).unwrap();
    let rebuilt = all_rows(&conn).unwrap();
    assert_eq!(kept.len(), rebuilt.len(), "{what}: row count");
    assert!(kept == rebuilt, "{what}: rows differ from a rebuild");
}

#[test]
fn a_batch_reads_back_only_the_rows_the_last_one_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = file_store(&dir);
    let mut cache = RollupCache::default();
    insert_batch_cached(&w, &batch("a", 3), Some(&mut cache), None).unwrap();
    assert_eq!(cache.hits(), 0, "nothing known before the first batch");
    let first_rows = cache.rows.len() as u64;
    assert!(first_rows > 0);
    insert_batch_cached(&w, &batch("b", 3), Some(&mut cache), None).unwrap();
    assert_eq!(
        cache.hits(),
        first_rows,
        "the same buckets: every row known"
    );
    // A new model adds rows the cache cannot know: those are read (and are new).
    insert_batch_cached(&w, &[call("c", T0, "m2")], Some(&mut cache), None).unwrap();
    assert!(cache.hits() > first_rows);
    assert_exact(&store, "after three batches");
}

#[test]
fn a_commit_by_another_connection_drops_what_the_cache_knew() {
    for in_memory in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (store, w) = if in_memory {
            let store = Store::open(":memory:").unwrap();
            let w = store.writer_connection().unwrap();
            (store, w)
        } else {
            file_store(&dir)
        };
        let mut cache = RollupCache::default();
        insert_batch_cached(&w, &batch("a", 4), Some(&mut cache), None).unwrap();
        // What `keel traces purge` does from another connection (or process): delete
        // traces, recompute their day's rollups.
        let other = store.conn().unwrap();
        other
            .db()
            .batch("DELETE FROM traces WHERE id IN ('a0', 'a1')")
            .unwrap();
        other
            .db()
            .transaction(|tx| crate::rollup::rebuild_dirty(tx))
            .unwrap();
        let hits = cache.hits();
        insert_batch_cached(&w, &batch("b", 2), Some(&mut cache), None).unwrap();
        assert_eq!(cache.hits(), hits, "in_memory={in_memory}: stale rows used");
        assert_exact(&store, &format!("in_memory={in_memory}"));
    }
}

#[test]
fn days_the_writer_recomputes_itself_drop_what_the_cache_knew() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let store = Store::open(path.to_str().unwrap()).unwrap();
    let mut sink = Sink::sqlite(store.writer_connection().unwrap());
    let health = StoreHealth::default();
    let stopping = std::sync::atomic::AtomicBool::new(false);
    let write = |sink: &mut Sink, traces: Vec<TraceRecord>| {
        assert!(matches!(
            sink.flush(&traces, &health, &stopping),
            Flushed::Written
        ));
    };
    write(&mut sink, batch("a", 4));
    // A delete on the writer's own connection: no other connection committed, so only
    // the writer's repair can tell the cache.
    if let Sink::Sqlite { conn, .. } = &sink {
        conn.execute_batch("DELETE FROM traces WHERE id = 'a3'")
            .unwrap();
    }
    sink.repair_rollups();
    write(&mut sink, batch("b", 2));
    assert_exact(&store, "after the writer's own repair");
}

/// What the cache saves, measured rather than asserted: batches of 16 traces into a
/// file store, with the cache and without, interleaved, in µs per batch; under
/// callgrind, `ROLLUP_CACHE=on|off` runs one mode (instructions per batch). Run:
/// `cargo test --release -p keel-store --lib rollup_cache_cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check (see its doc)"]
fn rollup_cache_cost() {
    const BATCHES: usize = 400;
    const SIZE: usize = 16;
    let modes: Vec<bool> = match std::env::var("ROLLUP_CACHE").as_deref() {
        Ok("on") => vec![true],
        Ok("off") => vec![false],
        _ => vec![false, true, false, true, false, true],
    };
    for cached in modes {
        let dir = tempfile::tempdir().unwrap();
        let (_store, w) = file_store(&dir);
        let mut cache = RollupCache::default();
        let started = std::time::Instant::now();
        for b in 0..BATCHES {
            let traces: Vec<TraceRecord> = (0..SIZE)
                .map(|i| {
                    let mut t = call(&format!("b{b}-{i}"), T0 + (b * SIZE + i) as i64, "m1");
                    t.feature = Some(format!("f{}", i % 3));
                    t
                })
                .collect();
            insert_batch_cached(&w, &traces, cached.then_some(&mut cache), None).unwrap();
        }
        let per_batch = started.elapsed().as_secs_f64() * 1e6 / BATCHES as f64;
        eprintln!(
            "cache {}: {per_batch:.0} µs per batch of {SIZE} ({} rows from the cache)",
            if cached { "on " } else { "off" },
            cache.hits()
        );
    }
}
