//! The response cache shared by replicas (`[cache] backend = "redis"`): each entry is
//! also kept in Redis under `{key_prefix}cache:{kind}:{key hex}` with the cache's `ttl`,
//! so a reply cached by one replica serves the others. The process's own cache stays in
//! front (the same key always means the same reply, so it never serves anything stale);
//! Redis is read on a local miss, within `timeout` — slower, or Redis down, is a miss
//! and the call goes upstream. Writes are sent off the request path; an entry larger
//! than `max_bytes` is not shared, as it would not be kept in memory either.

use std::time::Duration;

use keel_core::config::cache::SharedCache;
use keel_core::money::Nanos;
use redis::aio::ConnectionManager;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// An entry as stored in Redis.
#[derive(Serialize, Deserialize)]
struct Stored<R> {
    resp: R,
    cost_nanos: Option<Nanos>,
}

pub struct SharedStore {
    client: redis::Client,
    /// Made on first use, inside the runtime (making it spawns a task): a gateway built
    /// outside one (`keel shadow`, `keel online run`, which never read the cache) is fine.
    conn: std::sync::OnceLock<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    ttl_ms: u64,
    max_bytes: u64,
}

impl SharedStore {
    /// Connect lazily: a Redis that is down at start is a miss per call, not a refusal
    /// to start.
    pub fn new(s: &SharedCache, ttl: Duration, max_bytes: u64) -> Option<SharedStore> {
        let client = redis::Client::open(s.redis_url.as_str())
            .map_err(|e| tracing::warn!(error = %e, "[cache] redis_url is unusable: the cache is not shared"))
            .ok()?;
        Some(SharedStore {
            client,
            conn: std::sync::OnceLock::new(),
            prefix: s.key_prefix.clone(),
            timeout: s.timeout,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
            max_bytes,
        })
    }

    /// The connection, made lazily (it connects, and reconnects, by itself).
    fn conn(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.conn.get() {
            return Some(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let made = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| tracing::warn!(error = %e, "[cache] cannot reach Redis: a miss"))
            .ok()?;
        // Two first calls at once may both make one; the first kept wins.
        let _ = self.conn.set(made);
        self.conn.get().cloned()
    }

    fn redis_key(&self, kind: &str, key: &[u8; 32]) -> String {
        use std::fmt::Write;
        let mut k = format!("{}cache:{kind}:", self.prefix);
        for b in key {
            let _ = write!(k, "{b:02x}");
        }
        k
    }

    /// The entry under `key`, if Redis answers within the timeout.
    pub async fn get<R: DeserializeOwned>(
        &self,
        kind: &str,
        key: &[u8; 32],
    ) -> Option<(R, Option<Nanos>)> {
        let mut conn = self.conn()?;
        let k = self.redis_key(kind, key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&k);
        let read = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        let bytes = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(found)) => found?,
            Ok(Err(error)) => {
                tracing::debug!(%error, "shared cache read failed: a miss");
                return None;
            }
            Err(_) => return None,
        };
        let stored: Stored<R> = serde_json::from_slice(&bytes).ok()?;
        Some((stored.resp, stored.cost_nanos))
    }

    /// Share an entry, off the request path.
    pub fn put<R: Serialize>(&self, kind: &str, key: &[u8; 32], resp: &R, cost: Option<Nanos>) {
        let Ok(bytes) = serde_json::to_vec(&Stored {
            resp,
            cost_nanos: cost,
        }) else {
            return;
        };
        if bytes.len() as u64 > self.max_bytes {
            return;
        }
        let Some(mut conn) = self.conn() else {
            return;
        };
        let k = self.redis_key(kind, key);
        let ttl = self.ttl_ms;
        tokio::spawn(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&k).arg(bytes).arg("PX").arg(ttl);
            if let Err(error) = cmd.query_async::<()>(&mut conn).await {
                tracing::debug!(%error, "shared cache write failed");
            }
        });
    }
}
