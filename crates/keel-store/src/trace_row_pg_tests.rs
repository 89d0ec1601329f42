//! The PostgreSQL trace insert (`COPY` after one claim of the batch's ids) stores what
//! the row-by-row insert did: every column as the table types it, a repeated or taken
//! id moved to a fresh one with the caller's kept, rollups equal to a rebuild.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keel_core::money::Nanos;
use keel_core::trace::TraceRecord;

use super::{insert_batch, PG_COLUMN_TYPES};
use crate::rollup::{all_rows, rebuild_all};
use crate::sql::{Db, Postgres};
use crate::testing::TestDb;

/// 2026-11-01T00:00:05Z.
const T0: i64 = 1_761_955_205_000;

fn call(id: &str, at: i64) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.model_requested = Some("m1".into());
    t.tenant = Some("acme".into());
    t.input = Some("héllo, \"world\"\n\t\\".into());
    t.input_tokens = Some(10);
    t.output_tokens = Some(4);
    t.cost = Some(Nanos(1_500));
    t.latency_ms = 20;
    t.ttft_ms = Some(7);
    t.stream = true;
    t.tags = vec!["a".into(), "b".into()];
    t
}

#[test]
fn the_copy_sends_each_column_as_the_table_types_it() {
    let db = TestDb::new();
    let pg = Postgres::open(&db.url()).unwrap();
    let conn = pg.conn().unwrap();
    let mut columns: Vec<String> = super::COLUMNS
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_string())
        .collect();
    columns.push("client_request_id".to_string());
    assert_eq!(columns.len(), PG_COLUMN_TYPES.len());
    for (column, ty) in columns.iter().zip(PG_COLUMN_TYPES.iter()) {
        let stored: String = Db::from(&conn)
            .query_row(
                "SELECT data_type FROM information_schema.columns \
                 WHERE table_name = 'traces' AND column_name = ?1",
                &[column.as_str().into()],
                |r| r.get(0),
            )
            .unwrap();
        let expected = match ty.name() {
            "int8" => "bigint",
            other => other,
        };
        assert_eq!(stored, expected, "column {column}");
    }
}

#[test]
fn a_repeated_or_taken_id_moves_to_a_fresh_one_and_every_value_round_trips() {
    let db = TestDb::new();
    let pg = Postgres::open(&db.url()).unwrap();
    let conn = pg.conn().unwrap();
    insert_batch(&conn, &[call("taken", T0)]).unwrap();
    let mut second = call("dup", T0 + 1);
    second.latency_ms = 21;
    let mut taken = call("taken", T0 + 2);
    taken.latency_ms = 22;
    insert_batch(
        &conn,
        &[call("dup", T0), second, taken, call("new", T0 + 3)],
    )
    .unwrap();

    let d = Db::from(&conn);
    let rows: Vec<(String, Option<String>, i64)> = d
        .query(
            "SELECT id, client_request_id, latency_ms FROM traces ORDER BY rowid",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!((rows[1].0.as_str(), rows[1].1.as_deref()), ("dup", None));
    assert_ne!(rows[2].0, "dup", "the batch's second 'dup' gets a fresh id");
    assert_eq!((rows[2].1.as_deref(), rows[2].2), (Some("dup"), 21));
    assert_ne!(rows[3].0, "taken");
    assert_eq!((rows[3].1.as_deref(), rows[3].2), (Some("taken"), 22));
    assert_eq!(rows[4].0, "new");
    let claimed: i64 = d
        .query_row("SELECT COUNT(*) FROM trace_ids", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(claimed, 5, "every stored trace holds its id");

    let back = crate::query::get_trace(d, "new").unwrap().unwrap();
    let mut expected = call("new", T0 + 3);
    expected.status = back.status;
    assert_eq!(back, expected);

    let written = all_rows(d).unwrap();
    rebuild_all(d).unwrap();
    assert_eq!(
        written,
        all_rows(d).unwrap(),
        "rollups equal a rebuild from the traces"
    );
}

/// Rows of `trace_rollups` read so far by sequential scans, and fetched by index scans
/// (statistics of this connection flushed first).
fn rollup_rows_read(d: Db<'_>) -> (i64, i64) {
    d.query_row("SELECT pg_stat_force_next_flush()::text", &[], |r| {
        r.get::<String>(0)
    })
    .unwrap();
    d.execute("SELECT pg_stat_clear_snapshot()", &[]).unwrap();
    d.query_row(
        "SELECT COALESCE(seq_tup_read, 0), COALESCE(idx_tup_fetch, 0) FROM pg_stat_user_tables \
         WHERE relname = 'trace_rollups'",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[test]
fn the_rollup_read_probes_its_keys_however_the_table_grew_since_it_was_first_run() {
    let db = TestDb::new();
    let pg = Postgres::open(&db.url()).unwrap();
    let conn = pg.conn().unwrap();
    let d = Db::from(&conn);
    // Batches while the table is tiny: a cached statement settles on a generic plan
    // after five runs (then a hash join over a scan of every row).
    for i in 0..8 {
        insert_batch(&conn, &[call(&format!("warm-{i}"), T0 + i)]).unwrap();
    }
    // The table grows (as months of buckets would) without an ANALYZE.
    d.execute(
        "INSERT INTO trace_rollups (res_ms, origin, dim, bucket_ms, value, requests, errors, \
         input_tokens, output_tokens, calls_with_usage, cost_nanos, unpriced, latency_hist, \
         ttft_hist) \
         SELECT 60000, 'live', 'model', g::bigint * 60000, 'old', 1, 0, 0, 0, 0, 0, 0, ''::bytea, \
         ''::bytea FROM generate_series(1, 50000) g",
        &[],
    )
    .unwrap();
    let (scanned_before, fetched_before) = rollup_rows_read(d);
    insert_batch(&conn, &[call("after", T0 + 100)]).unwrap();
    let (scanned, fetched) = rollup_rows_read(d);
    let (scanned, fetched) = (scanned - scanned_before, fetched - fetched_before);
    assert!(
        scanned < 50_000,
        "a batch's rollup read scanned {scanned} rows of trace_rollups"
    );
    // A nested loop over a whole index (not a probe per key) would fetch every row.
    assert!(
        fetched < 1_000,
        "a batch's rollup read fetched {fetched} rows of trace_rollups by index"
    );
}
