//! PostgreSQL connections for a store that replicas share.
//!
//! The driver is `tokio-postgres` with a `deadpool-postgres` pool. Each connection's
//! I/O task runs on a small runtime this module owns ("keel-postgres", one worker; the
//! trace writer's own connection on another, "keel-postgres-bg", at its lower priority), so
//! the store's callers stay what they are with SQLite: plain functions called from the
//! CLI, the writer thread or `spawn_blocking`. A statement is a future on the client
//! that only sends to and waits for that task, so the caller blocks on it where it
//! stands (as it would on a SQLite call); only checking a connection out of the pool
//! needs the runtime, and is handed to it.
//!
//! Limits: at most [`POOL_SIZE`] connections per process; waiting for one, opening one
//! and recycling one each give up after [`POOL_TIMEOUT`]; opening a connection gives up
//! after [`CONNECT_TIMEOUT`]. TCP connections use TLS as libpq's `sslmode` says
//! (`prefer` by default; `require`, `verify-ca`, `verify-full` with `sslrootcert`: see
//! [`super::pg_tls`]); a Unix socket never does.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;

use crate::error::StoreError;
use crate::sql::dialect::to_postgres;
use crate::sql::Value;

/// Connections one process keeps open at most for its reads and writes; the trace
/// writer has one more of its own ([`Postgres::background_twin`]).
pub const POOL_SIZE: usize = 16;
/// How long a caller waits for a pooled connection (and its opening or recycling).
pub const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening one TCP connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Turn PostgreSQL's JIT compiler off for Keel's sessions, unless the URL's `options`
/// already say something about `jit`. Keel's statements are short (indexed reads with a
/// `LIMIT`, batched writes), but on a large table the planner's cost for a selective
/// search passes `jit_above_cost`, and LLVM then compiles the plan before the first row,
/// which `statement_timeout` cannot interrupt: a dashboard search budgeted at 150 ms
/// (`search`) took 227–299 ms on 10M traces with JIT and 152–160 ms without
/// (`bench/RESULTS.md`, 2026-12-06).
fn without_jit(config: &mut tokio_postgres::Config) {
    let options = config.get_options().unwrap_or_default();
    if !options.contains("jit") {
        let joined = format!("{options} -c jit=off");
        config.options(joined.trim_start());
    }
}

/// Whether `store` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// A pool of connections to one PostgreSQL database. Cheap to share (`Arc`).
pub struct Postgres {
    pool: Pool,
    /// The URL as given, to open a [`Postgres::background_twin`]; never shown.
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
    /// The URL without its password, for messages and logs.
    shown: String,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("url", &self.shown)
            .finish()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Never blocks, so a store may be dropped anywhere, even inside async code.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Postgres {
    /// A pool for `url` (`postgres://user[:password]@host[:port]/db[?options]`). Opens
    /// no connection yet: [`Postgres::conn`] does, and says what failed.
    pub fn new(url: &str) -> Result<Arc<Postgres>, StoreError> {
        Postgres::build(url, POOL_SIZE, false)
    }

    /// A pool of one connection to the same database for work that is never urgent (the
    /// trace writer): its I/O thread runs at a lower priority, like the writer thread,
    /// so on a small machine a batch's socket traffic yields to request handling.
    pub fn background_twin(&self) -> Result<Arc<Postgres>, StoreError> {
        Postgres::build(&self.url, 1, true)
    }

    fn build(url: &str, size: usize, background: bool) -> Result<Arc<Postgres>, StoreError> {
        let (driver_url, tls) = super::pg_tls::split_url(url)?;
        let mut config: tokio_postgres::Config =
            driver_url
                .parse()
                .map_err(|e: tokio_postgres::Error| StoreError::PostgresUrl {
                    reason: e.to_string(),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("keel");
        }
        without_jit(&mut config);
        let shown = shown_url(&config);
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        runtime
            .worker_threads(1)
            .thread_name(if background {
                "keel-postgres-bg"
            } else {
                "keel-postgres"
            })
            .enable_all();
        if background {
            runtime.on_thread_start(crate::background::lower_thread_priority);
        }
        let runtime = runtime.build().map_err(|e| StoreError::PostgresPool {
            url: shown.clone(),
            reason: format!("cannot start its I/O thread: {e}"),
        })?;
        let tls = super::pg_tls::connector(&tls, &shown)?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            // The pool's timers belong to the runtime that drives the connections.
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(POOL_TIMEOUT))
                .create_timeout(Some(POOL_TIMEOUT))
                .recycle_timeout(Some(POOL_TIMEOUT))
                .build()
                .map_err(|e| StoreError::PostgresPool {
                    url: shown.clone(),
                    reason: e.to_string(),
                })?
        };
        Ok(Arc::new(Postgres {
            pool,
            url: url.to_string(),
            runtime: Some(runtime),
            shown,
        }))
    }

    /// A pool for `url` with the store's schema brought up to date first (once, however
    /// many replicas open it at the same moment: see `pg_migrations`).
    pub fn open(url: &str) -> Result<Arc<Postgres>, StoreError> {
        let pg = Postgres::new(url)?;
        let conn = pg.conn()?;
        let applied = crate::sql::pg_migrations::migrate(
            &conn,
            &pg.shown,
            crate::migrations::latest_version(),
        )?;
        if !applied.is_empty() {
            tracing::info!(store = %pg.shown, ?applied, "PostgreSQL store migrated");
        }
        drop(conn);
        Ok(pg)
    }

    /// The schema version recorded in the store (0 before it is migrated).
    pub fn schema_version(self: &Arc<Self>) -> Result<u32, StoreError> {
        let conn = self.conn()?;
        crate::sql::Db::Postgres(&conn).query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
            |r| r.get(0),
        )
    }

    /// The URL as shown in messages: user, host, port and database, never the password.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// A connection from the pool (opened if none is idle), returned when dropped. It
    /// keeps the pool (and the I/O thread its connection runs on) alive while it lives.
    pub fn conn(self: &Arc<Self>) -> Result<PgConn, StoreError> {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::PostgresPool {
                url: self.shown.clone(),
                reason: "the pool is shut down".to_string(),
            });
        };
        let pool = self.pool.clone();
        let checkout = runtime.spawn(async move { pool.get().await });
        match futures::executor::block_on(checkout) {
            Ok(Ok(client)) => Ok(PgConn {
                client,
                _pool: Arc::clone(self),
            }),
            Ok(Err(e)) => Err(StoreError::PostgresPool {
                url: self.shown.clone(),
                reason: with_causes(&e),
            }),
            Err(e) => Err(StoreError::PostgresPool {
                url: self.shown.clone(),
                reason: format!("the connection task failed: {e}"),
            }),
        }
    }
}

/// An error with what caused it (the pool says "error performing TLS handshake"; the
/// cause says which certificate check failed), plus the fix when it is TLS's.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    if text.contains("certificate") {
        text.push_str(
            " (the server's TLS certificate was refused: add sslrootcert=<PEM file of the CA \
             that signed it> to the URL, or sslmode=require to encrypt without checking it)",
        );
    }
    text
}

/// `postgres://user@host:port/db`, from a parsed config (the password is never kept).
fn shown_url(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(user);
    let at = if user.is_empty() { "" } else { "@" };
    format!("postgres://{user}{at}{host}:{port}/{db}")
}

/// One pooled connection. Statements are prepared once per connection and cached.
pub struct PgConn {
    // Dropped first: back to the pool while the pool still runs.
    client: deadpool_postgres::Object,
    _pool: Arc<Postgres>,
}

impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl PgConn {
    /// Rows of `sql` (SQLite spelling, see `dialect`) with `params` bound.
    pub(crate) fn query(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let sql = to_postgres(sql);
        futures::executor::block_on(async {
            let stmt = self.client.prepare_cached(&sql).await?;
            self.client.query(&stmt, &refs(params)).await
        })
        .map_err(StoreError::from)
    }

    /// Rows changed by `sql`.
    pub(crate) fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let sql = to_postgres(sql);
        futures::executor::block_on(async {
            let stmt = self.client.prepare_cached(&sql).await?;
            self.client.execute(&stmt, &refs(params)).await
        })
        .map_err(StoreError::from)
    }

    /// `sql` once for each parameter set, pipelined on this connection (one round trip
    /// for the lot instead of one each); the rows each changed, in order.
    pub(crate) fn execute_many(
        &self,
        sql: &str,
        sets: &[Vec<Value>],
    ) -> Result<Vec<u64>, StoreError> {
        let sql = to_postgres(sql);
        futures::executor::block_on(async {
            let stmt = self.client.prepare_cached(&sql).await?;
            let calls = sets.iter().map(|set| {
                let stmt = &stmt;
                async move { self.client.execute(stmt, &refs(set)).await }
            });
            futures::future::try_join_all(calls).await
        })
        .map_err(StoreError::from)
    }

    /// `sql` once for each parameter set, pipelined; the rows of each, in order.
    pub(crate) fn query_many(
        &self,
        sql: &str,
        sets: &[Vec<Value>],
    ) -> Result<Vec<Vec<tokio_postgres::Row>>, StoreError> {
        let sql = to_postgres(sql);
        futures::executor::block_on(async {
            let stmt = self.client.prepare_cached(&sql).await?;
            let calls = sets.iter().map(|set| {
                let stmt = &stmt;
                async move { self.client.query(stmt, &refs(set)).await }
            });
            futures::future::try_join_all(calls).await
        })
        .map_err(StoreError::from)
    }

    /// Rows of `sql` handed to `each` one at a time as they arrive, not collected: when
    /// the statement fails part way (a statement timeout), the rows handed over before
    /// the error stay the caller's (the budgeted trace search relies on it).
    pub(crate) fn query_each(
        &self,
        sql: &str,
        params: &[Value],
        mut each: impl FnMut(&tokio_postgres::Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        use futures::TryStreamExt;
        let sql = to_postgres(sql);
        futures::executor::block_on(async {
            let stmt = self.client.prepare_cached(&sql).await?;
            let rows = self.client.query_raw(&stmt, refs(params)).await?;
            futures::pin_mut!(rows);
            while let Some(row) = rows.try_next().await? {
                each(&row)?;
            }
            Ok(())
        })
    }

    /// Rows of `sql` (PostgreSQL spelling) with parameters of any type the driver
    /// binds, arrays included: for the statements only PostgreSQL has (a batch's ids
    /// passed as one array to `unnest`).
    pub(crate) fn query_typed(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        futures::executor::block_on(async {
            let stmt = self.client.prepare_cached(sql).await?;
            self.client.query(&stmt, params).await
        })
        .map_err(StoreError::from)
    }

    /// [`PgConn::query_typed`], planned anew each time it runs (an unnamed statement,
    /// the parameters' types given): for a lookup whose best plan changes as its table
    /// grows. A cached statement moves to a generic plan after five runs and keeps it;
    /// one made while a table was small keeps scanning all of it once it is large (the
    /// writer's rollup read: 120 ms a batch at 300,000 rows that way).
    pub(crate) fn query_planned_each_time(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), tokio_postgres::types::Type)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        futures::executor::block_on(self.client.query_typed(sql, params)).map_err(StoreError::from)
    }

    /// `rows` streamed into `copy` (`COPY table (columns) FROM STDIN BINARY`), each
    /// value encoded as `types` says, column by column: one statement for a batch of
    /// any size, which the server routes and indexes in bulk. The rows written. The
    /// statement is prepared once per connection (given as text, the driver would
    /// prepare it again for every batch: a round trip and a parse each time).
    pub(crate) fn copy_in(
        &self,
        copy: &str,
        types: &[tokio_postgres::types::Type],
        rows: &[Vec<Value>],
    ) -> Result<u64, StoreError> {
        futures::executor::block_on(async {
            let stmt = self.client.prepare_cached(copy).await?;
            let sink = self.client.copy_in(&stmt).await?;
            let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, types);
            futures::pin_mut!(writer);
            for row in rows {
                writer.as_mut().write(&refs(row)).await?;
            }
            writer.finish().await
        })
        .map_err(StoreError::from)
    }

    /// Statements without parameters, in one round trip (schema, `BEGIN`, `COMMIT`).
    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        futures::executor::block_on(self.client.batch_execute(sql)).map_err(StoreError::from)
    }

    /// Whether the server closed this connection (it is then not reused).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
