//! [`Db`]: one connection, SQLite or PostgreSQL, behind the calls the store makes.
//!
//! A store function written against `Db` runs unchanged on both backends; callers that
//! hold a `rusqlite::Connection` pass `&conn` as it is (`impl Into<Db>`), so functions
//! move to `Db` one module at a time. On SQLite every call goes straight to rusqlite
//! (the statement cache included); on PostgreSQL the text goes through
//! [`crate::sql::dialect::to_postgres`] first.

use crate::error::StoreError;
use crate::sql::dialect::Dialect;
use crate::sql::pg::PgConn;
use crate::sql::value::{FromValue, Param, Value};

/// A borrowed connection to either backend. `Copy`: pass it by value.
#[derive(Debug, Clone, Copy)]
pub enum Db<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(&'c PgConn),
}

impl<'c> From<&'c rusqlite::Connection> for Db<'c> {
    fn from(c: &'c rusqlite::Connection) -> Db<'c> {
        Db::Sqlite(c)
    }
}

impl<'c> From<&'c mut rusqlite::Connection> for Db<'c> {
    fn from(c: &'c mut rusqlite::Connection) -> Db<'c> {
        Db::Sqlite(c)
    }
}

impl<'c> From<&'c rusqlite::Transaction<'_>> for Db<'c> {
    fn from(c: &'c rusqlite::Transaction<'_>) -> Db<'c> {
        Db::Sqlite(c)
    }
}

impl<'c> From<&'c PgConn> for Db<'c> {
    fn from(c: &'c PgConn) -> Db<'c> {
        Db::Postgres(c)
    }
}

/// One row of a result, read by column index like rusqlite's.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `idx` as `T` (integers widen to reals; 0/1 read as booleans).
    pub fn get<T: FromValue>(&self, idx: usize) -> Result<T, StoreError> {
        let value = match self {
            Row::Sqlite(r) => Value::from_sqlite(r.get_ref(idx)?)?,
            Row::Postgres(r) => r.try_get::<_, Value>(idx)?,
        };
        T::from_value(value).map_err(|why| StoreError::Decode(format!("column {idx}: {why}")))
    }

    /// A text column borrowed from the row (`None` for NULL): no copy, for scans that
    /// look at many rows and keep few.
    pub fn text(&self, idx: usize) -> Result<Option<&str>, StoreError> {
        match self {
            Row::Sqlite(r) => match r.get_ref(idx)? {
                rusqlite::types::ValueRef::Null => Ok(None),
                rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t)
                    .map(Some)
                    .map_err(|e| StoreError::Decode(format!("column {idx} is not UTF-8: {e}"))),
                other => Err(StoreError::Decode(format!(
                    "column {idx}: expected text, found {:?}",
                    other.data_type()
                ))),
            },
            Row::Postgres(r) => Ok(r.try_get::<_, Option<&str>>(idx)?),
        }
    }
}

impl<'c> Db<'c> {
    pub fn dialect(self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Rows changed by `sql`.
    pub fn execute(self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let n = c
                    .prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(params))?;
                Ok(n as u64)
            }
            Db::Postgres(c) => c.execute(sql, params),
        }
    }

    /// `sql` once per parameter set (pipelined on PostgreSQL); rows changed by each.
    pub fn execute_many(self, sql: &str, sets: &[Vec<Value>]) -> Result<Vec<u64>, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                sets.iter()
                    .map(|set| Ok(stmt.execute(rusqlite::params_from_iter(set))? as u64))
                    .collect()
            }
            Db::Postgres(c) => c.execute_many(sql, sets),
        }
    }

    /// `sql` once per row of borrowed parameters ([`Param`]: on SQLite nothing is
    /// copied before SQLite's bind); rows changed by each. Not inlined, so a profile
    /// shows the trace rows' cost apart (`bench/instructions.sh`).
    #[inline(never)]
    pub fn execute_rows<'p, R>(
        self,
        sql: &str,
        rows: impl IntoIterator<Item = R>,
    ) -> Result<Vec<u64>, StoreError>
    where
        R: IntoIterator<Item = Param<'p>>,
    {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                rows.into_iter()
                    .map(|row| Ok(stmt.execute(rusqlite::params_from_iter(row))? as u64))
                    .collect()
            }
            Db::Postgres(c) => {
                let sets: Vec<Vec<Value>> = rows
                    .into_iter()
                    .map(|row| row.into_iter().map(Value::from).collect())
                    .collect();
                c.execute_many(sql, &sets)
            }
        }
    }

    /// `sql` once per parameter set (pipelined on PostgreSQL: one round trip for all);
    /// the first row of each, mapped by `f`.
    pub fn query_opt_many<T>(
        self,
        sql: &str,
        sets: &[Vec<Value>],
        mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<Option<T>>, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut out = Vec::with_capacity(sets.len());
                for set in sets {
                    let mut rows = stmt.query(rusqlite::params_from_iter(set))?;
                    out.push(match rows.next()? {
                        Some(r) => Some(f(&Row::Sqlite(r))?),
                        None => None,
                    });
                }
                Ok(out)
            }
            Db::Postgres(c) => c
                .query_many(sql, sets)?
                .iter()
                .map(|rows| rows.first().map(|r| f(&Row::Postgres(r))).transpose())
                .collect(),
        }
    }

    /// Every row of `sql`, each mapped by `f`.
    pub fn query<T>(
        self,
        sql: &str,
        params: &[Value],
        mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.for_each(sql, params, |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Every row of `sql` handed to `f` in turn, nothing collected.
    pub fn for_each(
        self,
        sql: &str,
        params: &[Value],
        mut f: impl FnMut(&Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                while let Some(r) = rows.next()? {
                    f(&Row::Sqlite(r))?;
                }
                Ok(())
            }
            Db::Postgres(c) => c
                .query(sql, params)?
                .iter()
                .try_for_each(|r| f(&Row::Postgres(r))),
        }
    }

    /// The first row of `sql` mapped by `f`, or `None` when there is none.
    pub fn query_opt<T>(
        self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                match rows.next()? {
                    Some(r) => Ok(Some(f(&Row::Sqlite(r))?)),
                    None => Ok(None),
                }
            }
            Db::Postgres(c) => match c.query(sql, params)?.first() {
                Some(r) => Ok(Some(f(&Row::Postgres(r))?)),
                None => Ok(None),
            },
        }
    }

    /// The first row of `sql` mapped by `f`; no row is an error.
    pub fn query_row<T>(
        self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, f)?.ok_or(StoreError::NoRow)
    }

    /// Statements without parameters, run as one script (same SQL on both backends).
    pub fn batch(self, sql: &str) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(c) => c.batch(sql),
        }
    }

    /// Run `f` in one transaction: committed when it returns `Ok`, rolled back when it
    /// returns an error (which is passed on). Not nestable: use a savepoint inside.
    pub fn transaction<T>(
        self,
        f: impl FnOnce(Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.in_transaction(Begin::Deferred, f)
    }

    /// [`Db::transaction`] that takes SQLite's write lock at the start (`BEGIN
    /// IMMEDIATE`), for a section that reads then writes: two such sections never both
    /// read and then fail to upgrade (`SQLITE_BUSY`), they wait their turn. PostgreSQL
    /// has no such lock: a section there that must be exclusive locks the rows it
    /// decides on (`SELECT … FOR UPDATE`).
    pub fn write_transaction<T>(
        self,
        f: impl FnOnce(Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.in_transaction(Begin::Immediate, f)
    }

    /// [`Db::exclusive`] with the advisory lock named by `lock` (hashed to a key): for
    /// sections keyed by a value (a lease's name, an alert's dedupe key).
    pub fn exclusive_for<T>(
        self,
        lock: &str,
        f: impl FnOnce(Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.exclusive(lock_id(lock), f)
    }

    /// [`Db::transaction`] for a read-then-write section that must not interleave with
    /// another writer's (a version number taken from the latest, a label moved from where
    /// it was). On SQLite the write lock is taken at once (`BEGIN IMMEDIATE`: the section
    /// waits for other writers instead of failing half way, as SQLite has one writer); on
    /// PostgreSQL the transaction-scoped advisory lock `key` is taken first, so replicas
    /// writing the same thing take turns. Errors of any type that a [`StoreError`]
    /// converts into roll back and are passed on.
    pub fn exclusive<T, E: From<StoreError>>(
        self,
        key: i64,
        f: impl FnOnce(Db<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.in_transaction(Begin::Locked(key), f)
    }

    /// The one way a transaction runs: begun as `begin` says, committed when `f`
    /// returns `Ok`, rolled back when it returns an error (which is passed on).
    fn in_transaction<T, E: From<StoreError>>(
        self,
        begin: Begin,
        f: impl FnOnce(Db<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Db::Sqlite(c) => {
                let behavior = match begin {
                    Begin::Deferred => rusqlite::TransactionBehavior::Deferred,
                    Begin::Immediate | Begin::Locked(_) => rusqlite::TransactionBehavior::Immediate,
                };
                let tx =
                    rusqlite::Transaction::new_unchecked(c, behavior).map_err(StoreError::from)?;
                let out = f(Db::Sqlite(&tx))?;
                tx.commit().map_err(StoreError::from)?;
                Ok(out)
            }
            Db::Postgres(c) => {
                // One round trip for both: a locked section is the trace writer's every
                // batch, and each round trip wakes the writer, its I/O thread and a
                // server backend on the cores that serve requests.
                let begun = match begin {
                    Begin::Locked(key) => {
                        c.batch(&format!("BEGIN; SELECT pg_advisory_xact_lock({key})"))
                    }
                    Begin::Deferred | Begin::Immediate => c.batch("BEGIN"),
                };
                match begun.map_err(E::from).and_then(|()| f(self)) {
                    Ok(out) => {
                        c.batch("COMMIT")?;
                        Ok(out)
                    }
                    Err(e) => {
                        if let Err(rollback) = c.batch("ROLLBACK") {
                            tracing::debug!(error = %rollback, "rollback failed (the connection is gone)");
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// Run `f` under a savepoint inside the current transaction: its writes are undone
    /// if it fails, the transaction's others are kept. Same SQL on both backends.
    pub fn savepoint<T>(
        self,
        name: &str,
        f: impl FnOnce(Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.savepoint_with(name, "", f)
    }

    /// [`Db::savepoint`], with `pg_settings` (`SET LOCAL …` statements) run on
    /// PostgreSQL in the same round trip: they hold for the rest of the transaction,
    /// and are undone with the savepoint if `f` fails.
    pub(crate) fn savepoint_with<T>(
        self,
        name: &str,
        pg_settings: &str,
        f: impl FnOnce(Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.dialect() {
            Dialect::Postgres if !pg_settings.is_empty() => {
                self.batch(&format!("SAVEPOINT {name}; {pg_settings}"))?
            }
            _ => self.batch(&format!("SAVEPOINT {name}"))?,
        }
        match f(self) {
            // PostgreSQL releases it with the transaction's commit: a round trip saved.
            // SQLite's savepoints nest in its own stack, so it is released there.
            Ok(out) if self.dialect() == Dialect::Postgres => Ok(out),
            Ok(out) => {
                self.batch(&format!("RELEASE SAVEPOINT {name}"))?;
                Ok(out)
            }
            Err(e) => {
                self.batch(&format!(
                    "ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"
                ))?;
                Err(e)
            }
        }
    }
}

/// The advisory lock id of a name (FNV-1a, 64 bits): stable across builds and replicas,
/// unlike `std`'s seeded hashers.
pub(crate) fn lock_id(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"keel:".iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// How [`Db::in_transaction`] begins: SQLite's deferred or immediate (write lock at once)
/// transaction; `Locked` is immediate on SQLite and takes this advisory lock on PostgreSQL.
#[derive(Clone, Copy)]
enum Begin {
    Deferred,
    Immediate,
    Locked(i64),
}
