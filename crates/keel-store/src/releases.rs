//! Releases in the store: one row per distinct combination that served a function
//! (see `keel_core::release`). Written by the gateway's registry refresher, off the
//! request path, the first time a combination is deployed; read by `keel releases`.

use keel_core::release::Release;

use crate::error::StoreError;
use crate::sql::Db;
use crate::values;

/// Record `release` if it is new; returns whether a row was written. Idempotent: the id
/// is a content hash, so a release seen again (a restart, another replica) is a no-op.
pub fn record_release<'c>(
    db: impl Into<Db<'c>>,
    release: &Release,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let params_json = serde_json::to_string(&release.params)?;
    let tools_json = release
        .tools
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?;
    let n = db.into().execute(
        "INSERT OR IGNORE INTO releases (id, function, variant, prompt_name, prompt_version,
             prompt_hash, model, provider, upstream_model, params_json, tools_json, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        &values![
            &release.id,
            &release.function,
            &release.variant,
            &release.prompt_name,
            release.prompt_version,
            &release.prompt_hash,
            &release.model,
            &release.provider,
            &release.upstream_model,
            params_json,
            tools_json,
            at_ms,
        ],
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;

    #[test]
    fn a_release_is_recorded_once() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            let mut params = serde_json::Map::new();
            params.insert("temperature".into(), serde_json::json!(0.2));
            let rel = Release::new(
                "support",
                "control",
                "support/answer",
                3,
                "hash",
                "fast",
                "openai",
                "gpt-4o-mini",
                params,
                None,
            );
            assert!(record_release(&conn, &rel, 1000).unwrap(), "{backend}");
            assert!(!record_release(&conn, &rel, 2000).unwrap(), "{backend}");
            let (version, params_json, tools, at): (i64, String, Option<String>, i64) = conn
                .db()
                .query_row(
                    "SELECT prompt_version, params_json, tools_json, created_at_ms FROM releases WHERE id = ?1",
                    &values![&rel.id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap();
            assert_eq!(
                (version, params_json.as_str(), tools, at),
                (3, "{\"temperature\":0.2}", None, 1000),
                "{backend}"
            );
        }
    }
}
