//! Store connections for the judges, kept between calls.
//!
//! Judging is off the request path, but at a high sample rate it runs for every call: a
//! SQLite connection opened per judged call (a file open, pragmas, schema read) would
//! cost more than the scores it writes. Each pool keeps the connections it opened and
//! hands one to a blocking task at a time.

use std::sync::{Arc, Mutex};

use keel_store::sql::Db;
use keel_store::{Conn, Store, StoreError};

/// Connections to one store (either backend), for reading or for writing.
pub struct ConnPool {
    store: Arc<Store>,
    idle: Mutex<Vec<Conn>>,
}

impl ConnPool {
    pub fn readers(store: Arc<Store>) -> ConnPool {
        ConnPool {
            store,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn writers(store: Arc<Store>) -> ConnPool {
        // The same connections: every `Store::conn` reads and writes.
        ConnPool::readers(store)
    }

    /// Run `f` with a connection on a blocking thread; the connection goes back to the
    /// pool unless `f` failed (a broken connection is not kept).
    pub async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(Db<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let taken = pool.idle.lock().ok().and_then(|mut v| v.pop());
            let conn = match taken {
                Some(c) => c,
                None => pool.store.conn()?,
            };
            let out = f(conn.db());
            if out.is_ok() {
                if let Ok(mut idle) = pool.idle.lock() {
                    idle.push(conn);
                }
            }
            out
        })
        .await;
        Ok(joined??)
    }
}
