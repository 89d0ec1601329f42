//! A prompt's live traffic, for `keel prompt impact`: its calls in a window grouped by
//! function, variant and model, and the variables of its recent calls.

use rusqlite::Connection;
use serde_json::{Map, Value};

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
pub fn prompt_traffic(
    conn: &Connection,
    name: &str,
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<TrafficGroup>> {
    let mut stmt = conn.prepare(
        "SELECT function, variant, model_requested, upstream_model, COUNT(*), MIN(started_at_ms)
         FROM traces
         WHERE prompt_name = ?1 AND started_at_ms >= ?2 AND started_at_ms < ?3
           AND origin = 'live' AND (status = 'ok' OR input_tokens IS NOT NULL)
         GROUP BY function, variant, model_requested, upstream_model",
    )?;
    let rows = stmt.query_map((name, since_ms, until_ms), |r| {
        Ok(TrafficGroup {
            function: r.get(0)?,
            variant: r.get(1)?,
            model_requested: r.get(2)?,
            upstream_model: r.get(3)?,
            calls: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            first_ms: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// The `variables` of the prompt's newest recorded calls, at most `max` (reading at most
/// five times as many calls: some carry no variables).
pub fn recorded_variables(
    conn: &Connection,
    name: &str,
    max: usize,
) -> rusqlite::Result<Vec<Map<String, Value>>> {
    let mut stmt = conn.prepare(
        "SELECT input FROM traces WHERE prompt_name = ?1 AND input IS NOT NULL
         ORDER BY started_at_ms DESC, rowid DESC LIMIT ?2",
    )?;
    let limit = i64::try_from(max.saturating_mul(5)).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for input in stmt.query_map((name, limit), |r| r.get::<_, String>(0))? {
        if let Ok(Value::Object(mut request)) = serde_json::from_str::<Value>(&input?) {
            if let Some(Value::Object(vars)) = request.remove("variables") {
                out.push(vars);
            }
        }
        if out.len() == max {
            break;
        }
    }
    Ok(out)
}
