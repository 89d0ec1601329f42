//! Prompt versions and labels in the store. A push creates a new version only when no
//! version has its content hash (so pushing is idempotent, and one content is one
//! version); a label moves only by [`set_label`] or [`rollback_label`], and every move
//! is kept in `prompt_label_moves` and in the audit log, in the same transaction as the
//! change.

use rusqlite::Connection;
use serde::Serialize;
use serde_json::json;

use crate::audit::{record_audit, NewAuditEvent};
use crate::db::Store;
use crate::error::StoreError;
use crate::sql::{Db, Row};
use crate::values;

/// Why a prompt operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PromptStoreError {
    #[error("prompt `{name}` has no version {version} — `keel prompt history {name}` lists its versions")]
    NoSuchVersion { name: String, version: i64 },
    #[error("prompt `{name}` has no versions — run `keel prompt push` first")]
    NoSuchPrompt { name: String },
    #[error("prompt `{name}` has no label `{label}` — set it with `keel prompt label {name} VERSION {label}`")]
    NoSuchLabel { name: String, label: String },
    #[error("label {label} of {name} has no earlier position")]
    NoEarlierPosition { name: String, label: String },
    #[error("prompt store query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A store failure other than SQLite's (PostgreSQL, a value of the wrong type).
    #[error("prompt store query failed: {0}")]
    Store(StoreError),
}

impl From<StoreError> for PromptStoreError {
    /// SQLite's errors stay [`PromptStoreError::Sqlite`], as before the store spoke
    /// PostgreSQL too.
    fn from(e: StoreError) -> PromptStoreError {
        match e {
            StoreError::Sqlite(e) => PromptStoreError::Sqlite(e),
            other => PromptStoreError::Store(other),
        }
    }
}

/// One stored version of a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptVersion {
    pub name: String,
    pub version: i64,
    pub content_hash: String,
    /// The prompt's content snapshot (`keel_registry::Prompt::to_json`).
    pub content_json: String,
    pub created_at_ms: i64,
    pub author: String,
    pub reason: String,
    pub commit_id: Option<String>,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "version", rename_all = "lowercase")]
pub enum PushOutcome {
    Created(i64),
    /// The content equals a stored version's (this one): nothing written.
    Unchanged(i64),
}

/// What setting a label did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LabelOutcome {
    pub from_version: Option<i64>,
    pub to_version: i64,
}

/// One recorded label move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelMove {
    pub id: i64,
    pub name: String,
    pub label: String,
    pub from_version: Option<i64>,
    pub to_version: i64,
    pub at_ms: i64,
    pub actor: String,
    pub reason: String,
}

/// Where a label points now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelPosition {
    pub name: String,
    pub label: String,
    pub version: i64,
    pub updated_at_ms: i64,
}

/// One prompt in `keel prompt list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptSummary {
    pub name: String,
    pub latest_version: i64,
    /// (label, version), by label.
    pub labels: Vec<(String, i64)>,
    /// The latest version's creation or label move, whichever is later.
    pub last_change_ms: i64,
}

impl Store {
    /// A read-write connection for prompt, label and audit changes (CLI commands). The
    /// trace writer keeps its own.
    pub fn writer_conn(&self) -> Result<Connection, StoreError> {
        self.writer_connection()
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// On PostgreSQL, replicas changing prompts take turns (a transaction-scoped advisory
/// lock, "keel" then 0x101), as SQLite's one writer does: a push numbers its version from
/// the latest and a label move records where the label was, and two interleaved would
/// mint one version number twice or lose a move.
const PROMPTS_LOCK: i64 = 0x6b65_656c_0000_0101;

/// Record `json` (hash `hash`) as the next version of `name`, unless that content
/// already has a version.
pub fn push_version<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    hash: &str,
    json: &str,
    author: &str,
    reason: &str,
    commit_id: Option<&str>,
) -> Result<PushOutcome, PromptStoreError> {
    push_version_with(db, name, hash, json, author, reason, commit_id, None)
}

/// [`push_version`], with `source` added to the audit event's details (the playground
/// says `{"source": "playground", "draft": …}`, so the log tells where a version came from).
#[allow(clippy::too_many_arguments)]
pub fn push_version_with<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    hash: &str,
    json: &str,
    author: &str,
    reason: &str,
    commit_id: Option<&str>,
    source: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<PushOutcome, PromptStoreError> {
    db.into().exclusive(PROMPTS_LOCK, |tx| {
        // Content that already has a version keeps it: going back to an older content (a
        // revert, a replayed startup push) never mints a duplicate version.
        if let Some(v) = version_by_hash(tx, name, hash)? {
            return Ok(PushOutcome::Unchanged(v));
        }
        let latest: Option<i64> = tx.query_opt(
            "SELECT version FROM prompt_versions WHERE name = ?1
             ORDER BY version DESC LIMIT 1",
            &values![name],
            |r| r.get(0),
        )?;
        let version = latest.map_or(1, |v| v + 1);
        let at = now_ms();
        tx.execute(
            "INSERT INTO prompt_versions (name, version, content_hash, content_json, created_at_ms, author, reason, commit_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &values![name, version, hash, json, at, author, reason, commit_id],
        )?;
        record_audit(
            tx,
            at,
            &NewAuditEvent {
                actor: author,
                action: "prompt.push",
                target: name,
                from_value: latest.map(|v| format!("v{v}")),
                to_value: Some(format!("v{version}")),
                reason: Some(reason),
                details: Some({
                    let mut d = json!({"content_hash": hash, "commit_id": commit_id});
                    if let (Some(obj), Some(extra)) = (d.as_object_mut(), source) {
                        obj.extend(extra.clone());
                    }
                    d
                }),
            },
        )?;
        Ok(PushOutcome::Created(version))
    })
}

/// Point `label` of `name` at `version` (which must exist). Setting it where it already
/// is records nothing.
pub fn set_label<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    version: i64,
    label: &str,
    actor: &str,
    reason: &str,
) -> Result<LabelOutcome, PromptStoreError> {
    db.into().exclusive(PROMPTS_LOCK, |tx| {
        if get_version(tx, name, version)?.is_none() {
            return Err(PromptStoreError::NoSuchVersion {
                name: name.into(),
                version,
            });
        }
        move_label(tx, name, label, version, actor, reason, "prompt.label")
    })
}

/// Move `label` back to where its latest move took it from.
pub fn rollback_label<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    label: &str,
    actor: &str,
    reason: &str,
) -> Result<LabelOutcome, PromptStoreError> {
    db.into().exclusive(PROMPTS_LOCK, |tx| {
        if label_version(tx, name, label)?.is_none() {
            return Err(PromptStoreError::NoSuchLabel {
                name: name.into(),
                label: label.into(),
            });
        }
        let previous: Option<Option<i64>> = tx.query_opt(
            "SELECT from_version FROM prompt_label_moves WHERE name = ?1 AND label = ?2
             ORDER BY id DESC LIMIT 1",
            &values![name, label],
            |r| r.get(0),
        )?;
        let Some(Some(target)) = previous else {
            return Err(PromptStoreError::NoEarlierPosition {
                name: name.into(),
                label: label.into(),
            });
        };
        move_label(tx, name, label, target, actor, reason, "prompt.rollback")
    })
}

fn move_label(
    tx: Db<'_>,
    name: &str,
    label: &str,
    to: i64,
    actor: &str,
    reason: &str,
    action: &str,
) -> Result<LabelOutcome, PromptStoreError> {
    let from = label_version(tx, name, label)?;
    let out = LabelOutcome {
        from_version: from,
        to_version: to,
    };
    if from == Some(to) {
        return Ok(out);
    }
    let at = now_ms();
    tx.execute(
        "INSERT INTO prompt_labels (name, label, version, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name, label) DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
        &values![name, label, to, at],
    )?;
    tx.execute(
        "INSERT INTO prompt_label_moves (name, label, from_version, to_version, at_ms, actor, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &values![name, label, from, to, at, actor, reason],
    )?;
    record_audit(
        tx,
        at,
        &NewAuditEvent {
            actor,
            action,
            target: &format!("{name}@{label}"),
            from_value: from.map(|v| format!("v{v}")),
            to_value: Some(format!("v{to}")),
            reason: Some(reason),
            details: None,
        },
    )?;
    Ok(out)
}

const VERSION_COLS: &str =
    "name, version, content_hash, content_json, created_at_ms, author, reason, commit_id";

fn version_row(r: &Row<'_>) -> Result<PromptVersion, StoreError> {
    Ok(PromptVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        content_hash: r.get(2)?,
        content_json: r.get(3)?,
        created_at_ms: r.get(4)?,
        author: r.get(5)?,
        reason: r.get(6)?,
        commit_id: r.get(7)?,
    })
}

pub fn get_version<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    version: i64,
) -> Result<Option<PromptVersion>, StoreError> {
    db.into().query_opt(
        &format!("SELECT {VERSION_COLS} FROM prompt_versions WHERE name = ?1 AND version = ?2"),
        &values![name, version],
        version_row,
    )
}

/// The version of `name` whose content hash is `hash`, if that content was ever pushed.
pub fn version_by_hash<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    hash: &str,
) -> Result<Option<i64>, StoreError> {
    db.into().query_opt(
        "SELECT version FROM prompt_versions WHERE name = ?1 AND content_hash = ?2
         ORDER BY version DESC LIMIT 1",
        &values![name, hash],
        |r| r.get(0),
    )
}

pub fn latest_version<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
) -> Result<Option<PromptVersion>, StoreError> {
    db.into().query_opt(
        &format!(
            "SELECT {VERSION_COLS} FROM prompt_versions WHERE name = ?1 ORDER BY version DESC LIMIT 1"
        ),
        &values![name],
        version_row,
    )
}

/// Every version of `name`, newest first.
pub fn versions<'c>(db: impl Into<Db<'c>>, name: &str) -> Result<Vec<PromptVersion>, StoreError> {
    db.into().query(
        &format!(
            "SELECT {VERSION_COLS} FROM prompt_versions WHERE name = ?1 ORDER BY version DESC"
        ),
        &values![name],
        version_row,
    )
}

pub fn label_version<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    label: &str,
) -> Result<Option<i64>, StoreError> {
    db.into().query_opt(
        "SELECT version FROM prompt_labels WHERE name = ?1 AND label = ?2",
        &values![name, label],
        |r| r.get(0),
    )
}

/// Every label move of `name`, newest first.
pub fn label_moves<'c>(db: impl Into<Db<'c>>, name: &str) -> Result<Vec<LabelMove>, StoreError> {
    db.into().query(
        "SELECT id, name, label, from_version, to_version, at_ms, actor, reason
         FROM prompt_label_moves WHERE name = ?1 ORDER BY id DESC",
        &values![name],
        |r| {
            Ok(LabelMove {
                id: r.get(0)?,
                name: r.get(1)?,
                label: r.get(2)?,
                from_version: r.get(3)?,
                to_version: r.get(4)?,
                at_ms: r.get(5)?,
                actor: r.get(6)?,
                reason: r.get(7)?,
            })
        },
    )
}

/// Where every label of every prompt points (what the gateway polls), by name and label.
pub fn all_labels<'c>(db: impl Into<Db<'c>>) -> Result<Vec<LabelPosition>, StoreError> {
    let mut labels = db.into().query(
        "SELECT name, label, version, updated_at_ms FROM prompt_labels",
        &[],
        |r| {
            Ok(LabelPosition {
                name: r.get(0)?,
                label: r.get(1)?,
                version: r.get(2)?,
                updated_at_ms: r.get(3)?,
            })
        },
    )?;
    // Sorted here, byte by byte as SQLite sorts text: a PostgreSQL database's collation
    // (en_US, …) would order names differently.
    labels.sort_by(|a, b| (&a.name, &a.label).cmp(&(&b.name, &b.label)));
    Ok(labels)
}

/// Every prompt with a version, by name.
pub fn list_prompts<'c>(db: impl Into<Db<'c>>) -> Result<Vec<PromptSummary>, StoreError> {
    let db = db.into();
    let mut heads: Vec<(String, i64, i64)> = db.query(
        "SELECT name, MAX(version), MAX(created_at_ms) FROM prompt_versions GROUP BY name",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // Byte order, as SQLite sorts text (see `all_labels`).
    heads.sort_by(|a, b| a.0.cmp(&b.0));
    let labels = all_labels(db)?;
    Ok(heads
        .into_iter()
        .map(|(name, latest_version, created)| {
            let mine: Vec<&LabelPosition> = labels.iter().filter(|l| l.name == name).collect();
            let last_change_ms = mine.iter().map(|l| l.updated_at_ms).fold(created, i64::max);
            PromptSummary {
                labels: mine.iter().map(|l| (l.label.clone(), l.version)).collect(),
                name,
                latest_version,
                last_change_ms,
            }
        })
        .collect())
}

#[cfg(test)]
#[path = "prompts_tests.rs"]
mod tests;
