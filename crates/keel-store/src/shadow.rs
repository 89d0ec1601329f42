//! Shadow pairs: each shadow call (`origin = 'shadow'`) with the live call it mirrored,
//! for `keel shadow report`.

use serde::Serialize;

use crate::error::StoreError;
use crate::sql::{Db, Row};
use crate::values;

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
pub fn shadow_pairs<'c>(
    db: impl Into<Db<'c>>,
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
    let limit = if limit == 0 {
        i64::MAX
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    let side = |r: &Row<'_>, at: usize| -> Result<ShadowSide, StoreError> {
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
    db.into()
        .query(&sql, &values![function, since_ms, limit], |r| {
            Ok(ShadowPair {
                live_id: r.get(0)?,
                started_at_ms: r.get(1)?,
                live: side(r, 2)?,
                shadow: side(r, 10)?,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stores;
    use keel_core::trace::{Origin, TraceRecord, TraceStatus};

    fn call(id: &str, at: i64, variant: &str) -> TraceRecord {
        let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
        t.function = Some("ask".into());
        t.variant = Some(variant.into());
        t.upstream_model = Some(format!("{variant}-model"));
        t.prompt_version = Some(2);
        t.output = Some(format!("{variant} says hi"));
        t.cost = Some(keel_core::money::Nanos(5));
        t.latency_ms = 40;
        t
    }

    fn shadow_of(live: &TraceRecord, id: &str) -> TraceRecord {
        let mut s = call(id, live.started_at_ms + 1, "candidate");
        s.origin = Origin::Shadow;
        s.parent_id = Some(live.id.clone());
        s.status = TraceStatus::Error;
        s.error_class = Some("upstream_timeout".into());
        s.cost = None;
        s
    }

    #[test]
    fn pairs_join_each_shadow_call_to_its_live_call_newest_first() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            let a = call("a", 100, "control");
            let b = call("b", 200, "control");
            let mut elsewhere = call("c", 300, "control");
            elsewhere.function = Some("other".into());
            let traces = [
                shadow_of(&a, "sa"),
                shadow_of(&b, "sb"),
                shadow_of(&elsewhere, "sc"),
                a,
                b,
                elsewhere,
            ];
            crate::trace_row::insert_batch(&conn, &traces).unwrap();
            let pairs = shadow_pairs(&conn, "ask", 0, 0).unwrap();
            let ids: Vec<&str> = pairs.iter().map(|p| p.live_id.as_str()).collect();
            assert_eq!(ids, ["b", "a"], "{backend}");
            let p = &pairs[0];
            assert_eq!(p.started_at_ms, 200, "{backend}");
            assert_eq!(
                p.live,
                ShadowSide {
                    variant: Some("control".into()),
                    upstream_model: Some("control-model".into()),
                    prompt_version: Some(2),
                    status: "ok".into(),
                    error_class: None,
                    output: Some("control says hi".into()),
                    cost_nanos: Some(5),
                    latency_ms: 40,
                },
                "{backend}"
            );
            assert_eq!(p.shadow.status, "error", "{backend}");
            assert_eq!(p.shadow.error_class.as_deref(), Some("upstream_timeout"));
            assert_eq!(p.shadow.cost_nanos, None, "{backend}");
            assert_eq!(shadow_pairs(&conn, "ask", 150, 0).unwrap().len(), 1);
            assert_eq!(shadow_pairs(&conn, "ask", 0, 1).unwrap()[0].live_id, "b");
        }
    }
}
