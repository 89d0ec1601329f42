//! Where PostgreSQL's CPU goes when the trace writer writes a batch: a measurement,
//! not a check, with the row-by-row statements the writer used before for comparison. Each phase of `insert_batch` runs alone on its own batches and the
//! server backend's CPU time (from `/proc`) is divided by the traces written.
//!
//! `cargo test --release -p keel-store --lib pg_trace_write_cost -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keel_core::trace::TraceRecord;

use super::{insert_batch, insert_claiming_ids, params, COLUMNS};
use crate::rollup::{RollupBatch, Sample};
use crate::sql::{Db, Postgres, Value};
use crate::testing::TestDb;
use tokio_postgres::types::Type;

fn pgc(d: Db<'_>) -> &crate::sql::PgConn {
    match d {
        Db::Postgres(c) => c,
        _ => unreachable!(),
    }
}

/// One part of a batch's write, run on its own batches.
type Phase<'a> = dyn Fn(Db<'_>, &[TraceRecord]) + 'a;

const BATCHES: usize = 100;
const SIZE: usize = 100;

fn backend_cpu_us(pid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime, stime (fields 14 and 15; 12 and 13 after the name)
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks * 10_000
}

fn traces(b: usize, at: i64) -> Vec<TraceRecord> {
    (0..SIZE)
        .map(|i| {
            let mut t = TraceRecord::new(
                uuid::Uuid::now_v7().to_string(),
                at + (b * SIZE + i) as i64,
                "openai",
                "/v1/chat/completions",
            );
            t.model_requested = Some("gpt-4o-mini".into());
            t.provider = Some("mock".into());
            t.input =
                Some("{\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}".into());
            t.output = Some("Hello! How can I help you today? This is the mock talking.".into());
            t.input_tokens = Some(12);
            t.output_tokens = Some(14);
            t.cost = Some(keel_core::money::Nanos(1234));
            t.latency_ms = 3;
            t.http_status = 200;
            t
        })
        .collect()
}

#[test]
#[ignore = "a measurement, not a check (see its doc)"]
fn pg_trace_write_cost() {
    let db = TestDb::new();
    let pg = Postgres::open(&db.url()).unwrap();
    let conn = pg.conn().unwrap();
    let d = Db::from(&conn);
    let pid: i64 = d
        .query_row("SELECT pg_backend_pid()::bigint", &[], |r| r.get(0))
        .unwrap();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // warm: partitions, prepared statements
    insert_batch(&conn, &traces(0, at)).unwrap();
    let mut b = 1;
    let ints = [1usize, 15, 18, 19, 20, 21, 22, 23, 24, 25, 27, 34, 39, 45];
    let types: Vec<Type> = (0..47)
        .map(|i| {
            if ints.contains(&i) {
                Type::INT8
            } else {
                Type::TEXT
            }
        })
        .collect();
    let copy_sql = format!("COPY traces ({COLUMNS}, client_request_id) FROM STDIN BINARY");
    // What the writer did before the COPY, for comparison.
    let insert_per_row = format!(
        "INSERT INTO traces ({COLUMNS}, client_request_id) VALUES ({})",
        (1..=47)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let phases: [(&str, &Phase<'_>); 9] = [
        ("whole batch", &|d, t| {
            insert_batch(d, t).unwrap();
        }),
        ("lock + ensure_days", &|d, t| {
            d.transaction(|tx| {
                tx.execute(
                    "SELECT pg_advisory_xact_lock(?1)",
                    &[Value::Int(crate::rollup::TRACE_WRITE_LOCK)],
                )?;
                crate::partitions::ensure_days(tx, t.iter().map(|t| t.started_at_ms), None)
                    .map(|_| ())
            })
            .unwrap();
        }),
        ("claims + copy", &|d, t| {
            d.transaction(|tx| insert_claiming_ids(pgc(tx), t)).unwrap();
        }),
        ("claims per row", &|d, t| {
            d.transaction(|tx| {
                let claims: Vec<Vec<Value>> = t
                    .iter()
                    .map(|t| crate::values![t.id.as_str(), t.started_at_ms])
                    .collect();
                tx.execute_many("INSERT INTO trace_ids (id, started_at_ms) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING", &claims).map(|_| ())
            })
            .unwrap();
        }),
        ("claims unnest", &|d, t| {
            d.transaction(|tx| {
                let ids: Vec<&str> = t.iter().map(|t| t.id.as_str()).collect();
                let at: Vec<i64> = t.iter().map(|t| t.started_at_ms).collect();
                let rows = pgc(tx).query_typed(
                    "INSERT INTO trace_ids (id, started_at_ms) SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT (id) DO NOTHING RETURNING id",
                    &[&ids, &at],
                )?;
                assert_eq!(rows.len(), t.len());
                Ok(())
            })
            .unwrap();
        }),
        ("traces per row", &|d, t| {
            d.transaction(|tx| {
                let sets: Vec<Vec<Value>> = t
                    .iter()
                    .map(|t| params(t, &t.id, None))
                    .collect::<Result<_, _>>()?;
                tx.execute_many(&insert_per_row, &sets).map(|_| ())
            })
            .unwrap();
        }),
        ("traces copy", &|d, t| {
            d.transaction(|tx| {
                let sets: Vec<Vec<Value>> = t
                    .iter()
                    .map(|t| params(t, &t.id, None))
                    .collect::<Result<_, _>>()?;
                pgc(tx).copy_in(&copy_sql, &types, &sets).map(|_| ())
            })
            .unwrap();
        }),
        ("rollups", &|d, t| {
            d.transaction(|tx| {
                let mut r = RollupBatch::default();
                for x in t {
                    r.add(&Sample::of(x));
                }
                crate::rollup::take_write_turn(tx)?;
                r.write(tx, None, false, crate::rollup::StoredRead::PlannedEachTime)
                    .map(|_| ())
            })
            .unwrap();
        }),
        ("empty transaction", &|d, _t| {
            d.transaction(|_tx| Ok(())).unwrap();
        }),
    ];
    for round in 0..2 {
        for (name, phase) in &phases {
            let before = backend_cpu_us(pid);
            let started = std::time::Instant::now();
            for _ in 0..BATCHES {
                let t = traces(b, at);
                b += 1;
                phase(Db::from(&conn), &t);
            }
            let cpu = backend_cpu_us(pid) - before;
            let wall = started.elapsed().as_micros() as u64;
            let n = (BATCHES * SIZE) as f64;
            eprintln!(
                "round {round} {name:>20}: server CPU {:7.1} µs/trace, wall {:7.1} µs/trace",
                cpu as f64 / n,
                wall as f64 / n
            );
        }
    }
}
