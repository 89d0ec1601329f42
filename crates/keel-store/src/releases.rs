//! Releases in the store: one row per distinct combination that served a function
//! (see `keel_core::release`). Written by the gateway's registry refresher, off the
//! request path, the first time a combination is deployed; read by `keel releases`.

use keel_core::release::Release;
use rusqlite::{params, Connection};

use crate::error::StoreError;

/// Record `release` if it is new; returns whether a row was written. Idempotent: the id
/// is a content hash, so a release seen again (a restart, another replica) is a no-op.
pub fn record_release(
    conn: &Connection,
    release: &Release,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let params_json = serde_json::to_string(&release.params)?;
    let tools_json = release
        .tools
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?;
    let n = conn.execute(
        "INSERT OR IGNORE INTO releases (id, function, variant, prompt_name, prompt_version,
             prompt_hash, model, provider, upstream_model, params_json, tools_json, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            release.id,
            release.function,
            release.variant,
            release.prompt_name,
            release.prompt_version,
            release.prompt_hash,
            release.model,
            release.provider,
            release.upstream_model,
            params_json,
            tools_json,
            at_ms,
        ],
    )?;
    Ok(n > 0)
}
