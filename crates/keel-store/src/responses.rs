//! Stored Responses API state (migration 0027): what `POST /v1/responses` keeps when
//! `store` is on, so `GET`/`DELETE /v1/responses/{id}` and `previous_response_id` work
//! on any upstream and on any replica sharing the store. The JSON columns are written
//! and read by the gateway; here they are opaque text.

use crate::error::StoreError;
use crate::sql::Db;
use crate::values;

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub id: String,
    pub tenant: Option<String>,
    pub key_id: Option<String>,
    /// The call's trace (its `x-keel-request-id`).
    pub trace_id: String,
    pub created_ms: i64,
    /// The response object, as `GET /v1/responses/{id}` returns it.
    pub response_json: String,
    /// The chat messages a next turn continues from (earlier turns, input, output).
    pub conversation_json: String,
}

/// Keep responses in one transaction (the gateway's group commit).
pub fn save_responses<'c>(
    db: impl Into<Db<'c>>,
    rows: &[&StoredResponse],
) -> Result<(), StoreError> {
    db.into().write_transaction(|tx| {
        for r in rows {
            save_response(tx, r)?;
        }
        Ok(())
    })
}

/// Keep a response (ids are fresh; storing one again replaces it).
pub fn save_response<'c>(db: impl Into<Db<'c>>, r: &StoredResponse) -> Result<(), StoreError> {
    db.into().execute(
        "INSERT INTO responses
           (id, tenant, key_id, trace_id, created_ms, response_json, conversation_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, key_id = excluded.key_id,
             trace_id = excluded.trace_id, created_ms = excluded.created_ms,
             response_json = excluded.response_json,
             conversation_json = excluded.conversation_json",
        &values![
            &r.id,
            &r.tenant,
            &r.key_id,
            &r.trace_id,
            r.created_ms,
            &r.response_json,
            &r.conversation_json
        ],
    )?;
    Ok(())
}

/// The stored response `id`, if any (whoever's it is: the caller checks the scope).
pub fn get_response<'c>(
    db: impl Into<Db<'c>>,
    id: &str,
) -> Result<Option<StoredResponse>, StoreError> {
    db.into().query_opt(
        "SELECT id, tenant, key_id, trace_id, created_ms, response_json, conversation_json
         FROM responses WHERE id = ?1",
        &values![id],
        |r| {
            Ok(StoredResponse {
                id: r.get(0)?,
                tenant: r.get(1)?,
                key_id: r.get(2)?,
                trace_id: r.get(3)?,
                created_ms: r.get(4)?,
                response_json: r.get(5)?,
                conversation_json: r.get(6)?,
            })
        },
    )
}

/// Delete the stored response `id`: `true` when there was one.
pub fn delete_response<'c>(db: impl Into<Db<'c>>, id: &str) -> Result<bool, StoreError> {
    Ok(db
        .into()
        .execute("DELETE FROM responses WHERE id = ?1", &values![id])?
        > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_saved_read_replaced_and_deleted() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let r = StoredResponse {
                id: "resp_1".into(),
                tenant: Some("acme".into()),
                key_id: None,
                trace_id: "t1".into(),
                created_ms: 5,
                response_json: "{}".into(),
                conversation_json: "[]".into(),
            };
            let mut other = r.clone();
            other.id = "resp_0".into();
            save_responses(&conn, &[&other, &r]).unwrap();
            assert_eq!(
                get_response(&conn, "resp_0").unwrap(),
                Some(other),
                "{backend}"
            );
            assert_eq!(
                get_response(&conn, "resp_1").unwrap(),
                Some(r.clone()),
                "{backend}"
            );
            assert_eq!(get_response(&conn, "resp_2").unwrap(), None, "{backend}");
            // Stored again: replaced whole.
            let again = StoredResponse {
                tenant: None,
                key_id: Some("k1".into()),
                response_json: "{\"status\":\"completed\"}".into(),
                ..r
            };
            save_response(&conn, &again).unwrap();
            assert_eq!(
                get_response(&conn, "resp_1").unwrap(),
                Some(again),
                "{backend}"
            );
            assert!(delete_response(&conn, "resp_1").unwrap(), "{backend}");
            assert!(!delete_response(&conn, "resp_1").unwrap(), "{backend}");
            assert_eq!(get_response(&conn, "resp_1").unwrap(), None, "{backend}");
        }
    }
}
