//! `[cache]`: the exact-match response cache.
//!
//! ```toml
//! [cache]
//! enabled = true
//! ttl = "1h"                    # an entry is served at most this long after it was stored
//! max_entries = 10000
//! max_bytes = 67108864          # 64 MiB of cached replies
//! nonzero_temperature = false   # cache requests with temperature > 0 too
//! backend = "memory"            # or "redis": replicas share the cache
//! redis_url = "redis://127.0.0.1:6379"   # backend = "redis" (default: [limits] redis_url)
//! key_prefix = "keel:"          # default: [limits] key_prefix, else "keel:"
//! timeout = "50ms"              # a Redis read slower than this is a miss
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigIssue;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: Option<bool>,
    pub ttl: Option<String>,
    pub max_entries: Option<u64>,
    pub max_bytes: Option<u64>,
    pub nonzero_temperature: Option<bool>,
    pub backend: Option<String>,
    pub redis_url: Option<String>,
    pub key_prefix: Option<String>,
    pub timeout: Option<String>,
}

/// Where replicas share cached replies (`backend = "redis"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCache {
    pub redis_url: String,
    pub key_prefix: String,
    /// A read slower than this is a miss (the call goes upstream).
    pub timeout: Duration,
}

/// The validated cache settings; `None` in `Config` when the cache is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub max_entries: u64,
    pub max_bytes: u64,
    pub nonzero_temperature: bool,
    /// `None`: this process's memory only.
    pub shared: Option<SharedCache>,
}

pub(crate) fn validate_cache(
    raw: &RawCache,
    limits: (Option<&str>, Option<&str>),
    duration: &mut dyn FnMut(&str, Option<&str>, Duration) -> Duration,
    issues: &mut Vec<ConfigIssue>,
) -> Option<CacheSettings> {
    if !raw.enabled.unwrap_or(false) {
        return None;
    }
    let ttl = duration("cache.ttl", raw.ttl.as_deref(), Duration::from_secs(3600));
    let max_entries = raw.max_entries.unwrap_or(10_000);
    let max_bytes = raw.max_bytes.unwrap_or(64 * 1024 * 1024);
    for (key, v) in [("max_entries", max_entries), ("max_bytes", max_bytes)] {
        if v == 0 {
            issues.push(ConfigIssue {
                path: format!("cache.{key}"),
                message: "must be greater than zero".into(),
                hint: Some("or set enabled = false".into()),
            });
        }
    }
    Some(CacheSettings {
        ttl,
        max_entries,
        max_bytes,
        nonzero_temperature: raw.nonzero_temperature.unwrap_or(false),
        shared: shared(raw, limits, duration, issues),
    })
}

/// `backend = "redis"`: its URL (or `[limits]`'s), prefix and read timeout.
fn shared(
    raw: &RawCache,
    (limits_url, limits_prefix): (Option<&str>, Option<&str>),
    duration: &mut dyn FnMut(&str, Option<&str>, Duration) -> Duration,
    issues: &mut Vec<ConfigIssue>,
) -> Option<SharedCache> {
    let mut issue = |path: &str, message: &str, hint: &str| {
        issues.push(ConfigIssue {
            path: format!("cache.{path}"),
            message: message.into(),
            hint: Some(hint.into()),
        })
    };
    match raw.backend.as_deref().unwrap_or("memory") {
        "memory" => {
            for (key, set) in [
                ("redis_url", raw.redis_url.is_some()),
                ("key_prefix", raw.key_prefix.is_some()),
                ("timeout", raw.timeout.is_some()),
            ] {
                if set {
                    issue(
                        key,
                        "only applies to backend = \"redis\"",
                        "set backend = \"redis\", or remove it",
                    );
                }
            }
            None
        }
        "redis" => {
            let Some(url) = raw.redis_url.as_deref().or(limits_url) else {
                issue(
                    "redis_url",
                    "backend = \"redis\" needs a Redis URL",
                    "set redis_url = \"redis://127.0.0.1:6379\" here or in [limits]",
                );
                return None;
            };
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                issue(
                    "redis_url",
                    &format!("`{url}` is not a redis:// URL"),
                    "e.g. \"redis://127.0.0.1:6379\"",
                );
            }
            Some(SharedCache {
                redis_url: url.to_string(),
                key_prefix: raw
                    .key_prefix
                    .as_deref()
                    .or(limits_prefix)
                    .unwrap_or("keel:")
                    .to_string(),
                timeout: duration(
                    "cache.timeout",
                    raw.timeout.as_deref(),
                    Duration::from_millis(50),
                ),
            })
        }
        other => {
            issue(
                "backend",
                &format!("unknown cache backend `{other}`"),
                "use \"memory\" (the default) or \"redis\"",
            );
            None
        }
    }
}
