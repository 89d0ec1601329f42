//! The monthly review's comparison: the previous period's totals beside the report's, so
//! a month is read against the one before it rather than alone. Only totals are kept
//! (the breakdowns of two windows would not line up row by row).

use serde::Serialize;

use crate::error::StoreError;
use crate::report::{rfc3339, totals, GroupStats, ReportWindow, Window};
use crate::sql::Db;

/// Another window's totals, shown beside the report's (`Report::previous`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviousPeriod {
    pub window: ReportWindow,
    pub totals: GroupStats,
}

/// The totals of live traffic over `[since_ms, until_ms)`.
pub fn previous_period<'c>(
    db: impl Into<Db<'c>>,
    since_ms: i64,
    until_ms: i64,
) -> Result<PreviousPeriod, StoreError> {
    if since_ms >= until_ms {
        return Err(StoreError::InvalidWindow { since_ms, until_ms });
    }
    Ok(PreviousPeriod {
        window: ReportWindow {
            since_ms,
            until_ms,
            since: rfc3339(since_ms),
            until: rfc3339(until_ms),
        },
        totals: totals(db.into(), Window { since_ms, until_ms })?,
    })
}
