//! The weekly report, computed: totals and breakdowns by model, feature and tenant, the
//! top callers by spend, and the unpriced calls, over a time window.
//!
//! Counts and sums are done by the database (exact integers: costs are nano-dollars);
//! latency and time-to-first-token percentiles are nearest-rank over each group's values,
//! computed here because SQLite has no percentile function (and PostgreSQL's would
//! interpolate). Unpriced calls are listed
//! on their own and never counted as $0. Rendering lives in `report_render`.

use std::collections::HashMap;

use keel_core::money::Nanos;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::error::StoreError;
use crate::sql::{Db, Dialect, Row};
use crate::values;

/// Everything `keel report` shows; serializes as the `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `Keel report`, or `Keel monthly review` for a calendar month.
    pub title: String,
    pub window: ReportWindow,
    pub totals: GroupStats,
    pub by_model: Vec<GroupRow>,
    pub by_feature: Vec<GroupRow>,
    pub by_tenant: Vec<GroupRow>,
    /// Spend by virtual key (`(no key)` for calls made without one).
    pub by_key: Vec<GroupRow>,
    pub top_callers: Vec<CallerRow>,
    /// The callers with the most tokens per call (prompt bloat shows here first).
    pub top_by_tokens_per_call: Vec<CallerRow>,
    /// Each budget's use in its current window (filled by the caller, who knows the
    /// config: see [`crate::spend::budget_rows`]).
    pub budgets: Vec<crate::spend::BudgetRow>,
    /// Per model, the calls with tokens but no known price.
    pub unpriced: Vec<UnpricedModel>,
    /// The previous period's totals, for comparison (the monthly review: the month
    /// before); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<crate::report_compare::PreviousPeriod>,
    /// Online quality (judged calls, pass rates, metrics, feedback) per function,
    /// variant, prompt version and model, and variants compared; empty lists when no
    /// call in the window was judged or got feedback.
    pub quality: crate::quality_figures::Quality,
    /// Embeddings calls (`/v1/embeddings`) on their own — their cost grows with the
    /// documents retrieved, not the answers written; absent when there were none. (They
    /// are in the totals and breakdowns above too.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<crate::report_embeddings::EmbeddingsSection>,
}

impl Report {
    /// True when no trace started in the window.
    pub fn is_empty(&self) -> bool {
        self.totals.requests == 0
    }
}

/// The half-open window `[since, until)`, as Unix ms and as RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportWindow {
    pub since_ms: i64,
    pub until_ms: i64,
    pub since: String,
    pub until: String,
}

/// A sum of priced costs. Serializes as two fields, `cost_nanos` (exact integer) and
/// `cost_usd` (exact decimal string such as `"0.00015"`), never as a float.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost(pub Nanos);

impl Cost {
    pub fn nanos(self) -> Nanos {
        self.0
    }

    /// Dollars without the sign, e.g. `0.00015`.
    pub fn usd(self) -> String {
        self.0.to_dollar_string()
    }
}

impl Serialize for Cost {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Cost", 2)?;
        s.serialize_field("cost_nanos", &self.0 .0)?;
        s.serialize_field("cost_usd", &self.usd())?;
        s.end()
    }
}

/// Nearest-rank percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (sorted here); `None` when empty.
    pub fn nearest_rank(mut values: Vec<u64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let at = |p: usize| {
            // rank = ceil(p/100 * n), 1-based.
            let rank = (p * values.len()).div_ceil(100).max(1);
            values.get(rank - 1).copied().unwrap_or_default()
        };
        Some(Percentiles {
            p50: at(50),
            p95: at(95),
            p99: at(99),
        })
    }
}

/// The numbers of one group of requests (all of them, one model, one feature...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    pub requests: u64,
    /// Requests whose status is `error` (client disconnects are not errors).
    pub errors: u64,
    /// `errors / requests`, from 0 to 1.
    pub error_rate: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Average input + output tokens over the calls that reported usage; `None` if none did.
    pub tokens_per_call: Option<f64>,
    /// Priced calls only: see `unpriced_calls`.
    #[serde(flatten)]
    pub cost: Cost,
    /// Calls with tokens but no known price: their cost is unknown, not $0.
    pub unpriced_calls: u64,
    /// Over every request of the group (zeros when the group is empty).
    pub latency_ms: Percentiles,
    /// Over streamed calls that recorded a time to first token; `None` when there are none.
    pub ttft_ms: Option<Percentiles>,
}

/// One line of a breakdown: the model, feature or tenant, and its numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRow {
    pub name: String,
    #[serde(flatten)]
    pub stats: GroupStats,
}

/// What identifies a caller: the API key when there is one, else the user, else the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    Key,
    User,
    Tenant,
    Anonymous,
}

impl CallerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::Key => "key",
            CallerKind::User => "user",
            CallerKind::Tenant => "tenant",
            CallerKind::Anonymous => "anonymous",
        }
    }
}

/// One of the top callers by spend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallerRow {
    /// The key id, user or tenant; `(anonymous)` when none is known.
    pub caller: String,
    pub kind: CallerKind,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub tokens_per_call: Option<f64>,
    #[serde(flatten)]
    pub cost: Cost,
    pub unpriced_calls: u64,
}

/// Unpriced calls of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnpricedModel {
    pub model: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Build the report over traces that started in `[since_ms, until_ms)`, listing the
/// `top_n` biggest callers.
pub fn build_report<'c>(
    db: impl Into<Db<'c>>,
    since_ms: i64,
    until_ms: i64,
    top_n: usize,
) -> Result<Report, StoreError> {
    let conn = db.into();
    if since_ms >= until_ms {
        return Err(StoreError::InvalidWindow { since_ms, until_ms });
    }
    let window = Window { since_ms, until_ms };
    let totals = totals(conn, window)?;
    Ok(Report {
        title: "Keel report".to_string(),
        window: ReportWindow {
            since_ms,
            until_ms,
            since: rfc3339(since_ms),
            until: rfc3339(until_ms),
        },
        totals,
        by_model: breakdown(conn, window, Dimension::Model)?,
        by_feature: breakdown(conn, window, Dimension::Feature)?,
        by_tenant: breakdown(conn, window, Dimension::Tenant)?,
        by_key: breakdown(conn, window, Dimension::Key)?,
        top_callers: top_callers(conn, window, top_n, CallerOrder::Spend)?,
        top_by_tokens_per_call: top_callers(conn, window, top_n, CallerOrder::TokensPerCall)?,
        budgets: Vec::new(),
        unpriced: unpriced(conn, window)?,
        previous: None,
        quality: crate::quality_figures::report_quality(conn, since_ms, until_ms)?,
        embeddings: crate::report_embeddings::embeddings_section(conn, window)?,
    })
}

/// Every request of the window, as one group.
pub(crate) fn totals(conn: Db<'_>, window: Window) -> Result<GroupStats, StoreError> {
    Ok(breakdown(conn, window, Dimension::All)?
        .pop()
        .map(|row| row.stats)
        .unwrap_or_else(|| finish(Sums::default(), Vec::new(), Vec::new())))
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) since_ms: i64,
    pub(crate) until_ms: i64,
}

/// Reports cover live traffic: eval and replay calls are traced but kept apart.
const IN_WINDOW: &str = "started_at_ms >= ?1 AND started_at_ms < ?2 AND origin = 'live'";

/// What a breakdown groups by; each maps to a fixed SQL expression (never user input).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dimension {
    All,
    Model,
    Feature,
    Tenant,
    Key,
    Function,
    /// Function and variant, joined by `VARIANT_SEP`.
    Variant,
}

/// What separates a function's name from its variant's in [`variant_breakdown`].
pub const VARIANT_SEP: char = '\u{1f}';

impl Dimension {
    fn key_sql(self, dialect: Dialect) -> &'static str {
        match self {
            Dimension::All => "'(all)'",
            Dimension::Model => "COALESCE(NULLIF(model_requested, ''), '(none)')",
            Dimension::Feature => "COALESCE(NULLIF(feature, ''), '(none)')",
            Dimension::Tenant => "COALESCE(NULLIF(tenant, ''), '(none)')",
            Dimension::Key => "COALESCE(NULLIF(key_id, ''), '(no key)')",
            Dimension::Function => "COALESCE(NULLIF(function, ''), '(none)')",
            // `VARIANT_SEP` (U+001F): `char` in SQLite, `chr` in PostgreSQL.
            Dimension::Variant => match dialect {
                Dialect::Sqlite => {
                    "COALESCE(function, '') || char(31) || COALESCE(NULLIF(variant, ''), '(none)')"
                }
                Dialect::Postgres => {
                    "COALESCE(function, '') || chr(31) || COALESCE(NULLIF(variant, ''), '(none)')"
                }
            },
        }
    }
}

/// The sums every group needs, in the order `Sums::from_row` reads them (conditions
/// summed as `CASE … THEN 1 ELSE 0`: PostgreSQL has no SUM of a boolean).
const SUMS_SQL: &str = "COUNT(*), \
     SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), \
     SUM(COALESCE(input_tokens, 0)), \
     SUM(COALESCE(output_tokens, 0)), \
     SUM(CASE WHEN input_tokens IS NOT NULL OR output_tokens IS NOT NULL THEN 1 ELSE 0 END), \
     SUM(CASE WHEN unpriced = 0 THEN COALESCE(cost_nanos, 0) ELSE 0 END), \
     SUM(unpriced)";

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sums {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) calls_with_usage: u64,
    pub(crate) cost_nanos: i64,
    pub(crate) unpriced_calls: u64,
}

/// A row a count column is read from: [`crate::sql::Row`], or rusqlite's for the
/// modules still on rusqlite.
pub(crate) trait CountRow {
    type Error;
    fn opt_i64(&self, idx: usize) -> Result<Option<i64>, Self::Error>;
}

impl CountRow for Row<'_> {
    type Error = StoreError;
    fn opt_i64(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        self.get(idx)
    }
}

impl CountRow for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn opt_i64(&self, idx: usize) -> rusqlite::Result<Option<i64>> {
        self.get(idx)
    }
}

/// A count (or sum of counts) column: NULL (SUM of no rows) and negatives read as 0.
pub(crate) fn count<R: CountRow + ?Sized>(row: &R, idx: usize) -> Result<u64, R::Error> {
    let v = row.opt_i64(idx)?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

impl Sums {
    fn from_row(row: &Row<'_>, first: usize) -> Result<Sums, StoreError> {
        Ok(Sums {
            requests: count(row, first)?,
            errors: count(row, first + 1)?,
            input_tokens: count(row, first + 2)?,
            output_tokens: count(row, first + 3)?,
            calls_with_usage: count(row, first + 4)?,
            cost_nanos: row.get::<Option<i64>>(first + 5)?.unwrap_or(0),
            unpriced_calls: count(row, first + 6)?,
        })
    }

    fn tokens_per_call(&self) -> Option<f64> {
        (self.calls_with_usage > 0)
            .then(|| (self.input_tokens + self.output_tokens) as f64 / self.calls_with_usage as f64)
    }

    /// The group's numbers, with its percentiles (exact here, estimated by the rollups).
    pub(crate) fn stats(
        &self,
        latency_ms: Percentiles,
        ttft_ms: Option<Percentiles>,
    ) -> GroupStats {
        GroupStats {
            requests: self.requests,
            errors: self.errors,
            error_rate: if self.requests == 0 {
                0.0
            } else {
                self.errors as f64 / self.requests as f64
            },
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            tokens_per_call: self.tokens_per_call(),
            cost: Cost(Nanos(self.cost_nanos)),
            unpriced_calls: self.unpriced_calls,
            latency_ms,
            ttft_ms,
        }
    }
}

fn finish(sums: Sums, latencies: Vec<u64>, ttfts: Vec<u64>) -> GroupStats {
    sums.stats(
        Percentiles::nearest_rank(latencies).unwrap_or_default(),
        Percentiles::nearest_rank(ttfts),
    )
}

/// Breakdown order: cost, then requests (descending), then name — the report's and the
/// dashboard's alike.
pub(crate) fn sort_groups(rows: &mut [GroupRow]) {
    rows.sort_by(|a, b| {
        b.stats
            .cost
            .cmp(&a.stats.cost)
            .then(b.stats.requests.cmp(&a.stats.requests))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// One row per group, sorted by cost, then requests (descending), then name.
fn breakdown(conn: Db<'_>, w: Window, dim: Dimension) -> Result<Vec<GroupRow>, StoreError> {
    breakdown_of(conn, w, dim, None)
}

/// [`breakdown`] of the calls to one endpoint (`only`), or of all.
pub(crate) fn breakdown_of(
    conn: Db<'_>,
    w: Window,
    dim: Dimension,
    only: Option<&str>,
) -> Result<Vec<GroupRow>, StoreError> {
    let key = dim.key_sql(conn.dialect());
    let filter = "AND (CAST(?3 AS TEXT) IS NULL OR endpoint = ?3)";
    let sql = format!(
        "SELECT {key} AS name, {SUMS_SQL} FROM traces WHERE {IN_WINDOW} {filter} GROUP BY name"
    );
    let params = values![w.since_ms, w.until_ms, only];
    let sums = conn.query(&sql, &params, |row| {
        Ok((row.get::<String>(0)?, Sums::from_row(row, 1)?))
    })?;

    // Latency of every request, time to first token of streamed ones, per group (added
    // to the groups as rows arrive: nothing is kept per row).
    let sql = format!(
        "SELECT {key} AS name, latency_ms, CASE WHEN stream = 1 THEN ttft_ms END \
         FROM traces WHERE {IN_WINDOW} {filter}"
    );
    let mut values: HashMap<String, (Vec<u64>, Vec<u64>)> = HashMap::new();
    conn.query(&sql, &params, |row| {
        let entry = values.entry(row.get(0)?).or_default();
        entry.0.push(count(row, 1)?);
        if let Some(ttft) = row.get::<Option<i64>>(2)? {
            entry.1.push(u64::try_from(ttft).unwrap_or(0));
        }
        Ok(())
    })?;

    let mut out: Vec<GroupRow> = sums
        .into_iter()
        .map(|(name, sums)| {
            let (latencies, ttfts) = values.remove(&name).unwrap_or_default();
            GroupRow {
                name,
                stats: finish(sums, latencies, ttfts),
            }
        })
        .collect();
    sort_groups(&mut out);
    Ok(out)
}

/// Live traffic by function over `[since_ms, until_ms)` (the dashboard's breakdown;
/// calls of a bare model are `(none)`), sorted like the report's breakdowns.
pub fn function_breakdown<'c>(
    db: impl Into<Db<'c>>,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<GroupRow>, StoreError> {
    breakdown(
        db.into(),
        Window { since_ms, until_ms },
        Dimension::Function,
    )
}

/// Live traffic per function variant over `[since_ms, until_ms)`: each row's name is
/// `function` + [`VARIANT_SEP`] + `variant` (calls of a bare model have an empty function).
pub fn variant_breakdown<'c>(
    db: impl Into<Db<'c>>,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<GroupRow>, StoreError> {
    breakdown(db.into(), Window { since_ms, until_ms }, Dimension::Variant)
}

/// The numbers of live calls in one scope (`feature=support`, `global`, ...) over
/// `[since_ms, until_ms)` — what an alert rule watches.
pub fn scope_stats<'c>(
    db: impl Into<Db<'c>>,
    scope: &keel_core::scope::Scope,
    since_ms: i64,
    until_ms: i64,
) -> Result<GroupStats, StoreError> {
    let db = db.into();
    let col = crate::spend::scope_column(scope.kind);
    let filter = match &scope.value {
        Some(_) => format!(" AND {col} = ?3"),
        None => String::new(),
    };
    let sums_sql = format!("SELECT {SUMS_SQL} FROM traces WHERE {IN_WINDOW}{filter}");
    let vals_sql = format!(
        "SELECT latency_ms, CASE WHEN stream = 1 THEN ttft_ms END FROM traces WHERE {IN_WINDOW}{filter}"
    );
    let mut params = values![since_ms, until_ms];
    if let Some(value) = &scope.value {
        params.push(value.into());
    }
    let sums = db.query_row(&sums_sql, &params, |r| Sums::from_row(r, 0))?;
    let (mut lat, mut ttft) = (Vec::new(), Vec::new());
    db.query(&vals_sql, &params, |row| {
        lat.push(count(row, 0)?);
        if let Some(t) = row.get::<Option<i64>>(1)? {
            ttft.push(u64::try_from(t).unwrap_or(0));
        }
        Ok(())
    })?;
    Ok(finish(sums, lat, ttft))
}

/// How the top callers are ranked.
#[derive(Debug, Clone, Copy)]
enum CallerOrder {
    Spend,
    TokensPerCall,
}

fn top_callers(
    conn: Db<'_>,
    w: Window,
    top_n: usize,
    order: CallerOrder,
) -> Result<Vec<CallerRow>, StoreError> {
    // Columns: 3 requests, 4 errors, 5 in, 6 out, 7 calls with usage, 8 cost.
    let (having, order_by) = match order {
        CallerOrder::Spend => ("", "8 DESC, 3 DESC, caller ASC"),
        CallerOrder::TokensPerCall => (
            "HAVING SUM(CASE WHEN input_tokens IS NOT NULL OR output_tokens IS NOT NULL THEN 1 ELSE 0 END) > 0",
            "(SUM(COALESCE(input_tokens, 0)) + SUM(COALESCE(output_tokens, 0))) * 1.0 \
             / SUM(CASE WHEN input_tokens IS NOT NULL OR output_tokens IS NOT NULL THEN 1 ELSE 0 END) DESC, \
             caller ASC",
        ),
    };
    let sql = format!(
        "SELECT CASE WHEN NULLIF(key_id, '') IS NOT NULL THEN 'key' \
                     WHEN NULLIF(\"user\", '') IS NOT NULL THEN 'user' \
                     WHEN NULLIF(tenant, '') IS NOT NULL THEN 'tenant' \
                     ELSE 'anonymous' END AS kind, \
                COALESCE(NULLIF(key_id, ''), NULLIF(\"user\", ''), NULLIF(tenant, ''), '(anonymous)') AS caller, \
                {SUMS_SQL} \
         FROM traces WHERE {IN_WINDOW} \
         GROUP BY kind, caller {having} \
         ORDER BY {order_by} \
         LIMIT ?3"
    );
    let limit = i64::try_from(top_n).unwrap_or(i64::MAX);
    conn.query(&sql, &values![w.since_ms, w.until_ms, limit], |row| {
        let kind = match row.get::<String>(0)?.as_str() {
            "key" => CallerKind::Key,
            "user" => CallerKind::User,
            "tenant" => CallerKind::Tenant,
            _ => CallerKind::Anonymous,
        };
        let sums = Sums::from_row(row, 2)?;
        Ok(CallerRow {
            caller: row.get(1)?,
            kind,
            requests: sums.requests,
            input_tokens: sums.input_tokens,
            output_tokens: sums.output_tokens,
            tokens_per_call: sums.tokens_per_call(),
            cost: Cost(Nanos(sums.cost_nanos)),
            unpriced_calls: sums.unpriced_calls,
        })
    })
}

fn unpriced(conn: Db<'_>, w: Window) -> Result<Vec<UnpricedModel>, StoreError> {
    let sql = format!(
        "SELECT {model} AS model, COUNT(*), SUM(COALESCE(input_tokens, 0)), SUM(COALESCE(output_tokens, 0)) \
         FROM traces WHERE {IN_WINDOW} AND unpriced = 1 \
         GROUP BY model ORDER BY 2 DESC, model ASC",
        model = Dimension::Model.key_sql(conn.dialect())
    );
    conn.query(&sql, &values![w.since_ms, w.until_ms], |row| {
        Ok(UnpricedModel {
            model: row.get(0)?,
            calls: count(row, 1)?,
            input_tokens: count(row, 2)?,
            output_tokens: count(row, 3)?,
        })
    })
}

pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
