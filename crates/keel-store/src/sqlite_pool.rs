//! Idle SQLite connections kept for reuse by [`crate::Store::conn`].
//!
//! Opening a connection is not cheap once the schema is large: SQLite parses every
//! table and index definition on its first statement (about 7.5 million instructions
//! for Keel's schema, measured with callgrind), and each new connection compiles its
//! statements again. The gateway's background passes (the model-version watch, alert
//! rules, canaries, review intake, key and prompt refreshes) each took a connection per
//! pass, which cost more than a thousand proxied calls' worth of request handling. A
//! [`PooledConnection`] goes back to its store's idle list when dropped — unless a
//! transaction is still open on it (an early return mid-transaction), then it is
//! closed. At most [`MAX_IDLE`] are kept; connections in use are not limited.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// Idle connections kept per store.
pub(crate) const MAX_IDLE: usize = 8;

/// A store's idle connections.
#[derive(Debug, Default)]
pub(crate) struct IdleConnections {
    idle: Mutex<Vec<Connection>>,
}

impl IdleConnections {
    /// An idle connection, if there is one.
    pub(crate) fn take(&self) -> Option<Connection> {
        self.idle.lock().ok()?.pop()
    }

    fn put(&self, conn: Connection) {
        // A connection with a transaction still open would hand it to its next user.
        if !conn.is_autocommit() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().map_or(0, |i| i.len())
    }
}

/// A SQLite connection of a store's: used as a [`Connection`], returned to the store's
/// idle list on drop.
#[derive(Debug)]
pub struct PooledConnection {
    /// Taken out only by `drop`, to go back to `home`.
    conn: ManuallyDrop<Connection>,
    home: Arc<IdleConnections>,
}

impl PooledConnection {
    pub(crate) fn new(conn: Connection, home: Arc<IdleConnections>) -> PooledConnection {
        PooledConnection {
            conn: ManuallyDrop::new(conn),
            home,
        }
    }
}

impl Deref for PooledConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing reads `conn` after this line.
        let conn = unsafe { ManuallyDrop::take(&mut self.conn) };
        self.home.put(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_connection_is_reused_unless_a_transaction_is_open_on_it() {
        let home = Arc::new(IdleConnections::default());
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TEMP TABLE marker (x)").unwrap();
        drop(PooledConnection::new(conn, home.clone()));
        assert_eq!(home.len(), 1);
        let again = home.take().unwrap();
        // The same connection: its temporary table is still there.
        again.execute("INSERT INTO marker VALUES (1)", []).unwrap();

        again.execute_batch("BEGIN").unwrap();
        drop(PooledConnection::new(again, home.clone()));
        assert_eq!(
            home.len(),
            0,
            "a connection mid-transaction is closed, not kept"
        );

        for _ in 0..MAX_IDLE + 3 {
            drop(PooledConnection::new(
                Connection::open_in_memory().unwrap(),
                home.clone(),
            ));
        }
        assert_eq!(home.len(), MAX_IDLE);
    }
}
