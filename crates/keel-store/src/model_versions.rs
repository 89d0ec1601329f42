//! The versions behind each model name (migration 0024): what the provider said answered
//! each call, kept per deployment, so a change of the model under a pinned name is seen
//! within a pass of the watch (`keel_gateway::model_watch`) and survives restarts.
//!
//! A call's version is its `system_fingerprint` when the provider sent one, else the model
//! the response reported. A version counts as **new** for a deployment when it was never
//! seen there, or not within the memory window (`memory_ms`) — so a provider serving two
//! fingerprints at once does not announce a change on every switch — and only when some
//! other version was seen there before (the first version ever is no change).

use serde::Serialize;

use crate::error::StoreError;
use crate::sql::{Db, Dialect};
use crate::values;

/// Calls of one (model, deployment, version) among the traces read in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub model: String,
    pub deployment: String,
    pub version: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub calls: i64,
    pub first_trace_id: String,
}

/// A version new to a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionChange {
    pub model: String,
    pub deployment: String,
    /// The version last seen before (the most recently seen other version).
    pub old_version: String,
    pub new_version: String,
    pub first_trace_id: String,
    pub at_ms: i64,
}

/// One stored version, as `keel models` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelVersion {
    pub model: String,
    pub deployment: String,
    pub version: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub calls: i64,
    pub first_trace_id: String,
}

/// Where the watch stands; a first look starts at the traces of `start_ms` on.
fn watermark(db: Db<'_>, start_ms: i64) -> Result<i64, StoreError> {
    let stored: Option<i64> = db.query_opt(
        "SELECT traces_rowid FROM model_version_watch WHERE id = 1",
        &[],
        |r| r.get(0),
    )?;
    match stored {
        Some(w) => Ok(w),
        None => db.query_row(
            "SELECT COALESCE((SELECT MIN(rowid) FROM traces WHERE started_at_ms >= ?1),
                             (SELECT MAX(rowid) + 1 FROM traces), 1) - 1",
            &values![start_ms],
            |r| r.get(0),
        ),
    }
}

/// The last trace rowid a pass may read: every trace at or below it is committed.
///
/// On SQLite writes take turns, so rowids commit in order and the largest is it. On
/// PostgreSQL replicas write batches at once and a batch can commit after a later
/// one (its rowids drawn first): a cursor past the later one would skip it for good.
/// A SHARE lock waits for the writes in flight (and holds new ones back the moment it
/// takes to read the largest rowid), so nothing below the answer is still to come.
fn committed_rowid(db: Db<'_>) -> Result<i64, StoreError> {
    const MAX_ROWID: &str = "SELECT COALESCE(MAX(rowid), 0) FROM traces";
    match db.dialect() {
        Dialect::Sqlite => db.query_row(MAX_ROWID, &[], |r| r.get(0)),
        Dialect::Postgres => db.transaction(|tx| {
            tx.batch("LOCK TABLE traces IN SHARE MODE")?;
            tx.query_row(MAX_ROWID, &[], |r| r.get(0))
        }),
    }
}

/// One pass: read up to `limit` traces written since the last pass (a first pass starts
/// at `start_ms`), record every version they show, and return the changes found, oldest
/// first. One transaction: a crash repeats the pass, never loses or doubles a change.
/// Replicas take turns (the watch's lock): a pass reads from where the last one, of
/// whichever replica, stopped.
pub fn watch_pass<'c>(
    db: impl Into<Db<'c>>,
    start_ms: i64,
    memory_ms: i64,
    limit: usize,
) -> Result<Vec<VersionChange>, StoreError> {
    let db = db.into();
    // Read before the pass's transaction on PostgreSQL (its lock would hold back the
    // writers for the whole pass); still a safe bound however long the pass waits.
    let hi_before = match db.dialect() {
        Dialect::Postgres => Some(committed_rowid(db)?),
        Dialect::Sqlite => None,
    };
    db.exclusive_for("model-version-watch", |tx| {
        let after = watermark(tx, start_ms)?;
        let hi = match hi_before {
            Some(hi) => hi,
            None => committed_rowid(tx)?,
        };
        // The pass's rows, bounded; the last rowid read is where the next pass starts.
        let upto: i64 = tx.query_row(
            "SELECT COALESCE(MAX(rowid), ?2) FROM (
               SELECT rowid FROM traces WHERE rowid > ?1 AND rowid <= ?2 ORDER BY rowid LIMIT ?3) AS page",
            &values![after, hi, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )?;
        // Each row's sighting in rowid order, grouped here: a pass holds a handful of
        // groups, and SQL's GROUP BY sorted every row to find them. Rows are read
        // borrowed and compared with the last row's group first (runs of one model are
        // the rule): a row allocates only when it starts a group.
        let mut groups: Vec<(Sighting, i64)> = Vec::new();
        let mut last = 0usize;
        tx.for_each(
            "SELECT model_requested, COALESCE(provider, '') || '/' || COALESCE(upstream_model, ''),
                    COALESCE(NULLIF(system_fingerprint, ''), served_model), started_at_ms, rowid
               FROM traces
              WHERE rowid > ?1 AND rowid <= ?2 AND status = 'ok' AND model_requested IS NOT NULL
                AND COALESCE(NULLIF(system_fingerprint, ''), served_model) IS NOT NULL
              ORDER BY rowid",
            &values![after, upto],
            |r| {
                let (Some(model), Some(deployment), Some(version)) =
                    (r.text(0)?, r.text(1)?, r.text(2)?)
                else {
                    return Ok(());
                };
                let at_ms: i64 = r.get(3)?;
                let same = |s: &Sighting| {
                    s.model == model && s.deployment == deployment && s.version == version
                };
                let seen = match groups.get(last) {
                    Some((s, _)) if same(s) => Some(last),
                    _ => groups.iter().position(|(s, _)| same(s)),
                };
                match seen.and_then(|i| groups.get_mut(i).map(|g| (i, g))) {
                    Some((i, (s, _))) => {
                        s.first_ms = s.first_ms.min(at_ms);
                        s.last_ms = s.last_ms.max(at_ms);
                        s.calls += 1;
                        last = i;
                    }
                    None => {
                        last = groups.len();
                        groups.push((
                            Sighting {
                                model: model.to_string(),
                                deployment: deployment.to_string(),
                                version: version.to_string(),
                                first_ms: at_ms,
                                last_ms: at_ms,
                                calls: 1,
                                first_trace_id: String::new(),
                            },
                            r.get(4)?,
                        ));
                    }
                }
                Ok(())
            },
        )?;
        let mut changes = Vec::new();
        for (mut s, first) in groups {
            s.first_trace_id = tx.query_row(
                "SELECT id FROM traces WHERE rowid = ?1",
                &values![first],
                |r| r.get(0),
            )?;
            if let Some(c) = record(tx, &s, memory_ms)? {
                changes.push(c);
            }
        }
        tx.execute(
            "INSERT INTO model_version_watch (id, traces_rowid) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET traces_rowid = excluded.traces_rowid",
            &values![upto.max(after)],
        )?;
        Ok(changes)
    })
}

/// Record one sighting; the change it is, if its version is new to its deployment.
pub fn record<'c>(
    db: impl Into<Db<'c>>,
    s: &Sighting,
    memory_ms: i64,
) -> Result<Option<VersionChange>, StoreError> {
    let db = db.into();
    let known: Option<i64> = db.query_opt(
        "SELECT last_seen_ms FROM model_versions WHERE model = ?1 AND deployment = ?2 AND version = ?3",
        &values![&s.model, &s.deployment, &s.version],
        |r| r.get(0),
    )?;
    let fresh = known.is_none_or(|last| last < s.first_ms.saturating_sub(memory_ms));
    let previous: Option<String> = if fresh {
        db.query_opt(
            "SELECT version FROM model_versions
              WHERE model = ?1 AND deployment = ?2 AND version <> ?3
              ORDER BY last_seen_ms DESC LIMIT 1",
            &values![&s.model, &s.deployment, &s.version],
            |r| r.get(0),
        )?
    } else {
        None
    };
    // The stored row named by its table: PostgreSQL reads a bare column here as
    // ambiguous with `excluded`'s (and has no two-argument MAX).
    db.execute(
        "INSERT INTO model_versions
           (model, deployment, version, first_seen_ms, last_seen_ms, calls, first_trace_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (model, deployment, version) DO UPDATE SET
           last_seen_ms = CASE WHEN model_versions.last_seen_ms > excluded.last_seen_ms
                               THEN model_versions.last_seen_ms ELSE excluded.last_seen_ms END,
           calls = model_versions.calls + excluded.calls",
        &values![
            &s.model,
            &s.deployment,
            &s.version,
            s.first_ms,
            s.last_ms,
            s.calls,
            &s.first_trace_id
        ],
    )?;
    Ok(previous.map(|old| VersionChange {
        model: s.model.clone(),
        deployment: s.deployment.clone(),
        old_version: old,
        new_version: s.version.clone(),
        first_trace_id: s.first_trace_id.clone(),
        at_ms: s.first_ms,
    }))
}

/// Every version seen, by model, deployment and first sighting.
pub fn versions<'c>(db: impl Into<Db<'c>>) -> Result<Vec<ModelVersion>, StoreError> {
    db.into().query(
        "SELECT model, deployment, version, first_seen_ms, last_seen_ms, calls, first_trace_id
           FROM model_versions ORDER BY model, deployment, first_seen_ms",
        &[],
        |r| {
            Ok(ModelVersion {
                model: r.get(0)?,
                deployment: r.get(1)?,
                version: r.get(2)?,
                first_seen_ms: r.get(3)?,
                last_seen_ms: r.get(4)?,
                calls: r.get(5)?,
                first_trace_id: r.get(6)?,
            })
        },
    )
}

#[cfg(test)]
#[path = "model_versions_tests.rs"]
mod tests;
