//! Who is calling, by key: read the credential, check it with the governor, and bind the
//! trace to the key — a key's tenant (and feature, when it has one) win over the
//! `x-keel-*` headers, so a caller cannot spend another tenant's budget by naming it.
//! The key's id goes on the trace; its secret goes nowhere.

use std::sync::Arc;

use axum::http::HeaderMap;
use keel_core::trace::TraceRecord;
use keel_governance::KeyEntry;

use crate::error::GatewayError;
use crate::state::AppState;

/// The presented credential: `Authorization: Bearer …` (OpenAI SDKs) or `x-api-key`
/// (Anthropic SDKs).
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let token = match v.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            None if v.eq_ignore_ascii_case("bearer") => "",
            _ => v,
        };
        return (!token.is_empty()).then_some(token);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Authenticate the caller and bind the trace to its key.
pub fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    trace: &mut TraceRecord,
) -> Result<Option<Arc<KeyEntry>>, GatewayError> {
    let key = app.governor.authenticate(credential(headers))?;
    if let Some(k) = &key {
        trace.key_id = Some(k.id.clone());
        trace.tenant = Some(k.tenant.clone());
        if let Some(f) = &k.feature {
            trace.feature = Some(f.clone());
        }
    }
    Ok(key)
}

/// The admin endpoints' check (the admin key, when auth is required or one is set).
pub fn admin(app: &AppState, headers: &HeaderMap) -> Result<(), GatewayError> {
    Ok(app.governor.check_admin(credential(headers))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_and_api_key_headers_are_both_read() {
        let mut h = HeaderMap::new();
        assert_eq!(credential(&h), None);
        h.insert("x-api-key", "keel_x".parse().unwrap());
        assert_eq!(credential(&h), Some("keel_x"));
        h.insert("authorization", "Bearer  keel_y ".parse().unwrap());
        assert_eq!(credential(&h), Some("keel_y"));
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(credential(&h), None);
    }
}
