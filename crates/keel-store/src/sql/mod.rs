//! The store's one interface to SQL, over SQLite (the embedded default) or PostgreSQL
//! (a database replicas share).
//!
//! - [`Db`] — a borrowed connection to either; the calls store functions make
//!   (`execute`, `query`, `query_row`, `transaction`, …) and the [`Row`]s they read.
//! - [`Value`] — what statements bind and rows hold, converted to each backend's types.
//! - [`dialect`] — the spellings the two do not share, rewritten per statement.
//! - [`pg`] — the PostgreSQL pool and its connections; [`pg_migrations`] — its schema;
//!   [`pg_tls`] — TLS as `sslmode` says.
//!
//! Store modules move from `rusqlite::Connection` to [`Db`] one at a time; their callers
//! keep passing `&Connection` (`impl Into<Db>`) until they hold a PostgreSQL one.

mod db;
pub mod dialect;
pub mod pg;
pub(crate) mod pg_migrations;
pub mod pg_tls;
mod value;

pub(crate) use db::lock_id;
pub use db::{Db, Row};
pub use dialect::Dialect;
pub use pg::{is_postgres_url, PgConn, Postgres};
pub use value::{FromValue, Param, Value};
