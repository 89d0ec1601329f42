//! Shadow pairs: each shadow call (`origin = 'shadow'`) with the live call it mirrored,
//! for `keel shadow report`.

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::StoreError;

/// One side of a pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowSide {
    pub variant: Option<String>,
    pub upstream_model: Option<String>,
    pub prompt_version: Option<i64>,
    pub status: String,
    pub error_class: Option<String>,
    pub output: Option<String>,
    pub cost_nanos: Option<i64>,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowPair {
    pub live_id: String,
    pub started_at_ms: i64,
    pub live: ShadowSide,
    pub shadow: ShadowSide,
}

const SIDE: &str =
    "variant, upstream_model, prompt_version, status, error_class, output, cost_nanos, latency_ms";

/// The newest `limit` pairs of `function` since `since_ms` (0 = no limit).
pub fn shadow_pairs(
    conn: &Connection,
    function: &str,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<ShadowPair>, StoreError> {
    let cols = |p: &str| {
        SIDE.split(", ")
            .map(|c| format!("{p}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!(
        "SELECT l.id, l.started_at_ms, {}, {} FROM traces s JOIN traces l ON l.id = s.parent_id
         WHERE s.origin = 'shadow' AND l.function = ?1 AND l.started_at_ms >= ?2
         ORDER BY l.started_at_ms DESC LIMIT ?3",
        cols("l"),
        cols("s")
    );
    let mut stmt = conn.prepare(&sql)?;
    let limit = if limit == 0 {
        i64::MAX
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    let side = |r: &rusqlite::Row<'_>, at: usize| -> rusqlite::Result<ShadowSide> {
        let latency: i64 = r.get(at + 7)?;
        Ok(ShadowSide {
            variant: r.get(at)?,
            upstream_model: r.get(at + 1)?,
            prompt_version: r.get(at + 2)?,
            status: r.get(at + 3)?,
            error_class: r.get(at + 4)?,
            output: r.get(at + 5)?,
            cost_nanos: r.get(at + 6)?,
            latency_ms: u64::try_from(latency).unwrap_or(0),
        })
    };
    let rows = stmt.query_map(params![function, since_ms, limit], |r| {
        Ok(ShadowPair {
            live_id: r.get(0)?,
            started_at_ms: r.get(1)?,
            live: side(r, 2)?,
            shadow: side(r, 10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
