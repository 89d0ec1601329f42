//! Dataset versions and dataset drafts (migration 0023).
//!
//! A version is what `keel eval lock` locked: the hash, the case ids, and what changed
//! since the suite's previous version. A draft is a case proposed from the dashboard,
//! held here until `keel dataset pull` writes it into the suite's file.

use serde::Serialize;

use crate::error::StoreError;
use crate::sql::Db;
use crate::values;

/// One locked version of a suite's dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetVersion {
    pub suite: String,
    pub version: i64,
    pub hash: String,
    pub cases: i64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub actor: String,
    pub reason: Option<String>,
    pub at_ms: i64,
}

fn ids(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Record that `suite`'s dataset was locked at `hash` with `case_ids`; returns the new
/// version's number. Added and removed ids are counted against the previous version
/// (every id is added in the first). Locking the hash of the latest version again
/// records nothing and returns that version.
pub fn record_version<'c>(
    db: impl Into<Db<'c>>,
    suite: &str,
    hash: &str,
    case_ids: &[String],
    actor: &str,
    reason: Option<&str>,
    at_ms: i64,
) -> Result<i64, StoreError> {
    let db = db.into();
    let previous: Option<(i64, String, String)> = db.query_opt(
        "SELECT version, hash, case_ids_json FROM dataset_versions
          WHERE suite = ?1 ORDER BY version DESC LIMIT 1",
        &values![suite],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (next, before) = match &previous {
        Some((v, h, _)) if h == hash => return Ok(*v),
        Some((v, _, json)) => (v + 1, ids(json)),
        None => (1, Vec::new()),
    };
    let before_set: std::collections::HashSet<&String> = before.iter().collect();
    let now_set: std::collections::HashSet<&String> = case_ids.iter().collect();
    let added: Vec<&String> = case_ids
        .iter()
        .filter(|id| !before_set.contains(id))
        .collect();
    let removed: Vec<&String> = before.iter().filter(|id| !now_set.contains(id)).collect();
    db.execute(
        "INSERT INTO dataset_versions
           (suite, version, hash, cases, case_ids_json, added_json, removed_json, actor, reason, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &values![
            suite,
            next,
            hash,
            case_ids.len(),
            json(case_ids),
            json(&added),
            json(&removed),
            actor,
            reason,
            at_ms
        ],
    )?;
    Ok(next)
}

/// A list of ids as a JSON array.
fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Every version of `suite`, newest first.
pub fn versions<'c>(db: impl Into<Db<'c>>, suite: &str) -> Result<Vec<DatasetVersion>, StoreError> {
    db.into().query(
        "SELECT suite, version, hash, cases, added_json, removed_json, actor, reason, at_ms
           FROM dataset_versions WHERE suite = ?1 ORDER BY version DESC",
        &values![suite],
        |r| {
            Ok(DatasetVersion {
                suite: r.get(0)?,
                version: r.get(1)?,
                hash: r.get(2)?,
                cases: r.get(3)?,
                added: ids(&r.get::<String>(4)?),
                removed: ids(&r.get::<String>(5)?),
                actor: r.get(6)?,
                reason: r.get(7)?,
                at_ms: r.get(8)?,
            })
        },
    )
}

/// The version number `suite`'s dataset had at `hash`, if it was ever locked there.
pub fn version_of<'c>(
    db: impl Into<Db<'c>>,
    suite: &str,
    hash: &str,
) -> Result<Option<i64>, StoreError> {
    db.into().query_row(
        "SELECT MAX(version) FROM dataset_versions WHERE suite = ?1 AND hash = ?2",
        &values![suite, hash],
        |r| r.get(0),
    )
}

/// A case proposed from the dashboard, waiting for `keel dataset pull`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetDraft {
    pub id: i64,
    pub suite: String,
    pub trace_id: String,
    /// The case, one JSONL line.
    pub case_json: String,
    pub added_by: String,
    pub created_at_ms: i64,
}

/// Propose `case_json` (from `trace_id`) for `suite`; `false` when that trace is already
/// proposed for it.
pub fn add_draft<'c>(
    db: impl Into<Db<'c>>,
    suite: &str,
    trace_id: &str,
    case_json: &str,
    added_by: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let n = db.into().execute(
        "INSERT OR IGNORE INTO dataset_drafts (suite, trace_id, case_json, added_by, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &values![suite, trace_id, case_json, added_by, at_ms],
    )?;
    Ok(n == 1)
}

/// `suite`'s drafts not yet pulled, oldest first.
pub fn pending_drafts<'c>(
    db: impl Into<Db<'c>>,
    suite: &str,
) -> Result<Vec<DatasetDraft>, StoreError> {
    db.into().query(
        "SELECT id, suite, trace_id, case_json, added_by, created_at_ms FROM dataset_drafts
          WHERE suite = ?1 AND pulled_at_ms IS NULL ORDER BY id",
        &values![suite],
        |r| {
            Ok(DatasetDraft {
                id: r.get(0)?,
                suite: r.get(1)?,
                trace_id: r.get(2)?,
                case_json: r.get(3)?,
                added_by: r.get(4)?,
                created_at_ms: r.get(5)?,
            })
        },
    )
}

/// Mark drafts as written into the file.
pub fn mark_pulled<'c>(db: impl Into<Db<'c>>, ids: &[i64], at_ms: i64) -> Result<(), StoreError> {
    let sets: Vec<_> = ids.iter().map(|id| values![*id, at_ms]).collect();
    db.into().execute_many(
        "UPDATE dataset_drafts SET pulled_at_ms = ?2 WHERE id = ?1",
        &sets,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn versions_count_what_each_lock_added_and_removed() {
        for (backend, store, _db) in stores() {
            let c = store.conn().unwrap();
            let first = record_version(
                &c,
                "support",
                "h1",
                &s(&["a", "b"]),
                "ana",
                Some("first"),
                1,
            );
            assert_eq!(first.unwrap(), 1, "{backend}");
            assert_eq!(
                record_version(&c, "support", "h1", &s(&["a", "b"]), "ana", None, 2).unwrap(),
                1,
                "{backend}: same hash: same version"
            );
            let second = record_version(
                &c,
                "support",
                "h2",
                &s(&["a", "c", "d"]),
                "bo",
                Some("from production"),
                3,
            );
            assert_eq!(second.unwrap(), 2, "{backend}");
            let v = versions(&c, "support").unwrap();
            assert_eq!(v.len(), 2, "{backend}");
            assert_eq!((v[0].version, v[0].cases), (2, 3), "{backend}");
            assert_eq!(v[0].added, s(&["c", "d"]), "{backend}");
            assert_eq!(v[0].removed, s(&["b"]), "{backend}");
            assert_eq!(v[0].reason.as_deref(), Some("from production"), "{backend}");
            assert_eq!((v[0].actor.as_str(), v[0].at_ms), ("bo", 3), "{backend}");
            assert_eq!(v[1].added, s(&["a", "b"]), "{backend}");
            assert_eq!(
                version_of(&c, "support", "h1").unwrap(),
                Some(1),
                "{backend}"
            );
            assert_eq!(version_of(&c, "support", "h9").unwrap(), None, "{backend}");
            assert!(versions(&c, "other").unwrap().is_empty(), "{backend}");
        }
    }

    #[test]
    fn drafts_wait_until_pulled_once() {
        for (backend, store, _db) in stores() {
            let c = store.conn().unwrap();
            assert!(add_draft(&c, "support", "t1", "{\"id\":\"trace-t1\"}", "ana", 1).unwrap());
            assert!(
                !add_draft(&c, "support", "t1", "{}", "bo", 2).unwrap(),
                "{backend}"
            );
            add_draft(&c, "support", "t2", "{\"id\":\"trace-t2\"}", "ana", 3).unwrap();
            add_draft(&c, "support", "t3", "{}", "ana", 4).unwrap();
            let p = pending_drafts(&c, "support").unwrap();
            assert_eq!(
                p.iter().map(|d| d.trace_id.as_str()).collect::<Vec<_>>(),
                ["t1", "t2", "t3"],
                "{backend}"
            );
            assert_eq!(p[0].case_json, "{\"id\":\"trace-t1\"}", "{backend}");
            mark_pulled(&c, &[p[0].id, p[2].id], 9).unwrap();
            let left = pending_drafts(&c, "support").unwrap();
            assert_eq!(left.len(), 1, "{backend}");
            assert_eq!(left[0].trace_id, "t2", "{backend}");
            mark_pulled(&c, &[], 10).unwrap();
        }
    }
}
