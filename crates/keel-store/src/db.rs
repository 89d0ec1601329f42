//! Opening the store: a SQLite file (or memory), or a PostgreSQL database that
//! replicas share (`postgres://…`); how connections are configured, and the migrations
//! run before anything else touches it.
//!
//! [`Store::conn`] hands out a connection to either backend ([`Conn`], read as a
//! [`Db`]); [`Store::reader`] and [`Store::writer_conn`] are SQLite's own, for code not
//! yet written against [`Db`] (they refuse on PostgreSQL, naming the store).
//!
//! A file store runs in WAL mode with `synchronous=NORMAL` (readers never block the
//! writer; a crash loses at most the last transactions, never the file) and a busy
//! timeout. `":memory:"` becomes a uniquely named shared-cache in-memory database, so the
//! writer thread and readers of one process see the same data; the `Store` keeps one
//! connection open for its lifetime so that database is not freed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::StoreError;
use crate::migrations;
use crate::sql::{is_postgres_url, Db, PgConn, Postgres};
use crate::sqlite_pool::{IdleConnections, PooledConnection};

/// How long a connection waits for another one's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum Location {
    File(String),
    /// A `file:keel-mem-<uuid>?mode=memory&cache=shared` URI.
    Memory(String),
    Postgres(Arc<Postgres>),
}

/// An owned connection to the store, of either backend; borrow it as a [`Db`].
#[derive(Debug)]
pub enum Conn {
    /// Back to the store's idle connections when dropped.
    Sqlite(PooledConnection),
    Postgres(PgConn),
}

impl Conn {
    pub fn db(&self) -> Db<'_> {
        Db::from(self)
    }

    /// Whether the connection is gone (PostgreSQL closed it: a restart, a failover, a
    /// network cut) and a new one must be taken; never for SQLite.
    pub fn is_closed(&self) -> bool {
        match self {
            Conn::Sqlite(_) => false,
            Conn::Postgres(c) => c.is_closed(),
        }
    }
}

impl<'c> From<&'c Conn> for Db<'c> {
    fn from(c: &'c Conn) -> Db<'c> {
        match c {
            Conn::Sqlite(c) => Db::Sqlite(c),
            Conn::Postgres(c) => Db::Postgres(c),
        }
    }
}

impl<'c> From<&'c mut Conn> for Db<'c> {
    fn from(c: &'c mut Conn) -> Db<'c> {
        Db::from(&*c)
    }
}

/// An opened, migrated trace store. Hand out connections with [`Store::reader`]; the
/// trace writer opens its own with [`crate::writer::spawn`].
#[derive(Debug)]
pub struct Store {
    path: String,
    location: Location,
    schema_version: u32,
    /// Held, never used after opening: keeps a `:memory:` store alive.
    _keeper: Option<Mutex<Connection>>,
    /// SQLite connections [`Store::conn`] handed out and got back.
    idle: Arc<IdleConnections>,
}

impl Store {
    /// Open (creating if missing) the store at `path`, or a fresh in-memory store for
    /// `":memory:"`, and apply pending migrations.
    pub fn open(path: &str) -> Result<Store, StoreError> {
        if is_postgres_url(path) {
            let pg = Postgres::open(path)?;
            return Ok(Store {
                path: pg.shown_url().to_string(),
                location: Location::Postgres(pg),
                schema_version: migrations::latest_version(),
                _keeper: None,
                idle: Arc::default(),
            });
        }
        let location = if path == ":memory:" {
            Location::Memory(format!(
                "file:keel-mem-{}?mode=memory&cache=shared",
                uuid::Uuid::new_v4().simple()
            ))
        } else {
            check_parent_dir(path)?;
            Location::File(path.to_string())
        };
        let mut conn = open_connection(path, &location)?;
        if let Location::File(_) = location {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                .map_err(|source| StoreError::Open {
                    path: path.to_string(),
                    source,
                })?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path, journal_mode = %mode, "trace store could not switch to WAL mode; readers may block the writer");
            }
        }
        let applied = migrations::migrate(&mut conn, path, migrations::MIGRATIONS)?;
        if !applied.is_empty() {
            tracing::info!(path, ?applied, "trace store migrated");
        }
        repair_rollups(&mut conn, path);
        if let Location::File(_) = location {
            // Fresh planner statistics (sampled, so quick on a large store): with them
            // SQLite picks the most selective index when a search combines filters.
            if let Err(error) = conn.execute_batch("PRAGMA optimize=0x10002") {
                tracing::debug!(path, %error, "PRAGMA optimize failed");
            }
        }
        Ok(Store {
            path: path.to_string(),
            location,
            schema_version: migrations::latest_version(),
            _keeper: Some(Mutex::new(conn)),
            idle: Arc::default(),
        })
    }

    /// A connection to the store, whichever backend it is on: what code written
    /// against [`Db`] takes. Read-write; pooled on both backends (on SQLite, idle
    /// connections are kept: see `sqlite_pool`).
    pub fn conn(&self) -> Result<Conn, StoreError> {
        match &self.location {
            Location::Postgres(pg) => Ok(Conn::Postgres(pg.conn()?)),
            _ => {
                let conn = match self.idle.take() {
                    Some(c) => c,
                    None => self.writer_connection()?,
                };
                Ok(Conn::Sqlite(PooledConnection::new(conn, self.idle.clone())))
            }
        }
    }

    /// The PostgreSQL pool, when the store is on PostgreSQL.
    pub fn postgres(&self) -> Option<&Arc<Postgres>> {
        match &self.location {
            Location::Postgres(pg) => Some(pg),
            _ => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres().is_some()
    }

    fn sqlite_only(&self) -> Result<(), StoreError> {
        match &self.location {
            Location::Postgres(_) => Err(StoreError::SqliteOnly {
                store: self.path.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The path the store was opened with (`":memory:"` for an in-memory store).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn is_memory(&self) -> bool {
        matches!(self.location, Location::Memory(_))
    }

    /// The schema version of the store (the latest this binary knows, once opened).
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// A new read-only connection (`query_only`) for `query` and `report` functions.
    /// Cheap enough to open per command or per request; not shared across threads.
    pub fn reader(&self) -> Result<Connection, StoreError> {
        self.sqlite_only()?;
        let conn = open_connection(&self.path, &self.location)?;
        let configure = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "query_only", true)?;
            if self.is_memory() {
                // Shared-cache tables are locked per table, and busy_timeout does not
                // apply: without this a read during a write batch fails with
                // SQLITE_LOCKED. A reader may then see a batch being written.
                conn.pragma_update(None, "read_uncommitted", true)?;
            }
            Ok(())
        };
        configure().map_err(|source| StoreError::Open {
            path: self.path.clone(),
            source,
        })?;
        Ok(conn)
    }

    /// A read-write connection (for the trace writer thread and tests).
    pub(crate) fn writer_connection(&self) -> Result<Connection, StoreError> {
        self.sqlite_only()?;
        open_connection(&self.path, &self.location)
    }
}

/// Recompute rollups of hours whose traces were deleted or changed while no writer ran
/// (see `rollup`). Best effort: a read-only store still opens, with its marks kept.
fn repair_rollups(conn: &mut Connection, path: &str) {
    match crate::rollup::repair(conn) {
        Ok(0) => {}
        Ok(hours) => tracing::info!(path, hours, "trace rollups recomputed after traces changed"),
        Err(error) => tracing::warn!(path, %error, "trace rollups could not be recomputed"),
    }
}

fn check_parent_dir(path: &str) -> Result<(), StoreError> {
    if path.starts_with("file:") {
        return Ok(()); // a URI: SQLite reports problems itself
    }
    let parent = match Path::new(path).parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Ok(()), // relative to the current directory
    };
    if parent.is_dir() {
        Ok(())
    } else {
        Err(StoreError::DirectoryMissing {
            path: path.to_string(),
            dir: parent.display().to_string(),
        })
    }
}

fn open_connection(path: &str, location: &Location) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_string(),
        source,
    };
    let target = match location {
        Location::File(p) | Location::Memory(p) => p.as_str(),
        Location::Postgres(_) => {
            return Err(StoreError::SqliteOnly {
                store: path.to_string(),
            })
        }
    };
    let conn = Connection::open_with_flags(target, OpenFlags::default()).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    if let Location::File(_) = location {
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_count(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM traces", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn store_connections_are_reused_once_returned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
        let first = store.conn().unwrap();
        first.db().batch("CREATE TEMP TABLE mine (x)").unwrap();
        // A second one while the first is in use is another connection.
        let second = store.conn().unwrap();
        assert!(second.db().batch("INSERT INTO mine VALUES (1)").is_err());
        drop(second);
        drop(first);
        // The last one returned is the next one handed out: the first, with its table.
        let again = store.conn().unwrap();
        again.db().batch("INSERT INTO mine VALUES (1)").unwrap();
    }

    #[test]
    fn file_store_is_created_in_wal_mode_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let path = path.to_str().unwrap();
        let store = Store::open(path).unwrap();
        assert!(!store.is_memory());
        assert_eq!(store.schema_version(), migrations::latest_version());
        let reader = store.reader().unwrap();
        let mode: String = reader
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = reader
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
        assert_eq!(table_count(&reader), 0);
        drop(reader);
        drop(store);

        // Reopening an up-to-date store applies nothing and keeps the data.
        let w = Store::open(path).unwrap().writer_connection().unwrap();
        w.execute(
            "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms, status, http_status)
             VALUES ('a', 1, 'openai', '/v1/chat/completions', 0, 0, 5, 'ok', 200)",
            [],
        )
        .unwrap();
        let store = Store::open(path).unwrap();
        assert_eq!(table_count(&store.reader().unwrap()), 1);
    }

    #[test]
    fn store_from_the_previous_version_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let path = path.to_str().unwrap();
        {
            let mut conn = Connection::open(path).unwrap();
            migrations::migrate(&mut conn, path, &migrations::MIGRATIONS[..1]).unwrap();
            conn.execute(
                "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms, status, http_status)
                 VALUES ('old', 1, 'openai', '/v1/chat/completions', 0, 0, 5, 'ok', 200)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(path).unwrap();
        let reader = store.reader().unwrap();
        assert_eq!(
            migrations::current_version(&reader).unwrap(),
            migrations::latest_version()
        );
        assert_eq!(table_count(&reader), 1);
    }

    #[test]
    fn missing_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join("keel.db");
        let err = Store::open(path.to_str().unwrap()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::DirectoryMissing { .. }), "{msg}");
        assert!(msg.contains("nope/keel.db"), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(msg.contains("[gateway] store"), "{msg}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(
            &path,
            "this is not sqlite, just some text that is long enough to be a header ..........",
        )
        .unwrap();
        let err = Store::open(path.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains("notes.txt"), "{err}");
    }

    #[test]
    fn newer_schema_is_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        let path = path.to_str().unwrap();
        let store = Store::open(path).unwrap();
        store
            .writer_connection()
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (1000, '1000_future', 'x')",
                [],
            )
            .unwrap();
        drop(store);
        let err = Store::open(path).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 1000, .. }),
            "{err}"
        );
    }

    #[test]
    fn memory_stores_are_shared_within_a_store_and_separate_between_stores() {
        let a = Store::open(":memory:").unwrap();
        let b = Store::open(":memory:").unwrap();
        assert!(a.is_memory());
        a.writer_connection()
            .unwrap()
            .execute(
                "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms, status, http_status)
                 VALUES ('m', 1, 'openai', '/v1/chat/completions', 0, 0, 5, 'ok', 200)",
                [],
            )
            .unwrap();
        assert_eq!(table_count(&a.reader().unwrap()), 1);
        assert_eq!(table_count(&b.reader().unwrap()), 0);
    }

    #[test]
    fn readers_cannot_write() {
        let store = Store::open(":memory:").unwrap();
        let r = store.reader().unwrap();
        assert!(r.execute("DELETE FROM traces", []).is_err());
    }
}
