//! Numbered schema migrations, the only way the store's schema changes.
//!
//! Each migration is a SQL file under `migrations/`, compiled into the binary, applied
//! once, in order, each in its own transaction, and recorded in `schema_migrations`.
//! Opening a store written by a newer keel (a version this binary does not know) is
//! refused rather than guessed at.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::StoreError;

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, in order. Append only: never edit a released one.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_traces",
        sql: include_str!("../migrations/0001_traces.sql"),
    },
    Migration {
        version: 2,
        name: "0002_trace_filter_indexes",
        sql: include_str!("../migrations/0002_trace_filter_indexes.sql"),
    },
    Migration {
        version: 3,
        name: "0003_partial_filter_indexes",
        sql: include_str!("../migrations/0003_partial_filter_indexes.sql"),
    },
    Migration {
        version: 4,
        name: "0004_prompts",
        sql: include_str!("../migrations/0004_prompts.sql"),
    },
    Migration {
        version: 5,
        name: "0005_functions_and_releases",
        sql: include_str!("../migrations/0005_functions_and_releases.sql"),
    },
    Migration {
        version: 6,
        name: "0006_replays",
        sql: include_str!("../migrations/0006_replays.sql"),
    },
    Migration {
        version: 7,
        name: "0007_evals",
        sql: include_str!("../migrations/0007_evals.sql"),
    },
    Migration {
        version: 8,
        name: "0008_attempts",
        sql: include_str!("../migrations/0008_attempts.sql"),
    },
    Migration {
        version: 9,
        name: "0009_cache",
        sql: include_str!("../migrations/0009_cache.sql"),
    },
    Migration {
        version: 10,
        name: "0010_shadow",
        sql: include_str!("../migrations/0010_shadow.sql"),
    },
    Migration {
        version: 11,
        name: "0011_governance",
        sql: include_str!("../migrations/0011_governance.sql"),
    },
    Migration {
        version: 12,
        name: "0012_guardrails",
        sql: include_str!("../migrations/0012_guardrails.sql"),
    },
    Migration {
        version: 13,
        name: "0013_function_splits",
        sql: include_str!("../migrations/0013_function_splits.sql"),
    },
    Migration {
        version: 14,
        name: "0014_otel",
        sql: include_str!("../migrations/0014_otel.sql"),
    },
    Migration {
        version: 15,
        name: "0015_rollups",
        sql: include_str!("../migrations/0015_rollups.sql"),
    },
    Migration {
        version: 16,
        name: "0016_playground_drafts",
        sql: include_str!("../migrations/0016_playground_drafts.sql"),
    },
    Migration {
        version: 17,
        name: "0017_usage_estimated",
        sql: include_str!("../migrations/0017_usage_estimated.sql"),
    },
    Migration {
        version: 18,
        name: "0018_unique_trace_ids_and_span_owners",
        sql: include_str!("../migrations/0018_unique_trace_ids_and_span_owners.sql"),
    },
    Migration {
        version: 19,
        name: "0019_scores_and_feedback",
        sql: include_str!("../migrations/0019_scores_and_feedback.sql"),
    },
    Migration {
        version: 20,
        name: "0020_feedback_value_kind",
        sql: include_str!("../migrations/0020_feedback_value_kind.sql"),
    },
    Migration {
        version: 21,
        name: "0021_scores_created",
        sql: include_str!("../migrations/0021_scores_created.sql"),
    },
    Migration {
        version: 22,
        name: "0022_review_queues",
        sql: include_str!("../migrations/0022_review_queues.sql"),
    },
    Migration {
        version: 23,
        name: "0023_dataset_versions_and_drafts",
        sql: include_str!("../migrations/0023_dataset_versions_and_drafts.sql"),
    },
    Migration {
        version: 24,
        name: "0024_model_versions",
        sql: include_str!("../migrations/0024_model_versions.sql"),
    },
    Migration {
        version: 25,
        name: "0025_incidents_and_switches",
        sql: include_str!("../migrations/0025_incidents_and_switches.sql"),
    },
    Migration {
        version: 26,
        name: "0026_canaries",
        sql: include_str!("../migrations/0026_canaries.sql"),
    },
    Migration {
        version: 27,
        name: "0027_responses",
        sql: include_str!("../migrations/0027_responses.sql"),
    },
    Migration {
        version: 28,
        name: "0028_retention",
        sql: include_str!("../migrations/0028_retention.sql"),
    },
    Migration {
        version: 29,
        name: "0029_traces_by_day",
        sql: include_str!("../migrations/0029_traces_by_day.sql"),
    },
];

/// The step of a migration that SQL alone cannot do, run in the same transaction right
/// after its SQL (so a failure rolls back both). Keyed by version, so `Migration` stays
/// plain data.
fn rust_step(tx: &rusqlite::Transaction<'_>, version: u32) -> rusqlite::Result<()> {
    if version == 15 {
        // The histograms are computed in Rust (histogram.rs); a large store takes a
        // while here, once.
        let traces = crate::rollup::rebuild_all(tx).map_err(crate::error::into_sqlite)?;
        if traces > 0 {
            tracing::info!(traces, "trace rollups backfilled");
        }
    }
    Ok(())
}

/// The schema version this binary writes.
pub(crate) fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The highest version recorded in the store (0 for an empty database).
pub(crate) fn current_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )
}

/// Bring the store at `path` up to the last of `migrations`; returns the versions applied
/// now (empty when it was already up to date).
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &str,
    migrations: &[Migration],
) -> Result<Vec<u32>, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_string(),
        source,
    };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY NOT NULL,
            name       TEXT    NOT NULL,
            applied_at TEXT    NOT NULL
        )",
    )
    .map_err(open_err)?;

    let found = current_version(conn).map_err(open_err)?;
    let supported = latest_version();
    if found > supported {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found,
            supported,
        });
    }

    // Every migration not yet recorded, not only those above the highest: numbers taken
    // by parallel branches may land out of order (0016 before 0015), and each must still
    // be applied exactly once.
    let recorded: Vec<u32> = {
        let mut stmt = conn
            .prepare("SELECT version FROM schema_migrations")
            .map_err(open_err)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(open_err)?;
        rows.collect::<Result<_, _>>().map_err(open_err)?
    };
    let mut applied = Vec::new();
    for m in migrations.iter().filter(|m| !recorded.contains(&m.version)) {
        let mig_err = |source| StoreError::Migration {
            path: path.to_string(),
            version: m.version,
            name: m.name,
            source,
        };
        // IMMEDIATE: two processes opening the same new store must not both apply it.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(mig_err)?;
        let already: Option<u32> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [m.version],
                |row| row.get(0),
            )
            .optional()
            .map_err(mig_err)?;
        if already.is_some() {
            continue;
        }
        tx.execute_batch(m.sql).map_err(mig_err)?;
        rust_step(&tx, m.version).map_err(mig_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at)
             VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (m.version, m.name),
        )
        .map_err(mig_err)?;
        tx.commit().map_err(mig_err)?;
        applied.push(m.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(conn: &Connection) -> Vec<u32> {
        let mut stmt = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn index_names(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'traces' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn migrations_are_numbered_in_order_and_named_after_their_files() {
        // Consecutive from 1 (`migrate` would still apply a missing lower version late,
        // but the list itself has no gaps).
        let mut previous = 0;
        for m in MIGRATIONS {
            assert_eq!(
                m.version,
                previous + 1,
                "{} out of order or leaves a gap",
                m.name
            );
            previous = m.version;
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
        }
        assert_eq!(latest_version(), MIGRATIONS.last().map_or(0, |m| m.version));
    }

    #[test]
    fn empty_database_gets_every_migration_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        let applied = migrate(&mut conn, "mem", MIGRATIONS).unwrap();
        let all: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(applied, all);
        assert_eq!(versions(&conn), all);
        let idx = index_names(&conn);
        for name in [
            "traces_started_at",
            "traces_model_time",
            "traces_tenant_time",
            "traces_feature_time",
            "traces_user_time",
            "traces_session_time",
            "traces_error_time",
            "traces_key_time",
        ] {
            assert!(
                idx.iter().any(|i| i == name),
                "missing index {name}: {idx:?}"
            );
        }

        // 0003 replaced 0002's full indexes with partial ones.
        assert!(!idx
            .iter()
            .any(|i| i == "traces_status" || i == "traces_tenant"));

        // Running again is a no-op.
        let applied = migrate(&mut conn, "mem", MIGRATIONS).unwrap();
        assert!(applied.is_empty());
        assert_eq!(versions(&conn), all);
    }

    #[test]
    fn previous_version_gets_only_the_new_migrations() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..1]).unwrap(),
            vec![1]
        );
        assert!(!index_names(&conn).iter().any(|i| i == "traces_tenant"));
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..2]).unwrap(),
            vec![2]
        );
        assert!(index_names(&conn).iter().any(|i| i == "traces_tenant"));
        // And from version 2, only 0003.
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..3]).unwrap(),
            vec![3]
        );
        let idx = index_names(&conn);
        assert!(idx.iter().any(|i| i == "traces_tenant_time"));
        assert!(!idx.iter().any(|i| i == "traces_tenant"));
        // And from version 3, only 0004 (the prompt tables).
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..4]).unwrap(),
            vec![4]
        );
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN
                 ('prompt_versions', 'prompt_labels', 'prompt_label_moves', 'audit_events')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 4);
        // And from version 4, only 0005: traces gain their function columns, and a
        // trace written before it reads back with them empty.
        conn.execute(
            "INSERT INTO traces (id, started_at_ms, api, endpoint, tags, stream, unpriced,
                 latency_ms, status, http_status) VALUES ('old', 1, 'openai', '/v1', '[]', 0, 0, 5, 'ok', 200)",
            [],
        )
        .unwrap();
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..5]).unwrap(),
            vec![5]
        );
        // And from version 5, only 0006 (the replay tables).
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..6]).unwrap(),
            vec![6]
        );
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN
                 ('replay_runs', 'replay_cases')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 2);
        // And from version 6, only 0007: traces gain an origin (old ones are live).
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..10]).unwrap(),
            vec![7, 8, 9, 10]
        );
        // And from version 10, only 0011 (keys and alert events); old traces keep reading.
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..11]).unwrap(),
            vec![11]
        );
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN
                 ('api_keys', 'alert_events')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 2);
        // And from version 11, only 0012: traces gain guardrail outcomes.
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..12]).unwrap(),
            vec![12]
        );
        // (The trace written at version 4 is read back once every column exists, below.)
        // And from version 12, only 0013 (split overrides); a function without a row
        // serves its configured weights, and audit rows written before keep reading.
        crate::audit::record_audit(
            &conn,
            1,
            &crate::audit::NewAuditEvent {
                actor: "a",
                action: "prompt.label",
                target: "p@production",
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..13]).unwrap(),
            vec![13]
        );
        assert_eq!(crate::splits::current_split(&conn, "f").unwrap(), None);
        assert!(crate::splits::all_splits(&conn).unwrap().is_empty());
        assert_eq!(crate::audit::list_audit(&conn, 0, 0).unwrap().len(), 1);
        // And from version 13, only 0014: traces gain their W3C trace context (old ones
        // read back without one) and app spans get their table.
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..14]).unwrap(),
            vec![14]
        );
        assert!(
            crate::spans::spans_for_trace(&conn, "4bf92f3577b34da6a3ce929d0e0e4736")
                .unwrap()
                .is_empty()
        );
        assert!(index_names(&conn).iter().any(|i| i == "traces_otel_trace"));
        // And from version 14, only 0015: the rollups, backfilled from the traces
        // already stored (the one written at version 4).
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..15]).unwrap(),
            vec![15]
        );
        let (requests, latency): (i64, Vec<u8>) = conn
            .query_row(
                "SELECT requests, latency_hist FROM trace_rollups
                 WHERE res_ms = 300000 AND origin = 'live' AND dim = 'all' AND bucket_ms = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(requests, 1);
        let latency = crate::histogram::Histogram::decode(&latency).unwrap();
        assert_eq!(latency.percentile(50), Some(5));
        assert!(index_names(&conn).iter().any(|i| i == "traces_started_at"));
        // And from version 15, only 0016: the playground's drafts, empty.
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..16]).unwrap(),
            vec![16]
        );
        assert!(crate::drafts::drafts_for(&conn, "any", 10)
            .unwrap()
            .is_empty());
        // And from version 16, 0017 (traces say whether their usage is estimated) and 0018
        // (unique trace ids, span owners); the trace written at version 4 reads back with
        // every later column at its default.
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..18]).unwrap(),
            vec![17, 18]
        );
        let old = crate::query::get_trace(&conn, "old").unwrap().unwrap();
        assert_eq!((old.function, old.release_id), (None, None));
        assert_eq!(old.origin, keel_core::trace::Origin::Live);
        assert!(old.guardrails.is_empty());
        assert_eq!((old.otel_trace_id, old.otel_span_id), (None, None));
        assert!(!old.usage_estimated);
    }

    #[test]
    fn migration_18_makes_trace_ids_unique_and_keeps_the_callers_id() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, "mem", &MIGRATIONS[..17]).unwrap();
        for (id, at) in [("same", 1), ("same", 2), ("other", 3), ("same", 4)] {
            conn.execute(
                "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms, status, http_status)
                 VALUES (?1, ?2, 'openai', '/v1/chat/completions', 0, 0, 5, 'ok', 200)",
                rusqlite::params![id, at],
            )
            .unwrap();
        }
        assert_eq!(
            migrate(&mut conn, "mem", &MIGRATIONS[..18]).unwrap(),
            vec![18]
        );
        // The oldest keeps the id; the others moved, with the caller's id kept.
        let kept: i64 = conn
            .query_row(
                "SELECT started_at_ms FROM traces WHERE id = 'same'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, 1);
        let moved: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM traces WHERE client_request_id = 'same' AND id != 'same'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(moved, 2);
        let dup = conn.execute(
            "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms, status, http_status)
             VALUES ('other', 9, 'openai', '/v1/chat/completions', 0, 0, 5, 'ok', 200)",
            [],
        );
        assert!(dup.is_err(), "ids are unique now");
    }

    #[test]
    fn a_missing_lower_version_is_applied_after_a_higher_one() {
        // A store migrated by a build without 0002 still gets it once a build has it.
        let m = |version, name, sql| Migration { version, name, sql };
        let all = [
            m(1, "0001_a", "CREATE TABLE a (x INTEGER);"),
            m(2, "0002_b", "CREATE TABLE b (x INTEGER);"),
            m(3, "0003_c", "CREATE TABLE c (x INTEGER);"),
        ];
        let mut conn = Connection::open_in_memory().unwrap();
        let without = [all[0], all[2]];
        assert_eq!(migrate(&mut conn, "mem", &without).unwrap(), vec![1, 3]);
        assert_eq!(migrate(&mut conn, "mem", &all).unwrap(), vec![2]);
        assert!(migrate(&mut conn, "mem", &all).unwrap().is_empty());
        assert_eq!(versions(&conn), vec![1, 2, 3]);
    }

    #[test]
    fn a_failing_migration_is_rolled_back_and_named() {
        let mut conn = Connection::open_in_memory().unwrap();
        let broken = [Migration {
            version: 1,
            name: "0001_broken",
            sql: "CREATE TABLE t (x INTEGER); THIS IS NOT SQL;",
        }];
        let err = migrate(&mut conn, "x.db", &broken).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("migration 1 (0001_broken)"), "{msg}");
        assert!(msg.contains("'x.db'"), "{msg}");
        assert_eq!(current_version(&conn).unwrap(), 0);
        let t: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 't'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(t, 0, "the half-applied migration must be rolled back");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, "mem", MIGRATIONS).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future', 'x')",
            [],
        )
        .unwrap();
        let err = migrate(&mut conn, "keel.db", MIGRATIONS).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade keel"), "{err}");
    }
}
