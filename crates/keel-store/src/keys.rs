//! Virtual keys in the store. Only a SHA-256 hash of each key's secret is kept (the key
//! itself is shown once, by `keel keys create`); every create, revoke and rotate is
//! written to the audit log in the same transaction. A running gateway reloads the
//! table every `[auth] refresh`.

use serde::Serialize;
use serde_json::json;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;
use crate::prompts::now_ms;
use crate::sql::{Db, Row};
use crate::values;

/// One stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRow {
    pub id: String,
    pub name: Option<String>,
    #[serde(skip)]
    pub secret_hash: String,
    #[serde(skip)]
    pub prev_hash: Option<String>,
    pub prev_valid_until_ms: Option<i64>,
    pub tenant: String,
    pub feature: Option<String>,
    /// Allowed model or function names; `None` = all.
    pub models: Option<Vec<String>>,
    pub budget_nanos: Option<i64>,
    pub budget_window: Option<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

impl KeyRow {
    /// Usable at `now_ms`: not revoked, not expired.
    pub fn active_at(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| now_ms < e)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("no key `{0}` — `keel keys list` shows the keys")]
    NoSuchKey(String),
    #[error("key `{0}` is already revoked")]
    Revoked(String),
    #[error("a key with id `{0}` already exists")]
    Duplicate(String),
    #[error("key store query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A store failure other than SQLite's (PostgreSQL, a value of the wrong type).
    #[error("key store query failed: {0}")]
    Store(StoreError),
}

impl From<StoreError> for KeyStoreError {
    /// SQLite's errors stay [`KeyStoreError::Sqlite`], as before the store spoke
    /// PostgreSQL too.
    fn from(e: StoreError) -> KeyStoreError {
        match e {
            StoreError::Sqlite(e) => KeyStoreError::Sqlite(e),
            other => KeyStoreError::Store(other),
        }
    }
}

const COLUMNS: &str = "id, name, secret_hash, prev_hash, prev_valid_until_ms, tenant, feature, models_json, \
     budget_nanos, budget_window, rpm, tpm, expires_at_ms, created_at_ms, created_by, revoked_at_ms, updated_at_ms";

fn from_row(r: &Row<'_>) -> Result<KeyRow, StoreError> {
    let models: Option<String> = r.get(7)?;
    Ok(KeyRow {
        id: r.get(0)?,
        name: r.get(1)?,
        secret_hash: r.get(2)?,
        prev_hash: r.get(3)?,
        prev_valid_until_ms: r.get(4)?,
        tenant: r.get(5)?,
        feature: r.get(6)?,
        models: models.and_then(|m| serde_json::from_str(&m).ok()),
        budget_nanos: r.get(8)?,
        budget_window: r.get(9)?,
        rpm: r.get(10)?,
        tpm: r.get::<Option<i64>>(11)?.map(|v| v.max(0) as u64),
        expires_at_ms: r.get(12)?,
        created_at_ms: r.get(13)?,
        created_by: r.get(14)?,
        revoked_at_ms: r.get(15)?,
        updated_at_ms: r.get(16)?,
    })
}

/// On PostgreSQL, replicas changing keys take turns (a transaction-scoped advisory lock,
/// "keel" then 0x103), as SQLite's one writer does: a revoke or rotate reads the key
/// before it writes, and two interleaved would both pass the check (two revokes
/// audited, a rotation's grace secret taken from a stale row).
const KEYS_LOCK: i64 = 0x6b65_656c_0000_0103;

/// What the audit log keeps of a key: its settings, never its hash.
fn describe(k: &KeyRow) -> serde_json::Value {
    json!({
        "name": k.name, "tenant": k.tenant, "feature": k.feature, "models": k.models,
        "budget_nanos": k.budget_nanos, "budget_window": k.budget_window,
        "rpm": k.rpm, "tpm": k.tpm, "expires_at_ms": k.expires_at_ms,
    })
}

/// Store a new key (its `created_*` and `updated_at_ms` are taken as given).
pub fn insert_key<'c>(
    db: impl Into<Db<'c>>,
    k: &KeyRow,
    reason: &str,
) -> Result<(), KeyStoreError> {
    db.into()
        .exclusive(KEYS_LOCK, |tx| insert_in(tx, k, reason))
}

fn insert_in(tx: Db<'_>, k: &KeyRow, reason: &str) -> Result<(), KeyStoreError> {
    if get_key(tx, &k.id)?.is_some() {
        return Err(KeyStoreError::Duplicate(k.id.clone()));
    }
    let models = k
        .models
        .as_ref()
        .map(|m| serde_json::Value::from(m.clone()).to_string());
    tx.execute(
        &format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
        &values![
            &k.id,
            &k.name,
            &k.secret_hash,
            &k.prev_hash,
            k.prev_valid_until_ms,
            &k.tenant,
            &k.feature,
            models,
            k.budget_nanos,
            &k.budget_window,
            k.rpm,
            k.tpm.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            k.expires_at_ms,
            k.created_at_ms,
            &k.created_by,
            k.revoked_at_ms,
            k.updated_at_ms,
        ],
    )?;
    record_audit(
        tx,
        k.created_at_ms,
        &NewAuditEvent {
            actor: &k.created_by,
            action: "key.create",
            target: &k.id,
            to_value: Some(format!("tenant={}", k.tenant)),
            reason: Some(reason),
            details: Some(describe(k)),
            ..NewAuditEvent::default()
        },
    )?;
    Ok(())
}

pub fn get_key<'c>(db: impl Into<Db<'c>>, id: &str) -> Result<Option<KeyRow>, StoreError> {
    db.into().query_opt(
        &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"),
        &values![id],
        from_row,
    )
}

/// Every key, newest first (then by id); revoked ones too when `include_revoked`.
pub fn list_keys<'c>(
    db: impl Into<Db<'c>>,
    include_revoked: bool,
) -> Result<Vec<KeyRow>, StoreError> {
    let filter = if include_revoked {
        ""
    } else {
        "WHERE revoked_at_ms IS NULL"
    };
    let mut keys = db.into().query(
        &format!("SELECT {COLUMNS} FROM api_keys {filter}"),
        &[],
        from_row,
    )?;
    // Sorted here, ids byte by byte as SQLite sorts text: a PostgreSQL database's
    // collation would order them differently.
    keys.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(keys)
}

/// A cheap fingerprint of the table: a running gateway reloads keys when it changes.
pub fn keys_version<'c>(db: impl Into<Db<'c>>) -> Result<(i64, i64), StoreError> {
    db.into().query_row(
        "SELECT COUNT(*), COALESCE(MAX(updated_at_ms), 0) FROM api_keys",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Revoke a key now: it stops working at the gateway's next refresh.
pub fn revoke_key<'c>(
    db: impl Into<Db<'c>>,
    id: &str,
    actor: &str,
    reason: &str,
) -> Result<KeyRow, KeyStoreError> {
    let db = db.into();
    db.exclusive(KEYS_LOCK, |tx| revoke_in(tx, id, actor, reason))?;
    get_key(db, id)?.ok_or_else(|| KeyStoreError::NoSuchKey(id.into()))
}

fn revoke_in(tx: Db<'_>, id: &str, actor: &str, reason: &str) -> Result<(), KeyStoreError> {
    let k = get_key(tx, id)?.ok_or_else(|| KeyStoreError::NoSuchKey(id.into()))?;
    if k.revoked_at_ms.is_some() {
        return Err(KeyStoreError::Revoked(id.into()));
    }
    let at = now_ms().max(k.updated_at_ms + 1);
    tx.execute(
        "UPDATE api_keys SET revoked_at_ms = ?2, updated_at_ms = ?2 WHERE id = ?1",
        &values![id, at],
    )?;
    record_audit(
        tx,
        at,
        &NewAuditEvent {
            actor,
            action: "key.revoke",
            target: id,
            from_value: Some("active".into()),
            to_value: Some("revoked".into()),
            reason: Some(reason),
            details: Some(describe(&k)),
        },
    )?;
    Ok(())
}

/// Give a key a new secret (its id, limits and spend stay); the old secret keeps working
/// until `grace_until_ms` (`None`: it stops at once).
pub fn rotate_key<'c>(
    db: impl Into<Db<'c>>,
    id: &str,
    new_hash: &str,
    grace_until_ms: Option<i64>,
    actor: &str,
    reason: &str,
) -> Result<KeyRow, KeyStoreError> {
    let db = db.into();
    db.exclusive(KEYS_LOCK, |tx| {
        rotate_in(tx, id, new_hash, grace_until_ms, actor, reason)
    })?;
    get_key(db, id)?.ok_or_else(|| KeyStoreError::NoSuchKey(id.into()))
}

fn rotate_in(
    tx: Db<'_>,
    id: &str,
    new_hash: &str,
    grace_until_ms: Option<i64>,
    actor: &str,
    reason: &str,
) -> Result<(), KeyStoreError> {
    let k = get_key(tx, id)?.ok_or_else(|| KeyStoreError::NoSuchKey(id.into()))?;
    if k.revoked_at_ms.is_some() {
        return Err(KeyStoreError::Revoked(id.into()));
    }
    let at = now_ms().max(k.updated_at_ms + 1);
    let (prev, until) = match grace_until_ms {
        Some(u) => (Some(k.secret_hash.clone()), Some(u)),
        None => (None, None),
    };
    tx.execute(
        "UPDATE api_keys SET secret_hash = ?2, prev_hash = ?3, prev_valid_until_ms = ?4, updated_at_ms = ?5 WHERE id = ?1",
        &values![id, new_hash, prev, until, at],
    )?;
    record_audit(
        tx,
        at,
        &NewAuditEvent {
            actor,
            action: "key.rotate",
            target: id,
            reason: Some(reason),
            details: Some(json!({"old_secret_valid_until_ms": until})),
            ..NewAuditEvent::default()
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> KeyRow {
        KeyRow {
            id: id.into(),
            name: Some("ci".into()),
            secret_hash: "h1".into(),
            prev_hash: None,
            prev_valid_until_ms: None,
            tenant: "acme".into(),
            feature: None,
            models: Some(vec!["mock-1".into()]),
            budget_nanos: Some(5_000_000_000),
            budget_window: Some("day".into()),
            rpm: Some(60),
            tpm: None,
            expires_at_ms: None,
            created_at_ms: 1000,
            created_by: "ops".into(),
            revoked_at_ms: None,
            updated_at_ms: 1000,
        }
    }

    #[test]
    fn create_rotate_revoke_are_audited_and_never_log_the_hash() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let conn = conn.db();
            insert_key(conn, &key("abc"), "for CI").unwrap();
            assert!(
                matches!(
                    insert_key(conn, &key("abc"), "again"),
                    Err(KeyStoreError::Duplicate(_))
                ),
                "{backend}"
            );
            let got = get_key(conn, "abc").unwrap().unwrap();
            assert_eq!(got, key("abc"), "{backend}");
            assert!(got.active_at(2000), "{backend}");
            assert!(get_key(conn, "nope").unwrap().is_none(), "{backend}");
            assert!(matches!(
                revoke_key(conn, "nope", "ops", "x"),
                Err(KeyStoreError::NoSuchKey(_))
            ));

            let r = rotate_key(conn, "abc", "h2", Some(9_999), "ops", "leaked").unwrap();
            assert_eq!(r.secret_hash, "h2", "{backend}");
            assert_eq!(r.prev_hash.as_deref(), Some("h1"), "{backend}");
            assert_eq!(r.prev_valid_until_ms, Some(9_999), "{backend}");
            let before = keys_version(conn).unwrap();
            assert_eq!(before.0, 1, "{backend}");
            let r = revoke_key(conn, "abc", "ops", "gone").unwrap();
            assert!(!r.active_at(i64::MAX - 1), "{backend}");
            assert_ne!(keys_version(conn).unwrap(), before, "{backend}");
            assert!(
                matches!(
                    revoke_key(conn, "abc", "ops", "twice"),
                    Err(KeyStoreError::Revoked(_))
                ),
                "{backend}"
            );
            assert!(list_keys(conn, false).unwrap().is_empty(), "{backend}");
            assert_eq!(list_keys(conn, true).unwrap().len(), 1, "{backend}");

            let audit = crate::list_audit(conn, 0, 0).unwrap();
            let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
            assert_eq!(
                actions,
                ["key.revoke", "key.rotate", "key.create"],
                "{backend}"
            );
            for e in &audit {
                let d = e.details_json.as_deref().unwrap_or("");
                assert!(!d.contains("h1") && !d.contains("h2"), "{backend}: {d}");
            }
        }
    }

    #[test]
    fn keys_are_listed_newest_first_then_by_id() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            for (id, at) in [("b", 1000), ("a_b", 1000), ("B", 1000), ("new", 2000)] {
                let mut k = key(id);
                k.created_at_ms = at;
                k.tpm = Some(100);
                insert_key(&conn, &k, "r").unwrap();
            }
            let ids: Vec<String> = list_keys(&conn, true)
                .unwrap()
                .into_iter()
                .map(|k| k.id)
                .collect();
            assert_eq!(ids, ["new", "B", "a_b", "b"], "{backend}");
            assert_eq!(get_key(&conn, "b").unwrap().unwrap().tpm, Some(100));
        }
    }

    /// Replicas revoking one key at the same moment: one revokes it, the others are
    /// told it already is, and the audit log has one revoke.
    fn race(store: &crate::Store, backend: &str) {
        insert_key(&store.conn().unwrap(), &key("abc"), "r").unwrap();
        const REPLICAS: usize = 8;
        // Every replica connected first, then all revoke at once.
        let start = std::sync::Barrier::new(REPLICAS);
        let outcomes: Vec<bool> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..REPLICAS)
                .map(|_| {
                    s.spawn(|| {
                        let conn = store.conn().unwrap();
                        start.wait();
                        match revoke_key(&conn, "abc", "ops", "gone") {
                            Ok(_) => true,
                            Err(KeyStoreError::Revoked(_)) => false,
                            Err(e) => panic!("{backend}: {e}"),
                        }
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{backend}");
        let conn = store.conn().unwrap();
        let revokes = crate::audit::list_audit_action(&conn, "key.revoke", 0, 0).unwrap();
        assert_eq!(revokes.len(), 1, "{backend}");
    }

    #[test]
    fn replicas_revoking_at_once_revoke_once() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = crate::Store::open(dir.path().join("k.db").to_str().unwrap()).unwrap();
        race(&sqlite, "sqlite");
        let db = crate::testing::TestDb::new();
        race(&crate::Store::open(&db.url()).unwrap(), "postgres");
    }
}
