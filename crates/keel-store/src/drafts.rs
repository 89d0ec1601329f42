//! The prompt playground's drafts: a prompt file's text being edited in the dashboard,
//! the model it is tried on and the sample variables last typed. Kept in the store so a
//! draft survives a reload, a restart and another replica, and can be shared by its id.
//!
//! A draft is not a prompt version: nothing the gateway serves reads this table, so a
//! draft can never move a label or reach traffic. Saving one as a version goes through
//! [`crate::prompts::push_version_with`] (audited); [`mark_saved`] only remembers which
//! version it became. Also here: the variables of recent live calls of a prompt, the
//! "recorded inputs" a draft is tried on.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::prompts::now_ms;
use crate::sql::{Db, Row};
use crate::values;

/// One stored draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draft {
    pub id: String,
    pub prompt_name: String,
    /// What the editor started from: a label (`production`) or `vN`.
    pub base_ref: String,
    /// The version `base_ref` pointed at when the draft was made.
    pub base_version: Option<i64>,
    /// The prompt file (TOML) as edited.
    pub source: String,
    /// The configured model the draft is tried on.
    pub model: String,
    /// The sample variables last typed, a JSON object.
    pub variables_json: String,
    pub author: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The prompt version it was saved as, once saved.
    pub saved_version: Option<i64>,
}

/// What a draft holds when it is kept (created or updated).
#[derive(Debug, Clone, Default)]
pub struct DraftEdit<'a> {
    pub prompt_name: &'a str,
    pub base_ref: &'a str,
    pub base_version: Option<i64>,
    pub source: &'a str,
    pub model: &'a str,
    pub variables_json: &'a str,
    pub author: &'a str,
}

const COLS: &str = "id, prompt_name, base_ref, base_version, source, model, variables_json, \
                    author, created_at_ms, updated_at_ms, saved_version";

fn row(r: &Row<'_>) -> Result<Draft, StoreError> {
    Ok(Draft {
        id: r.get(0)?,
        prompt_name: r.get(1)?,
        base_ref: r.get(2)?,
        base_version: r.get(3)?,
        source: r.get(4)?,
        model: r.get(5)?,
        variables_json: r.get(6)?,
        author: r.get(7)?,
        created_at_ms: r.get(8)?,
        updated_at_ms: r.get(9)?,
        saved_version: r.get(10)?,
    })
}

/// Keep `edit` as draft `id`: created when it does not exist, else replaced (its
/// creation time and saved version stay). A draft of another prompt is never
/// overwritten: then nothing is written and this returns `false` (keep it under a new id).
pub fn keep_draft<'c>(
    db: impl Into<Db<'c>>,
    id: &str,
    edit: &DraftEdit<'_>,
) -> Result<bool, StoreError> {
    let at = now_ms();
    let changed = db.into().execute(
        "INSERT INTO playground_drafts
             (id, prompt_name, base_ref, base_version, source, model, variables_json, author,
              created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT (id) DO UPDATE SET
             base_ref = excluded.base_ref, base_version = excluded.base_version,
             source = excluded.source, model = excluded.model,
             variables_json = excluded.variables_json, author = excluded.author,
             updated_at_ms = excluded.updated_at_ms
         WHERE playground_drafts.prompt_name = excluded.prompt_name",
        &values![
            id,
            edit.prompt_name,
            edit.base_ref,
            edit.base_version,
            edit.source,
            edit.model,
            edit.variables_json,
            edit.author,
            at
        ],
    )?;
    Ok(changed == 1)
}

pub fn get_draft<'c>(db: impl Into<Db<'c>>, id: &str) -> Result<Option<Draft>, StoreError> {
    db.into().query_opt(
        &format!("SELECT {COLS} FROM playground_drafts WHERE id = ?1"),
        &values![id],
        row,
    )
}

/// The drafts of `prompt_name`, most recently edited first, at most `limit`.
pub fn drafts_for<'c>(
    db: impl Into<Db<'c>>,
    prompt_name: &str,
    limit: usize,
) -> Result<Vec<Draft>, StoreError> {
    db.into().query(
        &format!(
            "SELECT {COLS} FROM playground_drafts WHERE prompt_name = ?1
             ORDER BY updated_at_ms DESC, id DESC LIMIT ?2"
        ),
        &values![prompt_name, limit],
        row,
    )
}

/// The most recently edited drafts of every prompt, at most `limit`.
pub fn recent_drafts<'c>(db: impl Into<Db<'c>>, limit: usize) -> Result<Vec<Draft>, StoreError> {
    db.into().query(
        &format!(
            "SELECT {COLS} FROM playground_drafts ORDER BY updated_at_ms DESC, id DESC LIMIT ?1"
        ),
        &values![limit],
        row,
    )
}

/// Remember that draft `id` was saved as `version`.
pub fn mark_saved<'c>(db: impl Into<Db<'c>>, id: &str, version: i64) -> Result<(), StoreError> {
    db.into().execute(
        "UPDATE playground_drafts SET saved_version = ?2, updated_at_ms = ?3 WHERE id = ?1",
        &values![id, version, now_ms()],
    )?;
    Ok(())
}

/// One recorded input: the variables a live call of the prompt was made with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedInput {
    pub trace_id: String,
    pub started_at_ms: i64,
    pub prompt_version: Option<i64>,
    pub variables: Map<String, Value>,
}

/// Most live traces read when looking for recorded inputs (bounds the scan when many
/// recent calls repeat the same variables or carry none).
const SCAN: i64 = 500;
/// Traces read per query: the newest few usually offer enough, and each row carries a
/// whole request body.
const PAGE: i64 = 50;

/// The variables of the newest successful live calls that rendered `prompt_name`,
/// distinct, at most `limit`. Read from each trace's captured request body (its
/// `variables`), so calls made with `capture = "none"` have none to offer, and calls
/// captured `redacted` offer their redacted text.
pub fn recorded_inputs<'c>(
    db: impl Into<Db<'c>>,
    prompt_name: &str,
    limit: usize,
) -> Result<Vec<RecordedInput>, StoreError> {
    let db = db.into();
    let mut out: Vec<RecordedInput> = Vec::new();
    let mut offset = 0;
    while offset < SCAN {
        let rows = db.query(
            "SELECT id, started_at_ms, prompt_version, input FROM traces
             WHERE prompt_name = ?1 AND origin = 'live' AND status = 'ok' AND input IS NOT NULL
             ORDER BY started_at_ms DESC, rowid DESC LIMIT ?2 OFFSET ?3",
            &values![prompt_name, PAGE.min(SCAN - offset), offset],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<Option<i64>>(2)?,
                    r.get::<String>(3)?,
                ))
            },
        )?;
        let last_page = i64::try_from(rows.len()).unwrap_or(0) < PAGE;
        offset += PAGE;
        for (trace_id, started_at_ms, prompt_version, input) in rows {
            let Some(Value::Object(variables)) = serde_json::from_str::<Value>(&input)
                .ok()
                .and_then(|mut v| v.get_mut("variables").map(Value::take))
            else {
                continue;
            };
            if out.iter().any(|o| o.variables == variables) {
                continue;
            }
            out.push(RecordedInput {
                trace_id,
                started_at_ms,
                prompt_version,
                variables,
            });
            if out.len() >= limit {
                return Ok(out);
            }
        }
        if last_page {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;
    use keel_core::trace::{Origin, TraceRecord, TraceStatus};

    fn edit<'a>(source: &'a str) -> DraftEdit<'a> {
        DraftEdit {
            prompt_name: "support/answer",
            base_ref: "production",
            base_version: Some(2),
            source,
            model: "mock-1",
            variables_json: "{\"question\":\"hi\"}",
            author: "ana",
        }
    }

    #[test]
    fn a_draft_is_kept_updated_and_listed() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            let conn = conn.db();
            assert!(keep_draft(conn, "drf_1", &edit("a")).unwrap(), "{backend}");
            assert!(keep_draft(conn, "drf_1", &edit("b")).unwrap(), "{backend}");
            let d = get_draft(conn, "drf_1").unwrap().unwrap();
            assert_eq!((d.source.as_str(), d.base_version), ("b", Some(2)));
            assert_eq!(d.saved_version, None, "{backend}");
            assert_eq!(d.variables_json, "{\"question\":\"hi\"}", "{backend}");
            assert!(d.created_at_ms <= d.updated_at_ms, "{backend}");
            mark_saved(conn, "drf_1", 3).unwrap();
            assert_eq!(
                get_draft(conn, "drf_1").unwrap().unwrap().saved_version,
                Some(3),
                "{backend}"
            );
            assert_eq!(drafts_for(conn, "support/answer", 10).unwrap().len(), 1);
            assert!(drafts_for(conn, "other", 10).unwrap().is_empty());
            assert_eq!(recent_drafts(conn, 10).unwrap().len(), 1, "{backend}");
            assert!(recent_drafts(conn, 0).unwrap().is_empty(), "{backend}");
            // The id of another prompt's draft is not taken over.
            let mut other = edit("c");
            other.prompt_name = "other";
            assert!(!keep_draft(conn, "drf_1", &other).unwrap(), "{backend}");
            assert_eq!(get_draft(conn, "drf_1").unwrap().unwrap().source, "b");
            assert!(get_draft(conn, "nope").unwrap().is_none(), "{backend}");
            assert!(keep_draft(conn, "drf_2", &other).unwrap(), "{backend}");
            let recent: Vec<String> = recent_drafts(conn, 10)
                .unwrap()
                .into_iter()
                .map(|d| d.id)
                .collect();
            assert_eq!(recent.len(), 2, "{backend}");
        }
    }

    fn call(id: &str, at: i64, variables: Option<&str>) -> TraceRecord {
        let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
        t.prompt_name = Some("support/answer".into());
        t.prompt_version = Some(1);
        t.input = variables.map(|v| format!("{{\"variables\": {v}}}"));
        t
    }

    #[test]
    fn recorded_inputs_are_the_newest_distinct_variables_of_live_calls() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            let mut traces = vec![
                call("a", 1, Some("{\"q\": \"one\"}")),
                call("b", 2, Some("{\"q\": \"two\"}")),
                call("c", 3, Some("{\"q\": \"one\"}")),
                call("d", 4, None),
                call("e", 5, Some("[1]")),
            ];
            let mut failed = call("f", 6, Some("{\"q\": \"failed\"}"));
            failed.status = TraceStatus::Error;
            let mut shadow = call("g", 7, Some("{\"q\": \"shadow\"}"));
            shadow.origin = Origin::Shadow;
            traces.extend([failed, shadow]);
            // More than a page of repeats, so the older distinct ones are on later pages.
            for i in 0..120 {
                traces.push(call(&format!("r{i}"), 100 + i, Some("{\"q\": \"again\"}")));
            }
            crate::trace_row::insert_batch(&conn, &traces).unwrap();
            let got = recorded_inputs(&conn, "support/answer", 10).unwrap();
            let seen: Vec<(&str, &str)> = got
                .iter()
                .map(|r| (r.trace_id.as_str(), r.variables["q"].as_str().unwrap()))
                .collect();
            assert_eq!(
                seen,
                [("r119", "again"), ("c", "one"), ("b", "two")],
                "{backend}"
            );
            assert_eq!(got[1].prompt_version, Some(1), "{backend}");
            assert_eq!(got[1].started_at_ms, 3, "{backend}");
            assert_eq!(
                recorded_inputs(&conn, "support/answer", 2).unwrap().len(),
                2
            );
            assert!(recorded_inputs(&conn, "other", 5).unwrap().is_empty());
        }
    }
}
