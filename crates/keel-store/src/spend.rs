//! Spend and health by scope, for governance: what a budget's window has spent so far
//! (a gateway seeds its ledger from this at startup), and the numbers an alert rule
//! watches (cost, error rate, latency percentiles) over its window.
//!
//! Live traffic only, like the reports: eval, replay and shadow calls never count
//! against a budget or set off an alert.

use keel_core::money::Nanos;
use keel_core::scope::{Scope, ScopeKind};
use rusqlite::Connection;

use crate::error::StoreError;

/// The trace column a scope kind reads (a fixed name, never user input).
pub(crate) fn scope_column(kind: ScopeKind) -> &'static str {
    match kind {
        ScopeKind::Global => "''",
        ScopeKind::Key => "key_id",
        ScopeKind::Tenant => "tenant",
        ScopeKind::Feature => "feature",
        ScopeKind::Model => "model_requested",
    }
}

/// Priced spend of live calls in `[since_ms, until_ms)`, per value of the scope's kind
/// (one value when the scope names one; `""` for global). Values with no spend are left out.
pub fn spend_by_scope(
    conn: &Connection,
    scope: &Scope,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<(String, Nanos)>, StoreError> {
    let col = scope_column(scope.kind);
    let filter = if scope.value.is_some() {
        format!(" AND {col} = ?3")
    } else if scope.kind == ScopeKind::Global {
        String::new()
    } else {
        format!(" AND {col} IS NOT NULL")
    };
    let sql = format!(
        "SELECT {col} AS v, SUM(cost_nanos) FROM traces \
         WHERE started_at_ms >= ?1 AND started_at_ms < ?2 AND origin = 'live' \
           AND cost_nanos IS NOT NULL{filter} GROUP BY v"
    );
    let mut stmt = conn.prepare(&sql)?;
    let map = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, String>(0)?,
            Nanos(r.get::<_, Option<i64>>(1)?.unwrap_or(0)),
        ))
    };
    let rows = match &scope.value {
        Some(v) => stmt
            .query_map(rusqlite::params![since_ms, until_ms, v], map)?
            .collect::<Result<Vec<_>, _>>()?,
        None => stmt
            .query_map(rusqlite::params![since_ms, until_ms], map)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows.into_iter().filter(|(_, n)| n.0 > 0).collect())
}

/// One budget's use in its current window, as `keel report` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BudgetRow {
    pub budget: String,
    /// `tenant=acme`, `global`, `key=3f9a…`.
    pub scope: String,
    /// The current window (`2026-12`, `2026-W49`, `2026-12-02`, `total`).
    pub window: String,
    /// `hard` or `soft`.
    pub mode: &'static str,
    #[serde(flatten)]
    pub spent: crate::report::Cost,
    pub limit_usd: String,
    /// spent / limit.
    pub used: f64,
}

/// Every configured budget's use in its current window (a row per scope value with
/// spend, and one for a fixed-scope budget even at zero), then every key budget.
pub fn budget_rows(
    conn: &Connection,
    budgets: &[keel_core::config::governance::BudgetConfig],
    now_ms: i64,
) -> Result<Vec<BudgetRow>, StoreError> {
    use keel_core::config::governance::BudgetMode;
    let mut out = Vec::new();
    let row =
        |budget: &str, scope: String, window: String, hard: bool, spent: Nanos, limit: Nanos| {
            BudgetRow {
                budget: budget.to_string(),
                scope,
                window,
                mode: if hard { "hard" } else { "soft" },
                spent: crate::report::Cost(spent),
                limit_usd: limit.to_dollar_string(),
                used: spent.0 as f64 / limit.0.max(1) as f64,
            }
        };
    for b in budgets {
        let span = b.window.span(now_ms);
        let mut spends = spend_by_scope(conn, &b.scope, span.start_ms, span.end_ms)?;
        if spends.is_empty() && (b.scope.value.is_some() || b.scope.kind == ScopeKind::Global) {
            spends.push((b.scope.value.clone().unwrap_or_default(), Nanos(0)));
        }
        spends.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (v, spent) in spends {
            let scope = if b.scope.kind == ScopeKind::Global {
                "global".to_string()
            } else {
                format!("{}={v}", b.scope.kind.as_str())
            };
            out.push(row(
                &b.name,
                scope,
                span.label.clone(),
                b.mode == BudgetMode::Hard,
                spent,
                b.limit,
            ));
        }
    }
    for k in crate::keys::list_keys(conn, false)? {
        let (Some(limit), Some(window)) = (k.budget_nanos, k.budget_window.as_deref()) else {
            continue;
        };
        let Some(w) = keel_core::scope::Window::parse(window) else {
            continue;
        };
        let span = w.span(now_ms);
        let scope = Scope {
            kind: ScopeKind::Key,
            value: Some(k.id.clone()),
        };
        let spent = spend_by_scope(conn, &scope, span.start_ms, span.end_ms)?
            .first()
            .map_or(Nanos(0), |(_, n)| *n);
        out.push(row(
            &format!("key {}", k.id),
            format!("key={}", k.id),
            span.label,
            true,
            spent,
            Nanos(limit),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::trace::{Origin, TraceRecord};

    fn trace(id: &str, at: i64, tenant: &str, cost: i64, origin: Origin) -> TraceRecord {
        let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
        t.tenant = Some(tenant.into());
        t.cost = Some(Nanos(cost));
        t.origin = origin;
        t
    }

    #[test]
    fn spend_counts_live_priced_calls_in_the_window() {
        let store = crate::Store::open(":memory:").unwrap();
        let mut c = store.writer_conn().unwrap();
        let traces = [
            trace("a", 10, "acme", 5, Origin::Live),
            trace("b", 20, "acme", 7, Origin::Live),
            trace("c", 20, "acme", 100, Origin::Eval),
            trace("d", 30, "globex", 3, Origin::Live),
            trace("e", 99, "acme", 1000, Origin::Live),
        ];
        crate::trace_row::insert_batch(&mut c, &traces).unwrap();
        let mut each = spend_by_scope(&c, &Scope::parse("tenant").unwrap(), 0, 50).unwrap();
        each.sort();
        assert_eq!(
            each,
            vec![("acme".into(), Nanos(12)), ("globex".into(), Nanos(3))]
        );
        let one = spend_by_scope(&c, &Scope::parse("tenant=globex").unwrap(), 0, 50).unwrap();
        assert_eq!(one, vec![("globex".into(), Nanos(3))]);
        let all = spend_by_scope(&c, &Scope::GLOBAL, 0, 100).unwrap();
        assert_eq!(all, vec![(String::new(), Nanos(1015))]);
    }
}
