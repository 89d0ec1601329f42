//! The Responses API's memory: stored responses and the conversations they end, so
//! `previous_response_id` continues a conversation on any upstream (none of which keeps
//! state for Keel) and `GET`/`DELETE /v1/responses/{id}` work.
//!
//! The store is the truth, shared by replicas; it is written off the request path, by
//! group commit: responses queue up, and one blocking task at a time (tracked by
//! `afterwork`, so shutdown waits for it) writes everything queued in one transaction
//! on one kept connection, until the queue is empty (a failed write is tried again,
//! [`WRITE_TRIES`] times in all, backing off). Until its write lands a response is held
//! in memory, so the next turn — usually sent the moment an answer arrives — finds it;
//! once it is in the store it is read from there, so a delete or an erasure made through
//! any replica is seen by all at once. Held at most [`CACHE_BYTES`] of JSON, for at
//! most [`CACHE_TTL`] (only a gateway without a store keeps them that long).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_store::responses::{delete_response, get_response, save_responses, StoredResponse};
use keel_store::Store;

use crate::error::GatewayError;
use crate::state::AppState;
use crate::store_task::on_store;

const WHAT: &str = "stored responses";
/// Attempts at writing a group before it is given up (logged).
pub const WRITE_TRIES: u32 = 3;

/// The most JSON (responses and conversations) the cache holds.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How long a response not yet in the store is held.
pub const CACHE_TTL: Duration = Duration::from_secs(3600);

/// The in-process side of stored responses.
pub struct Conversations {
    recent: moka::sync::Cache<String, Arc<StoredResponse>>,
    /// Responses waiting for the store, and whether a flush is running.
    queue: Arc<Mutex<Queue>>,
    /// The flushes' connection, opened once.
    conn: Arc<Mutex<Option<keel_store::Conn>>>,
    /// Ids deleted here lately: a store write still in flight for one of them deletes
    /// what it wrote, so a `DELETE` sent right after the answer always wins.
    deleted: moka::sync::Cache<String, ()>,
}

impl Default for Conversations {
    fn default() -> Self {
        Conversations {
            recent: moka::sync::Cache::builder()
                .max_capacity(CACHE_BYTES)
                .weigher(|_, r: &Arc<StoredResponse>| {
                    let bytes = r.response_json.len() + r.conversation_json.len() + 256;
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .time_to_live(CACHE_TTL)
                .build(),
            queue: Arc::default(),
            conn: Arc::default(),
            deleted: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }
}

impl Conversations {
    /// Keep `r`: in the cache now, in the store (when the gateway has one) off the
    /// request path. A failed write is logged; the cache still serves this replica.
    pub fn remember(&self, app: &AppState, r: StoredResponse) {
        let r = Arc::new(r);
        self.recent.insert(r.id.clone(), r.clone());
        let Some(store) = app.store.clone() else {
            return;
        };
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.rows.push(r);
            !std::mem::replace(&mut q.flushing, true)
        };
        if start {
            let flush = Flush {
                store,
                queue: self.queue.clone(),
                conn: self.conn.clone(),
                deleted: self.deleted.clone(),
                recent: self.recent.clone(),
            };
            app.afterwork.spawn_blocking(move || flush.run());
        }
    }

    /// The stored response `id`: from the cache, else the store.
    pub async fn find(
        &self,
        store: Option<&Arc<Store>>,
        id: &str,
    ) -> Result<Option<Arc<StoredResponse>>, GatewayError> {
        if self.deleted.contains_key(id) {
            return Ok(None);
        }
        if let Some(r) = self.recent.get(id) {
            return Ok(Some(r));
        }
        let Some(store) = store.cloned() else {
            return Ok(None);
        };
        let key = id.to_string();
        let found = on_store(&store, WHAT, move |s| get_response(s.conn()?.db(), &key)).await?;
        // Not cached: the store is the truth (a delete or an erasure on another replica
        // must be seen here at once).
        Ok(found.map(Arc::new))
    }

    /// Delete the stored response `id` from the cache and the store.
    pub async fn forget(&self, store: Option<&Arc<Store>>, id: &str) -> Result<(), GatewayError> {
        self.deleted.insert(id.to_string(), ());
        self.recent.invalidate(id);
        if let Some(store) = store.cloned() {
            let key = id.to_string();
            on_store(&store, WHAT, move |s| delete_response(s.conn()?.db(), &key)).await?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Queue {
    rows: Vec<Arc<StoredResponse>>,
    flushing: bool,
}

/// One group-commit flush: write what is queued, again until nothing is.
struct Flush {
    store: Arc<Store>,
    queue: Arc<Mutex<Queue>>,
    conn: Arc<Mutex<Option<keel_store::Conn>>>,
    deleted: moka::sync::Cache<String, ()>,
    /// Written rows leave it: from then on the store answers.
    recent: moka::sync::Cache<String, Arc<StoredResponse>>,
}

impl Flush {
    fn run(self) {
        loop {
            let rows = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.rows.is_empty() {
                    q.flushing = false;
                    return;
                }
                std::mem::take(&mut q.rows)
            };
            let mut tries = 0;
            loop {
                tries += 1;
                match self.write(&rows) {
                    Ok(()) => {
                        for r in &rows {
                            self.recent.invalidate(&r.id);
                        }
                        break;
                    }
                    Err(error) if tries < WRITE_TRIES => {
                        tracing::debug!(%error, tries, "responses: write failed; trying again");
                        // A broken connection is opened again.
                        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        std::thread::sleep(Duration::from_millis(100 << tries));
                    }
                    Err(error) => {
                        tracing::warn!(%error, responses = rows.len(), "responses: cannot store them (this replica still serves them for an hour)");
                        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        break;
                    }
                }
            }
        }
    }

    fn write(&self, rows: &[Arc<StoredResponse>]) -> Result<(), keel_store::StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let conn = match guard.as_mut() {
            Some(c) => c,
            None => guard.insert(self.store.conn()?),
        };
        let refs: Vec<&StoredResponse> = rows.iter().map(Arc::as_ref).collect();
        let written = save_responses(&*conn, &refs).and_then(|()| {
            // Deleted while on their way: `forget` marks before it deletes, so checking
            // after the write leaves nothing behind.
            for r in rows.iter().filter(|r| self.deleted.contains_key(&r.id)) {
                delete_response(&*conn, &r.id)?;
            }
            Ok(())
        });
        if written.is_err() && conn.is_closed() {
            // The store went away (a PostgreSQL restart): the next write opens another.
            *guard = None;
        }
        written
    }
}
