//! The one error type of the trace store.
//!
//! Every variant names what failed (the store path, the migration, the window) and says
//! what the operator can do about it, because these messages reach `keel serve` startup
//! logs and `keel report` output as they are.

use thiserror::Error;

/// A store error where rusqlite's is expected (code still written against rusqlite).
pub(crate) fn into_sqlite(e: StoreError) -> rusqlite::Error {
    match e {
        StoreError::Sqlite(e) => e,
        other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
    }
}

/// `?` on a store function ported to [`crate::sql::Db`] inside code still returning
/// rusqlite's errors (other crates' callers, modules not ported yet): SQLite's own error
/// passes through unchanged.
impl From<StoreError> for rusqlite::Error {
    fn from(e: StoreError) -> rusqlite::Error {
        into_sqlite(e)
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "cannot open trace store at '{path}': directory '{dir}' does not exist — create it or change [gateway] store"
    )]
    DirectoryMissing { path: String, dir: String },

    #[error(
        "cannot open trace store at '{path}': {source} — check that the path is a Keel SQLite file (or a new file) you can read and write, or change [gateway] store"
    )]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "trace store '{path}' has schema version {found}, but this keel binary knows versions up to {supported} — it was written by a newer keel: upgrade keel, or point [gateway] store at another file"
    )]
    SchemaTooNew {
        path: String,
        found: u32,
        supported: u32,
    },

    #[error(
        "cannot apply migration {version} ({name}) to trace store '{path}': {source} — the store was left at the previous version; fix the cause (disk full? file read-only?) and start keel again"
    )]
    Migration {
        path: String,
        version: u32,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error("cannot start the trace writer thread: {0} — the system is out of threads or memory")]
    SpawnWriter(#[source] std::io::Error),

    #[error("empty report window: since ({since_ms} ms) must be before until ({until_ms} ms)")]
    InvalidWindow { since_ms: i64, until_ms: i64 },

    #[error("trace store query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("trace store query failed (PostgreSQL): {0}")]
    Postgres(#[from] tokio_postgres::Error),

    #[error(
        "the PostgreSQL store URL is not valid: {reason} — write it as postgres://user[:password]@host[:port]/database (set KEEL_STORE to keep the password out of the config file)"
    )]
    PostgresUrl { reason: String },

    #[error(
        "cannot reach the PostgreSQL store {url}: {reason} — check that the server is running and accepts this user from this host, or change [gateway] store / KEEL_STORE"
    )]
    PostgresPool { url: String, reason: String },

    #[error(
        "cannot apply migration {version} ({name}) to the PostgreSQL store {store}: {reason} — the store was left at the previous version; fix the cause (permissions? disk?) and start keel again"
    )]
    PgMigration {
        store: String,
        version: u32,
        name: &'static str,
        reason: String,
    },

    #[error(
        "this command does not work on a PostgreSQL store yet ({store}) — run it against a SQLite store, or see issue 19 for what is ported"
    )]
    SqliteOnly { store: String },

    #[error(
        "keel store copy goes from a SQLite store to a PostgreSQL one — give --from keel.db --to postgres://user@host/db"
    )]
    CopyDirection,

    #[error(
        "the PostgreSQL store {store} already holds Keel data and no interrupted copy — copy into an empty database (create one with `createdb`), or drop the data first"
    )]
    CopyTargetNotEmpty { store: String },

    #[error(
        "{what} is PostgreSQL's: a SQLite store keeps traces in one file — use [retention] to remove old traces there"
    )]
    PostgresOnly { what: &'static str },

    #[error("a value read from the store has the wrong type: {0}")]
    Decode(String),

    #[error("the store returned no row where one was expected")]
    NoRow,

    #[error("cannot encode a value for the store: {0}")]
    Encode(#[from] serde_json::Error),

    /// A record named by the caller is not in the store (e.g. `incident 7`).
    #[error(
        "there is no {0} in this store — list what there is (e.g. `keel incident list --all`)"
    )]
    NotFound(String),
}
