//! `/admin/*`: keys and budgets over HTTP, for operators and the dashboard. Every call
//! needs the admin key when `[auth] mode = "required"` (or whenever an admin key is
//! set); key changes are written to the store with an audit event and take effect at
//! once on this gateway (other replicas pick them up within `[auth] refresh`).
//!
//! - `GET  /admin/keys` — every key (never a secret or hash);
//! - `POST /admin/keys` — `{"tenant", "feature"?, "models"?, "budget"?: "10/day", "rpm"?,
//!   "tpm"?, "expires"?: "30d", "name"?}` → the new key, shown once;
//! - `POST /admin/keys/{id}/revoke` and `/rotate` — `{"reason"?, "grace"?: "10m"}`;
//! - `GET  /admin/budgets` — each budget's live use in its current window.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_governance::keys::{mint_for, KeySpec};
use serde::Deserialize;
use serde_json::json;

use crate::error::GatewayError;
use crate::handlers::common::{error_response, ClientApi};
use crate::pipeline::auth;
use crate::state::AppState;

const ACTOR: &str = "admin api";

fn fail(e: GatewayError) -> Response {
    error_response(&e, ClientApi::OpenAi, "")
}

fn store(app: &AppState) -> Result<Arc<keel_store::Store>, GatewayError> {
    app.store
        .clone()
        .ok_or_else(|| GatewayError::Internal("this gateway has no store for admin changes".into()))
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, GatewayError> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    crate::pipeline::parse::parse_json(bytes)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, GatewayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?
        .map_err(GatewayError::InvalidRequest)
}

fn reload(app: &AppState, store: &keel_store::Store) {
    if let Err(e) = crate::governance::reload_keys(&app.governor, store) {
        tracing::warn!(error = %e, "cannot reload keys after an admin change");
    }
}

pub async fn list_keys(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::admin(&app, &headers) {
        return fail(e);
    }
    let store = match store(&app) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match blocking(move || {
        let conn = store.conn().map_err(|e| e.to_string())?;
        keel_store::keys::list_keys(&conn, true).map_err(|e| e.to_string())
    })
    .await
    {
        Ok(keys) => Json(json!({"keys": keys})).into_response(),
        Err(e) => fail(e),
    }
}

pub async fn create_key(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(e) = auth::admin(&app, &headers) {
        return fail(e);
    }
    let (spec, store) = match body::<KeySpec>(&bytes).and_then(|s| Ok((s, store(&app)?))) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let st = store.clone();
    let created = blocking(move || {
        let (minted, row) = spec.mint(ACTOR, keel_store::prompts::now_ms())?;
        let conn = st.conn().map_err(|e| e.to_string())?;
        keel_store::keys::insert_key(&conn, &row, "created over the admin API")
            .map_err(|e| e.to_string())?;
        Ok((minted.key, row))
    })
    .await;
    match created {
        Ok((key, row)) => {
            reload(&app, &store);
            (
                StatusCode::CREATED,
                Json(json!({"key": key, "id": row.id, "details": row})),
            )
                .into_response()
        }
        Err(e) => fail(e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    #[serde(default)]
    reason: Option<String>,
    /// Rotation: how long the old secret keeps working (`"10m"`; default none).
    #[serde(default)]
    grace: Option<String>,
}

pub async fn revoke_key(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    change(app, id, headers, bytes, false).await
}

pub async fn rotate_key(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    change(app, id, headers, bytes, true).await
}

async fn change(
    app: Arc<AppState>,
    id: String,
    headers: HeaderMap,
    bytes: Bytes,
    rotate: bool,
) -> Response {
    if let Err(e) = auth::admin(&app, &headers) {
        return fail(e);
    }
    let (b, store) = match body::<ChangeBody>(&bytes).and_then(|b| Ok((b, store(&app)?))) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let st = store.clone();
    let done = blocking(move || {
        let conn = st.conn().map_err(|e| e.to_string())?;
        let reason = b.reason.as_deref().unwrap_or("no reason given");
        if !rotate {
            let row = keel_store::keys::revoke_key(&conn, &id, ACTOR, reason)
                .map_err(|e| e.to_string())?;
            return Ok(json!({"id": row.id, "revoked_at_ms": row.revoked_at_ms}));
        }
        let now = keel_store::prompts::now_ms();
        let grace = b
            .grace
            .as_deref()
            .map(|g| keel_governance::keys::parse_expiry(g, now))
            .transpose()?;
        let minted = mint_for(&id).map_err(|e| e.to_string())?;
        let row =
            keel_store::keys::rotate_key(&conn, &id, &minted.secret_hash, grace, ACTOR, reason)
                .map_err(|e| e.to_string())?;
        Ok(json!({"id": row.id, "key": minted.key, "old_key_valid_until_ms": grace}))
    })
    .await;
    match done {
        Ok(v) => {
            reload(&app, &store);
            Json(v).into_response()
        }
        Err(GatewayError::InvalidRequest(m)) if m.starts_with("no key") => {
            (StatusCode::NOT_FOUND, Json(json!({"error": {"message": m, "type": "invalid_request_error", "code": "key_not_found", "param": null}}))).into_response()
        }
        Err(e) => fail(e),
    }
}

pub async fn budgets(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::admin(&app, &headers) {
        return fail(e);
    }
    match app.governor.all_budget_use().await {
        Ok(list) => {
            let rows: Vec<_> = list
                .iter()
                .map(|u| {
                    json!({
                        "budget": u.budget, "scope": u.scope, "window": u.window, "hard": u.hard,
                        "spent_usd": u.spent.to_dollar_string(), "reserved_usd": u.reserved.to_dollar_string(),
                        "limit_usd": u.limit.to_dollar_string(), "used": u.share(),
                    })
                })
                .collect();
            Json(json!({"backend": app.governor.backend_name(), "budgets": rows})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read budgets from the limits backend");
            fail(GatewayError::Governance(
                keel_governance::GovError::BackendUnavailable(e),
            ))
        }
    }
}
