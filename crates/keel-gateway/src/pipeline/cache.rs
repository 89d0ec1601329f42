//! The exact-match response cache: the same request (model, messages, parameters, tools
//! — everything that reaches the upstream), from the same tenant, gets the stored reply
//! without an upstream call.
//!
//! - Only whole (non-streamed) replies are cached and served; a streamed request always
//!   goes upstream.
//! - A request with `temperature` above 0 (or unset, which providers treat as 1) is not
//!   cached unless `[cache] nonzero_temperature = true`: its caller asked for variety.
//! - `x-keel-cache: bypass` skips the cache for one request (no read, no write).
//! - Entries expire `ttl` after they were stored. Size is bounded by bytes (`max_bytes`,
//!   the reply's JSON size) and by count: every entry weighs at least
//!   `max_bytes / max_entries`, so the cache never holds more than `max_entries`.
//! - A hit is traced with `cache = "hit"`, cost $0 (no upstream call was made) and
//!   `saved_cost` = what the call cost when it was made.
//! - Embeddings (`/v1/embeddings`) are cached the same way in a map of their own (the
//!   same `ttl` and bounds): a vector is a pure function of model and input, so every
//!   embeddings request is cacheable.
//! - With `backend = "redis"` replicas share entries too (`cache_shared`).

use std::sync::Arc;

use keel_core::chat::{ChatRequest, ChatResponse};
use keel_core::config::cache::CacheSettings;
use keel_core::embeddings::{EmbeddingRequest, EmbeddingResponse};
use keel_core::money::Nanos;
use sha2::{Digest, Sha256};

use crate::state::ModelRoute;

/// The request header that skips the cache.
pub const CACHE_HEADER: &str = "x-keel-cache";

/// A stored reply and what it cost (`None`: unpriced).
pub struct Cached {
    pub resp: ChatResponse,
    pub cost: Option<Nanos>,
}

/// A cache under the settings' bounds, each entry weighing its reply's JSON size (at
/// least `max_bytes / max_entries`).
fn bounded<V: Send + Sync + 'static>(
    s: &CacheSettings,
    json: fn(&V) -> serde_json::Result<Vec<u8>>,
) -> moka::sync::Cache<[u8; 32], Arc<V>> {
    let floor = u32::try_from((s.max_bytes / s.max_entries.max(1)).max(1)).unwrap_or(u32::MAX);
    moka::sync::Cache::builder()
        .max_capacity(s.max_bytes)
        .time_to_live(s.ttl)
        .weigher(move |_k: &[u8; 32], v: &Arc<V>| {
            let size = json(v).map_or(0, |b| b.len());
            u32::try_from(size).unwrap_or(u32::MAX).max(floor)
        })
        .build()
}

/// Stored vectors and what they cost.
pub struct CachedEmbeddings {
    pub resp: EmbeddingResponse,
    pub cost: Option<Nanos>,
}

pub struct ResponseCache {
    entries: moka::sync::Cache<[u8; 32], Arc<Cached>>,
    embeddings: moka::sync::Cache<[u8; 32], Arc<CachedEmbeddings>>,
    nonzero_temperature: bool,
    /// Redis, when replicas share the cache.
    shared: Option<super::cache_shared::SharedStore>,
}

/// The Redis key kinds.
const CHAT: &str = "chat";
const EMBEDDINGS: &str = "emb";

impl ResponseCache {
    pub fn new(s: &CacheSettings) -> ResponseCache {
        ResponseCache {
            entries: bounded(s, |c: &Cached| serde_json::to_vec(&c.resp)),
            embeddings: bounded(s, |c: &CachedEmbeddings| serde_json::to_vec(&c.resp)),
            nonzero_temperature: s.nonzero_temperature,
            shared: s
                .shared
                .as_ref()
                .and_then(|r| super::cache_shared::SharedStore::new(r, s.ttl, s.max_bytes)),
        }
    }

    /// The key of `req` (already rendered and bound for `route`), or `None` when it is
    /// not cacheable.
    pub fn key(
        &self,
        tenant: Option<&str>,
        route: &ModelRoute,
        req: &ChatRequest,
    ) -> Option<[u8; 32]> {
        if req.stream {
            return None;
        }
        let deterministic = req.temperature.is_some_and(|t| t == 0.0);
        if !deterministic && !self.nonzero_temperature {
            return None;
        }
        let body = serde_json::to_vec(req).ok()?;
        let mut h = Sha256::new();
        h.update(tenant.unwrap_or("").as_bytes());
        h.update([0]);
        h.update(route.config.name.as_bytes());
        h.update([0]);
        h.update(route.config.upstream_model.as_bytes());
        h.update([0]);
        h.update(&body);
        Some(h.finalize().into())
    }

    /// The key of an embeddings request (bound for `route`).
    pub fn embeddings_key(
        &self,
        tenant: Option<&str>,
        route: &ModelRoute,
        req: &EmbeddingRequest,
    ) -> Option<[u8; 32]> {
        let body = serde_json::to_vec(req).ok()?;
        let mut h = Sha256::new();
        h.update(b"embeddings\0");
        h.update(tenant.unwrap_or("").as_bytes());
        h.update([0]);
        h.update(route.config.name.as_bytes());
        h.update([0]);
        h.update(&body);
        Some(h.finalize().into())
    }

    pub async fn get_embeddings(&self, key: &[u8; 32]) -> Option<Arc<CachedEmbeddings>> {
        if let Some(hit) = self.embeddings.get(key) {
            return Some(hit);
        }
        let (resp, cost) = self.shared.as_ref()?.get(EMBEDDINGS, key).await?;
        let hit = Arc::new(CachedEmbeddings { resp, cost });
        self.embeddings.insert(*key, hit.clone());
        Some(hit)
    }

    pub fn put_embeddings(&self, key: [u8; 32], resp: EmbeddingResponse, cost: Option<Nanos>) {
        if let Some(s) = &self.shared {
            s.put(EMBEDDINGS, &key, &resp, cost);
        }
        self.embeddings
            .insert(key, Arc::new(CachedEmbeddings { resp, cost }));
    }

    pub async fn get(&self, key: &[u8; 32]) -> Option<Arc<Cached>> {
        if let Some(hit) = self.entries.get(key) {
            return Some(hit);
        }
        let (resp, cost) = self.shared.as_ref()?.get(CHAT, key).await?;
        let hit = Arc::new(Cached { resp, cost });
        self.entries.insert(*key, hit.clone());
        Some(hit)
    }

    pub fn put(&self, key: [u8; 32], resp: ChatResponse, cost: Option<Nanos>) {
        if let Some(s) = &self.shared {
            s.put(CHAT, &key, &resp, cost);
        }
        self.entries.insert(key, Arc::new(Cached { resp, cost }));
    }
}
