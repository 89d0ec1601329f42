//! Store connections for the judges, kept between calls.
//!
//! Judging is off the request path, but at a high sample rate it runs for every call: a
//! SQLite connection opened per judged call (a file open, pragmas, schema read) would
//! cost more than the scores it writes. Each pool keeps the connections it opened and
//! hands one to a blocking task at a time.

use std::sync::{Arc, Mutex};

use keel_store::{Connection, Store, StoreError};

/// Reading (`reader`) or writing (`writer_conn`) connections to one store.
pub struct ConnPool {
    store: Arc<Store>,
    writer: bool,
    idle: Mutex<Vec<Connection>>,
}

impl ConnPool {
    pub fn readers(store: Arc<Store>) -> ConnPool {
        ConnPool {
            store,
            writer: false,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn writers(store: Arc<Store>) -> ConnPool {
        ConnPool {
            store,
            writer: true,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Run `f` with a connection on a blocking thread; the connection goes back to the
    /// pool unless `f` failed (a broken connection is not kept).
    pub async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let taken = pool.idle.lock().ok().and_then(|mut v| v.pop());
            let mut conn = match taken {
                Some(c) => c,
                None if pool.writer => pool.store.writer_conn()?,
                None => pool.store.reader()?,
            };
            let out = f(&mut conn);
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
