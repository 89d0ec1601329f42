//! The dashboard's charts over time: live traffic in equal buckets over a window —
//! requests, errors, priced spend, and latency and time-to-first-token percentiles per
//! bucket. One indexed range scan (`traces_started_at`), bounded by [`MAX_ROWS`].

use keel_core::money::Nanos;
use rusqlite::Connection;
use serde::Serialize;

use crate::error::StoreError;
use crate::report::{count, Percentiles};

/// Most traces read for one timeline (newest first beyond that are left out).
pub const MAX_ROWS: i64 = 500_000;

/// One bucket `[start_ms, start_ms + width)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bucket {
    pub start_ms: i64,
    pub requests: u64,
    pub errors: u64,
    /// Priced calls only; unpriced calls are counted in `unpriced`.
    pub cost: Nanos,
    pub unpriced: u64,
    pub latency_ms: Option<Percentiles>,
    pub ttft_ms: Option<Percentiles>,
}

/// `buckets` equal buckets over `[since_ms, until_ms)` of live traffic, oldest first
/// (empty buckets included, so charts have a point per bucket).
pub fn timeline(
    conn: &Connection,
    since_ms: i64,
    until_ms: i64,
    buckets: usize,
) -> Result<Vec<Bucket>, StoreError> {
    if since_ms >= until_ms || buckets == 0 {
        return Err(StoreError::InvalidWindow { since_ms, until_ms });
    }
    let n = i64::try_from(buckets).unwrap_or(1);
    let width = ((until_ms - since_ms) + n - 1) / n;
    let mut stmt = conn.prepare_cached(
        "SELECT started_at_ms, status = 'error', cost_nanos, unpriced, latency_ms,
                CASE WHEN stream = 1 THEN ttft_ms END
         FROM traces
         WHERE started_at_ms >= ?1 AND started_at_ms < ?2 AND origin = 'live'
         ORDER BY started_at_ms DESC LIMIT ?3",
    )?;
    let mut out: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start_ms: since_ms + i * width,
            ..Bucket::default()
        })
        .collect();
    let mut values: Vec<(Vec<u64>, Vec<u64>)> = vec![Default::default(); out.len()];
    let mut rows = stmt.query((since_ms, until_ms, MAX_ROWS))?;
    while let Some(row) = rows.next()? {
        let at: i64 = row.get(0)?;
        let idx = usize::try_from((at - since_ms) / width.max(1)).unwrap_or(0);
        let (Some(b), Some(v)) = (out.get_mut(idx), values.get_mut(idx)) else {
            continue;
        };
        b.requests += 1;
        b.errors += u64::from(row.get::<_, bool>(1)?);
        let unpriced: bool = row.get(3)?;
        if unpriced {
            b.unpriced += 1;
        } else if let Some(c) = row.get::<_, Option<i64>>(2)? {
            b.cost = Nanos(b.cost.0.saturating_add(c));
        }
        v.0.push(count(row, 4)?);
        if let Some(t) = row.get::<_, Option<i64>>(5)? {
            v.1.push(u64::try_from(t).unwrap_or(0));
        }
    }
    for (b, (lat, ttft)) in out.iter_mut().zip(values) {
        b.latency_ms = Percentiles::nearest_rank(lat);
        b.ttft_ms = Percentiles::nearest_rank(ttft);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Store;
    use keel_core::trace::{TraceRecord, TraceStatus};

    #[test]
    fn buckets_count_spend_errors_and_latency() {
        let store = Store::open(":memory:").unwrap();
        let mut w = store.writer_connection().unwrap();
        let t = |id: &str, at: i64, cost: Option<i64>, err: bool, lat: u64| {
            let mut r = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
            r.cost = cost.map(Nanos);
            r.latency_ms = lat;
            if err {
                r.status = TraceStatus::Error;
            }
            r
        };
        let traces = vec![
            t("a", 0, Some(10), false, 5),
            t("b", 5, Some(20), true, 15),
            t("c", 15, None, false, 7),
            t("d", 40, Some(1), false, 1),
        ];
        crate::trace_row::insert_batch(&mut w, &traces).unwrap();
        let r = store.reader().unwrap();
        let b = timeline(&r, 0, 30, 3).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].requests, b[0].errors, b[0].cost), (2, 1, Nanos(30)));
        assert_eq!(b[0].latency_ms.unwrap().p95, 15);
        assert_eq!((b[1].requests, b[1].start_ms), (1, 10));
        assert_eq!(b[2].requests, 0);
        assert!(b[2].latency_ms.is_none());
        assert!(timeline(&r, 5, 5, 3).is_err());
    }
}
