//! The SQLite trace writer's memory of the rollup rows it wrote last.
//!
//! Each batch adds its traces to the rollup rows they touch: read the row, add, write
//! it back (`rollup::RollupBatch::write`). Consecutive batches touch nearly the same
//! rows (the current 5-minute, hour and day buckets of the same models, tenants and
//! features), so reading them back was mostly reading what the writer itself had just
//! written: about a third of the rollups' cost per trace (`bench/instructions.sh`).
//! This cache keeps the rows of the last batch as written and reads only the others.
//!
//! It is only right while nobody else changed `trace_rollups`, so it is dropped:
//! - when another connection or process committed anything since the writer's last
//!   batch (SQLite's `PRAGMA data_version`, read inside the batch's transaction once
//!   it holds the write lock, so no commit can slip in between the check and the use);
//! - when the writer itself recomputed days (`rollup::repair`), or a batch's rollups
//!   failed and were rolled back, or its transaction failed.
//!
//! PostgreSQL has no such cache: replicas write the same rows in turn.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::rollup::{Counts, Dim};
use crate::sql::Db;

/// A rollup row's key as written: resolution, bucket start, origin, dimension and the
/// `value` column.
pub(crate) type CachedKey = (i64, i64, String, Dim, String);

/// The rows of the writer's last batch, as stored after it committed.
#[derive(Debug, Default)]
pub(crate) struct RollupCache {
    rows: HashMap<CachedKey, Counts, foldhash::fast::RandomState>,
    /// The connection's `PRAGMA data_version` when `rows` were right; `None` when no
    /// row is known.
    version: Option<i64>,
    /// Rows taken from here rather than read back (what the tests check).
    hits: u64,
}

impl RollupCache {
    /// Forget every row (the table changed in a way this cache cannot follow).
    pub(crate) fn clear(&mut self) {
        self.rows.clear();
        self.version = None;
    }

    /// Rows known to be stored as they are here, for a batch whose transaction holds
    /// the write lock and read `version`; `None` when another connection committed
    /// since (the rows may be stale).
    pub(crate) fn valid_at(&self, version: i64) -> Option<&RollupCache> {
        (self.version == Some(version)).then_some(self)
    }

    pub(crate) fn get(&self, key: &CachedKey) -> Option<&Counts> {
        self.rows.get(key)
    }

    pub(crate) fn count_hits(&mut self, n: u64) {
        self.hits += n;
    }

    /// Rows taken from the cache instead of read back, since the writer started.
    #[cfg(test)]
    pub(crate) fn hits(&self) -> u64 {
        self.hits
    }

    /// After a batch committed: its rows, as written, under the version read inside it
    /// (the writer's own commit does not change its connection's `data_version`).
    pub(crate) fn replace(&mut self, rows: Vec<(CachedKey, Counts)>, version: i64) {
        self.rows.clear();
        self.rows.extend(rows);
        self.version = Some(version);
    }
}

/// SQLite's count of commits by other connections, as this connection sees it.
pub(crate) fn data_version(db: Db<'_>) -> Result<i64, StoreError> {
    db.query_row("PRAGMA data_version", &[], |r| r.get(0))
}

#[cfg(test)]
#[path = "rollup_cache_tests.rs"]
mod tests;
