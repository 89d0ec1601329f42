//! Virtual keys: how they are minted, what is stored of them, and how a presented key is
//! checked.
//!
//! A key reads `keel_<id>_<secret>`: `id` is 12 hex characters, public (it appears in
//! traces, reports and `keel keys list`); `secret` is 32 random bytes in hex. The store
//! keeps only SHA-256 of the secret. Checking a key looks the id up, hashes the
//! presented secret and compares the two digests in constant time (`subtle`), so neither
//! the lookup nor the comparison tells an attacker how much of a guess was right.
//! During a rotation's grace period the previous secret's hash is accepted too.

use std::collections::HashMap;
use std::sync::Arc;

use keel_core::money::Nanos;
use keel_core::scope::Window;
use keel_store::keys::KeyRow;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::GovError;

pub const PREFIX: &str = "keel_";

/// A freshly minted key: shown to the operator once, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedKey {
    pub id: String,
    /// The whole key to hand to the caller.
    pub key: String,
    /// What the store keeps.
    pub secret_hash: String,
}

fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

/// Mint a new key (a new id and secret).
pub fn mint() -> Result<MintedKey, getrandom::Error> {
    let id = random_hex(6)?;
    mint_for(&id)
}

/// A new secret for an existing id (rotation).
pub fn mint_for(id: &str) -> Result<MintedKey, getrandom::Error> {
    let secret = random_hex(32)?;
    Ok(MintedKey {
        id: id.to_string(),
        key: format!("{PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
    })
}

/// SHA-256 of a secret, hex. Secrets are 256 random bits, so a fast hash is enough: there
/// is nothing to brute-force that a slow hash would protect.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Split a presented key into (id, secret); `None` when it is not a Keel key.
pub fn split(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (ok(id, 12) && ok(secret, 64)).then_some((id, secret))
}

/// What `keel keys create` and `POST /admin/keys` take.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub tenant: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub feature: Option<String>,
    /// Allowed model or function names; empty or absent = all.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// `AMOUNT[/WINDOW]`, e.g. `"10/day"` (window defaults to month).
    #[serde(default)]
    pub budget: Option<String>,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u64>,
    /// A duration from now (`30d`) or an RFC 3339 time.
    #[serde(default)]
    pub expires: Option<String>,
}

/// Parse `30d` (from `now_ms`) or an RFC 3339 time into Unix ms.
pub fn parse_expiry(s: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| format!("`{s}` is neither a duration (30d, 12h) nor an RFC 3339 time (2027-01-01T00:00:00Z)"))
}

impl KeySpec {
    /// Check the spec and mint a key for it: the key to show once, and the row to store.
    pub fn mint(&self, actor: &str, now_ms: i64) -> Result<(MintedKey, KeyRow), String> {
        let tenant = self.tenant.trim();
        if tenant.is_empty() || tenant.len() > 256 {
            return Err("a key needs a tenant (1 to 256 characters): --tenant NAME".into());
        }
        let budget = self
            .budget
            .as_deref()
            .map(keel_core::config::governance::parse_budget_flag)
            .transpose()?;
        if self.rpm == Some(0) || self.tpm == Some(0) {
            return Err("rpm and tpm must be above zero (leave them out for no limit)".into());
        }
        let expires_at_ms = self
            .expires
            .as_deref()
            .map(|e| parse_expiry(e, now_ms))
            .transpose()?;
        if expires_at_ms.is_some_and(|e| e <= now_ms) {
            return Err("the expiry is in the past".into());
        }
        let models = self.models.clone().filter(|m| !m.is_empty());
        let minted = mint().map_err(|e| format!("cannot draw random bytes for a key: {e}"))?;
        let row = KeyRow {
            id: minted.id.clone(),
            name: self.name.clone(),
            secret_hash: minted.secret_hash.clone(),
            prev_hash: None,
            prev_valid_until_ms: None,
            tenant: tenant.to_string(),
            feature: self.feature.clone().filter(|f| !f.is_empty()),
            models,
            budget_nanos: budget.map(|(n, _)| n.0),
            budget_window: budget.map(|(_, w)| w.as_str().to_string()),
            rpm: self.rpm,
            tpm: self.tpm,
            expires_at_ms,
            created_at_ms: now_ms,
            created_by: actor.to_string(),
            revoked_at_ms: None,
            updated_at_ms: now_ms,
        };
        Ok((minted, row))
    }
}

/// A key as the gateway holds it: its settings, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub id: String,
    pub name: Option<String>,
    pub tenant: String,
    pub feature: Option<String>,
    pub models: Option<Vec<String>>,
    pub budget: Option<(Nanos, Window)>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub expires_at_ms: Option<i64>,
    pub revoked: bool,
    hash: [u8; 32],
    prev: Option<([u8; 32], i64)>,
}

fn digest(hex_hash: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out).ok()?;
    Some(out)
}

impl KeyEntry {
    /// From a stored row; `None` when the row's hash is not a SHA-256 digest.
    pub fn from_row(r: &KeyRow) -> Option<KeyEntry> {
        let budget = match (r.budget_nanos, r.budget_window.as_deref()) {
            (Some(n), Some(w)) => Window::parse(w).map(|w| (Nanos(n), w)),
            _ => None,
        };
        Some(KeyEntry {
            id: r.id.clone(),
            name: r.name.clone(),
            tenant: r.tenant.clone(),
            feature: r.feature.clone(),
            models: r.models.clone(),
            budget,
            rpm: r.rpm,
            tpm: r.tpm,
            expires_at_ms: r.expires_at_ms,
            revoked: r.revoked_at_ms.is_some(),
            hash: digest(&r.secret_hash)?,
            prev: match (&r.prev_hash, r.prev_valid_until_ms) {
                (Some(h), Some(until)) => digest(h).map(|d| (d, until)),
                _ => None,
            },
        })
    }

    /// May this key call `model` (a configured model or function name)?
    pub fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// Every key the gateway knows, by id. Replaced whole on refresh.
#[derive(Debug, Default)]
pub struct KeyTable {
    by_id: HashMap<String, Arc<KeyEntry>>,
}

impl KeyTable {
    pub fn from_rows(rows: &[KeyRow]) -> KeyTable {
        let by_id = rows
            .iter()
            .filter_map(|r| match KeyEntry::from_row(r) {
                Some(e) => Some((e.id.clone(), Arc::new(e))),
                None => {
                    tracing::warn!(key = %r.id, "stored key has a malformed hash; it cannot be used");
                    None
                }
            })
            .collect();
        KeyTable { by_id }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Arc<KeyEntry>> {
        self.by_id.values()
    }

    pub fn get(&self, id: &str) -> Option<&Arc<KeyEntry>> {
        self.by_id.get(id)
    }

    /// Check a presented key at `now_ms`.
    pub fn authenticate(&self, presented: &str, now_ms: i64) -> Result<Arc<KeyEntry>, GovError> {
        let (id, secret) = split(presented).ok_or(GovError::InvalidKey)?;
        let entry = self.by_id.get(id).ok_or(GovError::InvalidKey)?;
        let given = Sha256::digest(secret.as_bytes());
        let current: bool = given.as_slice().ct_eq(&entry.hash).into();
        let previous = entry.prev.is_some_and(|(h, until)| {
            let eq: bool = given.as_slice().ct_eq(&h).into();
            eq && now_ms < until
        });
        if !(current || previous) {
            return Err(GovError::InvalidKey);
        }
        if entry.revoked {
            return Err(GovError::RevokedKey(entry.id.clone()));
        }
        if entry.expires_at_ms.is_some_and(|e| now_ms >= e) {
            return Err(GovError::ExpiredKey(entry.id.clone()));
        }
        Ok(entry.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(m: &MintedKey) -> KeyRow {
        KeyRow {
            id: m.id.clone(),
            name: None,
            secret_hash: m.secret_hash.clone(),
            prev_hash: None,
            prev_valid_until_ms: None,
            tenant: "acme".into(),
            feature: None,
            models: Some(vec!["mock-1".into()]),
            budget_nanos: Some(1_000),
            budget_window: Some("day".into()),
            rpm: None,
            tpm: None,
            expires_at_ms: Some(5_000),
            created_at_ms: 0,
            created_by: "t".into(),
            revoked_at_ms: None,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_minted_key_authenticates_and_near_misses_do_not() {
        let m = mint().unwrap();
        assert!(m.key.starts_with("keel_") && m.key.len() == 5 + 12 + 1 + 64);
        assert!(!m.key.contains(&m.secret_hash));
        let table = KeyTable::from_rows(&[row(&m)]);
        let e = table.authenticate(&m.key, 1_000).unwrap();
        assert_eq!(e.tenant, "acme");
        assert_eq!(e.budget, Some((Nanos(1_000), Window::Day)));
        assert!(e.allows("mock-1") && !e.allows("gpt-4o"));

        let mut wrong = m.key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(
            table.authenticate(&wrong, 1_000),
            Err(GovError::InvalidKey)
        ));
        assert!(matches!(
            table.authenticate("sk-openai", 1_000),
            Err(GovError::InvalidKey)
        ));
        assert!(matches!(
            table.authenticate(&m.key, 5_000),
            Err(GovError::ExpiredKey(_))
        ));
        let other = mint().unwrap();
        assert!(matches!(
            table.authenticate(&other.key, 1_000),
            Err(GovError::InvalidKey)
        ));
    }

    #[test]
    fn specs_are_checked_before_a_key_is_minted() {
        let spec = KeySpec {
            tenant: "acme".into(),
            budget: Some("$5/day".into()),
            expires: Some("1h".into()),
            models: Some(vec![]),
            ..KeySpec::default()
        };
        let (m, r) = spec.mint("ops", 1_000).unwrap();
        assert_eq!(r.id, m.id);
        assert_eq!(r.budget_window.as_deref(), Some("day"));
        assert_eq!(r.expires_at_ms, Some(1_000 + 3_600_000));
        assert_eq!(r.models, None, "an empty list means every model");
        assert!(KeyTable::from_rows(&[r])
            .authenticate(&m.key, 2_000)
            .is_ok());
        let bad = |f: fn(&mut KeySpec)| {
            let mut s = spec.clone();
            f(&mut s);
            s.mint("ops", 1_000).unwrap_err()
        };
        assert!(bad(|s| s.tenant = " ".into()).contains("tenant"));
        assert!(bad(|s| s.budget = Some("x/day".into())).contains("`x`"));
        assert!(bad(|s| s.rpm = Some(0)).contains("rpm"));
        assert!(bad(|s| s.expires = Some("soon".into())).contains("soon"));
        let mut past = spec.clone();
        past.expires = Some("2001-01-01T00:00:00Z".into());
        assert!(past
            .mint("ops", 1_800_000_000_000)
            .unwrap_err()
            .contains("past"));
    }

    #[test]
    fn rotation_keeps_the_old_secret_only_during_grace_and_revocation_wins() {
        let old = mint().unwrap();
        let new = mint_for(&old.id).unwrap();
        let mut r = row(&old);
        r.expires_at_ms = None;
        r.secret_hash = new.secret_hash.clone();
        r.prev_hash = Some(old.secret_hash.clone());
        r.prev_valid_until_ms = Some(2_000);
        let table = KeyTable::from_rows(&[r.clone()]);
        assert!(table.authenticate(&new.key, 1_000).is_ok());
        assert!(table.authenticate(&old.key, 1_999).is_ok());
        assert!(matches!(
            table.authenticate(&old.key, 2_000),
            Err(GovError::InvalidKey)
        ));
        r.revoked_at_ms = Some(10);
        let table = KeyTable::from_rows(&[r]);
        assert!(matches!(
            table.authenticate(&new.key, 1_000),
            Err(GovError::RevokedKey(_))
        ));
    }
}
