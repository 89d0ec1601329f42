//! Who is calling an endpoint that reads or changes what earlier calls left behind
//! (feedback on a call, a stored response): a virtual key, the admin key, or — on an
//! open gateway — nobody. A key sees what it and its tenant made; the admin key and an
//! open gateway's callers see everything.

use std::sync::Arc;

use axum::http::HeaderMap;
use keel_governance::KeyEntry;

use crate::error::GatewayError;
use crate::pipeline::auth;
use crate::state::AppState;

pub enum Caller {
    Key(Arc<KeyEntry>),
    Admin,
    /// No key, on a gateway where none is required.
    Open,
}

impl Caller {
    /// Who the audit log names.
    pub fn actor(&self) -> String {
        match self {
            Caller::Key(k) => format!("key:{}", k.id),
            Caller::Admin => "admin".into(),
            Caller::Open => "anonymous".into(),
        }
    }

    pub fn key_id(&self) -> Option<String> {
        match self {
            Caller::Key(k) => Some(k.id.clone()),
            _ => None,
        }
    }

    /// May this caller see something made by key `key_id` for `tenant`?
    pub fn may_see(&self, key_id: Option<&str>, tenant: Option<&str>) -> bool {
        match self {
            Caller::Key(k) => key_id == Some(k.id.as_str()) || tenant == Some(k.tenant.as_str()),
            Caller::Admin | Caller::Open => true,
        }
    }
}

/// The caller of a request. A key that is sent is checked and used even when auth is
/// off (so it is scoped to its tenant).
pub fn caller(app: &AppState, headers: &HeaderMap) -> Result<Caller, GatewayError> {
    let credential = auth::credential(headers);
    let is_admin = || {
        credential.is_some()
            && app.governor.admin_digest().is_some()
            && app.governor.check_admin(credential).is_ok()
    };
    match app.governor.authenticate(credential) {
        Ok(Some(k)) => Ok(Caller::Key(k)),
        Ok(None) if is_admin() => Ok(Caller::Admin),
        Ok(None) => Ok(Caller::Open),
        Err(_) if is_admin() => Ok(Caller::Admin),
        Err(e) => Err(e.into()),
    }
}
