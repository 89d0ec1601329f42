//! `[cache]`: the exact-match response cache.
//!
//! ```toml
//! [cache]
//! enabled = true
//! ttl = "1h"                    # an entry is served at most this long after it was stored
//! max_entries = 10000
//! max_bytes = 67108864          # 64 MiB of cached replies
//! nonzero_temperature = false   # cache requests with temperature > 0 too
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
}

/// The validated cache settings; `None` in `Config` when the cache is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub max_entries: u64,
    pub max_bytes: u64,
    pub nonzero_temperature: bool,
}

pub(crate) fn validate_cache(
    raw: &RawCache,
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
    })
}
