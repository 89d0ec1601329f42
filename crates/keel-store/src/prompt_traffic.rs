//! A prompt's live traffic, for `keel prompt impact`: its calls in a window grouped by
//! function, variant and model, and the variables of its recent calls.

use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::sql::Db;
use crate::values;

/// Calls of one function × variant × model in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficGroup {
    pub function: Option<String>,
    pub variant: Option<String>,
    pub model_requested: Option<String>,
    pub upstream_model: Option<String>,
    pub calls: u64,
    pub first_ms: i64,
}

/// The prompt's live calls that reached a model (ok, or with usage) in
/// `[since_ms, until_ms)`, grouped.
pub fn prompt_traffic<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<TrafficGroup>, StoreError> {
    db.into().query(
        "SELECT function, variant, model_requested, upstream_model, COUNT(*), MIN(started_at_ms)
         FROM traces
         WHERE prompt_name = ?1 AND started_at_ms >= ?2 AND started_at_ms < ?3
           AND origin = 'live' AND (status = 'ok' OR input_tokens IS NOT NULL)
         GROUP BY function, variant, model_requested, upstream_model",
        &values![name, since_ms, until_ms],
        |r| {
            Ok(TrafficGroup {
                function: r.get(0)?,
                variant: r.get(1)?,
                model_requested: r.get(2)?,
                upstream_model: r.get(3)?,
                calls: u64::try_from(r.get::<i64>(4)?).unwrap_or(0),
                first_ms: r.get(5)?,
            })
        },
    )
}

/// The `variables` of the prompt's newest recorded calls, at most `max` (reading at most
/// five times as many calls: some carry no variables).
pub fn recorded_variables<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    max: usize,
) -> Result<Vec<Map<String, Value>>, StoreError> {
    let limit = i64::try_from(max.saturating_mul(5)).unwrap_or(i64::MAX);
    let inputs: Vec<String> = db.into().query(
        "SELECT input FROM traces WHERE prompt_name = ?1 AND input IS NOT NULL
         ORDER BY started_at_ms DESC, rowid DESC LIMIT ?2",
        &values![name, limit],
        |r| r.get(0),
    )?;
    let mut out = Vec::new();
    for input in inputs {
        if out.len() == max {
            break;
        }
        if let Ok(Value::Object(mut request)) = serde_json::from_str::<Value>(&input) {
            if let Some(Value::Object(vars)) = request.remove("variables") {
                out.push(vars);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::trace::{Origin, TraceRecord, TraceStatus};

    fn call(id: &str, at: i64, variant: &str) -> TraceRecord {
        let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
        t.prompt_name = Some("support/answer".into());
        t.function = Some("support-answer".into());
        t.variant = Some(variant.into());
        t.model_requested = Some("fast".into());
        t.input = Some(format!("{{\"variables\": {{\"n\": \"{id}\"}}}}"));
        t
    }

    #[test]
    fn traffic_is_grouped_and_variables_come_newest_first() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let mut failed = call("failed", 5, "control");
            failed.status = TraceStatus::Error;
            let mut eval = call("eval", 6, "control");
            eval.origin = Origin::Eval;
            let mut bare = call("bare", 7, "control");
            bare.input = Some("{\"messages\": []}".into());
            let traces = vec![
                call("a", 10, "control"),
                call("b", 30, "control"),
                call("c", 20, "candidate"),
                failed,
                eval,
                bare,
                call("late", 1_000, "control"),
            ];
            crate::trace_row::insert_batch(&conn, &traces).unwrap();
            let mut groups = prompt_traffic(&conn, "support/answer", 0, 100).unwrap();
            groups.sort_by(|a, b| a.variant.cmp(&b.variant));
            let got: Vec<(Option<&str>, u64, i64)> = groups
                .iter()
                .map(|g| (g.variant.as_deref(), g.calls, g.first_ms))
                .collect();
            assert_eq!(
                got,
                [(Some("candidate"), 1, 20), (Some("control"), 3, 7)],
                "{backend}"
            );
            assert!(prompt_traffic(&conn, "other", 0, 100).unwrap().is_empty());

            let vars = recorded_variables(&conn, "support/answer", 3).unwrap();
            let names: Vec<&str> = vars.iter().filter_map(|v| v["n"].as_str()).collect();
            assert_eq!(names, ["late", "b", "c"], "{backend}");
        }
    }
}
