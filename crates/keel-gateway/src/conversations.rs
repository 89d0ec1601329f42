//! The Responses API's memory: stored responses and the conversations they end, so
//! `previous_response_id` continues a conversation on any upstream (none of which keeps
//! state for Keel) and `GET`/`DELETE /v1/responses/{id}` work.
//!
//! The store is the truth, shared by replicas; it is written off the request path, by
//! group commit: responses queue up, and one blocking task at a time (tracked by
//! `afterwork`, so shutdown waits for it) writes everything queued in one transaction
//! on one kept connection, until the queue is empty. A bounded in-process
//! cache holds what this replica stored recently, so the next turn — usually sent the
//! moment an answer arrives, before the write lands — never waits on the store: limits
//! [`CACHE_BYTES`] of JSON and [`CACHE_TTL`] per entry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_store::responses::{delete_response, get_response, save_responses, StoredResponse};
use keel_store::Store;

use crate::error::GatewayError;
use crate::store_task::on_store;

const WHAT: &str = "stored responses";
use crate::state::AppState;

/// The most JSON (responses and conversations) the cache holds.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How long a response stays in the cache (the store keeps it after).
pub const CACHE_TTL: Duration = Duration::from_secs(3600);

/// The in-process side of stored responses.
pub struct Conversations {
    recent: moka::sync::Cache<String, Arc<StoredResponse>>,
    /// Responses waiting for the store, and whether a flush is running.
    queue: Arc<Mutex<Queue>>,
    /// The flushes' connection, opened once.
    conn: Arc<Mutex<Option<keel_store::Connection>>>,
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
        let found = on_store(&store, WHAT, move |s| get_response(&s.reader()?, &key)).await?;
        Ok(found.map(|r| {
            let r = Arc::new(r);
            self.recent.insert(r.id.clone(), r.clone());
            r
        }))
    }

    /// Delete the stored response `id` from the cache and the store.
    pub async fn forget(&self, store: Option<&Arc<Store>>, id: &str) -> Result<(), GatewayError> {
        self.deleted.insert(id.to_string(), ());
        self.recent.invalidate(id);
        if let Some(store) = store.cloned() {
            let key = id.to_string();
            on_store(&store, WHAT, move |s| {
                delete_response(&s.writer_conn()?, &key)
            })
            .await?;
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
    conn: Arc<Mutex<Option<keel_store::Connection>>>,
    deleted: moka::sync::Cache<String, ()>,
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
            if let Err(error) = self.write(&rows) {
                tracing::warn!(%error, responses = rows.len(), "responses: cannot store them (GET and previous_response_id still work on this replica for an hour)");
                // A broken connection is opened again by the next flush.
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
    }

    fn write(&self, rows: &[Arc<StoredResponse>]) -> Result<(), keel_store::StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let conn = match guard.as_mut() {
            Some(c) => c,
            None => guard.insert(self.store.writer_conn()?),
        };
        let refs: Vec<&StoredResponse> = rows.iter().map(Arc::as_ref).collect();
        save_responses(conn, &refs)?;
        // Deleted while on their way: `forget` marks before it deletes, so checking
        // after the write leaves nothing behind.
        for r in rows.iter().filter(|r| self.deleted.contains_key(&r.id)) {
            delete_response(conn, &r.id)?;
        }
        Ok(())
    }
}
