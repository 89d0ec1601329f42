//! Numbered migrations of a PostgreSQL store, applied once however many replicas start
//! at the same moment.
//!
//! A PostgreSQL store starts at version 28, the schema SQLite reaches with migrations
//! 0001–0028, written once in PostgreSQL's types (`migrations/postgres/0028_baseline.sql`).
//! Every later migration has one file per backend under the same number, so a store's
//! version means the same schema on both. Replicas serialise on a session advisory lock
//! ([`MIGRATION_LOCK`]): the first applies what is missing, each in its own
//! transaction, the others then find nothing to do.

use crate::error::StoreError;
use crate::sql::pg::PgConn;
use crate::sql::{Db, Value};

/// One PostgreSQL schema step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgMigration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every PostgreSQL migration, in order. Append only; same numbers as SQLite's.
pub(crate) const PG_MIGRATIONS: &[PgMigration] = &[
    PgMigration {
        version: 28,
        name: "0028_baseline",
        sql: include_str!("../../migrations/postgres/0028_baseline.sql"),
    },
    PgMigration {
        version: 29,
        name: "0029_traces_by_day",
        sql: include_str!("../../migrations/postgres/0029_traces_by_day.sql"),
    },
];

/// The advisory lock key replicas take while migrating ("keel" in ASCII, then 1).
pub(crate) const MIGRATION_LOCK: i64 = 0x6b65_656c_0000_0001;

/// Bring the database behind `conn` up to the last PostgreSQL migration; the versions
/// applied now. `shown` names the store in errors.
pub(crate) fn migrate(conn: &PgConn, shown: &str, supported: u32) -> Result<Vec<u32>, StoreError> {
    migrate_until(conn, shown, supported, u32::MAX)
}

/// [`migrate`], stopping after version `last` (tests start a store at an older version
/// to migrate it from there).
pub(crate) fn migrate_until(
    conn: &PgConn,
    shown: &str,
    supported: u32,
    last: u32,
) -> Result<Vec<u32>, StoreError> {
    let db = Db::Postgres(conn);
    db.execute("SELECT pg_advisory_lock(?1)", &[Value::Int(MIGRATION_LOCK)])?;
    let result = apply(db, shown, supported, last);
    if let Err(error) = db.execute(
        "SELECT pg_advisory_unlock(?1)",
        &[Value::Int(MIGRATION_LOCK)],
    ) {
        // The lock is the session's: it goes when the connection does.
        tracing::debug!(%error, "cannot release the migration lock");
    }
    result
}

fn apply(db: Db<'_>, shown: &str, supported: u32, last: u32) -> Result<Vec<u32>, StoreError> {
    db.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            name       TEXT   NOT NULL,
            applied_at TEXT   NOT NULL
        )",
    )?;
    let recorded: Vec<u32> =
        db.query("SELECT version FROM schema_migrations", &[], |r| r.get(0))?;
    if let Some(&found) = recorded.iter().max() {
        if found > supported {
            return Err(StoreError::SchemaTooNew {
                path: shown.to_string(),
                found,
                supported,
            });
        }
    }
    let mut applied = Vec::new();
    for m in PG_MIGRATIONS
        .iter()
        .filter(|m| m.version <= last && !recorded.contains(&m.version))
    {
        let step = db.transaction(|tx| {
            tx.batch(m.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at)
                 VALUES (?1, ?2, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))",
                &[Value::from(m.version), Value::from(m.name)],
            )?;
            Ok(())
        });
        step.map_err(|source| StoreError::PgMigration {
            store: shown.to_string(),
            version: m.version,
            name: m.name,
            reason: source.to_string(),
        })?;
        applied.push(m.version);
    }
    Ok(applied)
}
