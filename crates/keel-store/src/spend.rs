//! Spend and health by scope, for governance: what a budget's window has spent so far
//! (a gateway seeds its ledger from this at startup), and the numbers an alert rule
//! watches (cost, error rate, latency percentiles) over its window.
//!
//! Live traffic only, like the reports: eval, replay and shadow calls never count
//! against a budget or set off an alert.

use crate::error::StoreError;
use crate::sql::{Db, Value};
use keel_core::money::Nanos;
use keel_core::scope::{Scope, ScopeKind};

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
pub fn spend_by_scope<'c>(
    db: impl Into<Db<'c>>,
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
    // Grouped by position: the global scope's column is a constant, which PostgreSQL
    // refuses by name in GROUP BY.
    let sql = format!(
        "SELECT {col}, SUM(cost_nanos) FROM traces \
         WHERE started_at_ms >= ?1 AND started_at_ms < ?2 AND origin = 'live' \
           AND cost_nanos IS NOT NULL{filter} GROUP BY 1"
    );
    let mut params = vec![Value::from(since_ms), Value::from(until_ms)];
    if let Some(v) = &scope.value {
        params.push(Value::from(v));
    }
    let rows = db.into().query(&sql, &params, |r| {
        Ok((
            r.get::<String>(0)?,
            Nanos(r.get::<Option<i64>>(1)?.unwrap_or(0)),
        ))
    })?;
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
pub fn budget_rows<'c>(
    db: impl Into<Db<'c>>,
    budgets: &[keel_core::config::governance::BudgetConfig],
    now_ms: i64,
) -> Result<Vec<BudgetRow>, StoreError> {
    use keel_core::config::governance::BudgetMode;
    let db = db.into();
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
        let mut spends = spend_by_scope(db, &b.scope, span.start_ms, span.end_ms)?;
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
    for k in list_keys(db)? {
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
        let spent = spend_by_scope(db, &scope, span.start_ms, span.end_ms)?
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

/// Live keys. `keys` is still written against rusqlite: on PostgreSQL there are none to
/// list until it is ported (budgets by scope are still reported).
fn list_keys(db: Db<'_>) -> Result<Vec<crate::keys::KeyRow>, StoreError> {
    match db {
        Db::Sqlite(c) => Ok(crate::keys::list_keys(c, false)?),
        Db::Postgres(_) => Ok(Vec::new()),
    }
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
        for (backend, store, _db) in crate::testing::stores() {
            let c = store.conn().unwrap();
            let traces = [
                trace("a", 10, "acme", 5, Origin::Live),
                trace("b", 20, "acme", 7, Origin::Live),
                trace("c", 20, "acme", 100, Origin::Eval),
                trace("d", 30, "globex", 3, Origin::Live),
                trace("e", 99, "acme", 1000, Origin::Live),
            ];
            crate::trace_row::insert_batch(&c, &traces).unwrap();
            let mut each = spend_by_scope(&c, &Scope::parse("tenant").unwrap(), 0, 50).unwrap();
            each.sort();
            assert_eq!(
                each,
                vec![("acme".into(), Nanos(12)), ("globex".into(), Nanos(3))],
                "{backend}"
            );
            let one = spend_by_scope(&c, &Scope::parse("tenant=globex").unwrap(), 0, 50).unwrap();
            assert_eq!(one, vec![("globex".into(), Nanos(3))], "{backend}");
            let all = spend_by_scope(&c, &Scope::GLOBAL, 0, 100).unwrap();
            assert_eq!(all, vec![(String::new(), Nanos(1015))], "{backend}");
            assert!(spend_by_scope(&c, &Scope::GLOBAL, 200, 300)
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn budget_rows_report_each_budgets_window() {
        use keel_core::config::governance::BudgetConfig;
        use keel_core::config::governance::BudgetMode;
        use keel_core::scope::Window;
        let budget = |name: &str, scope: &str| BudgetConfig {
            name: name.into(),
            scope: Scope::parse(scope).unwrap(),
            limit: Nanos(100),
            window: Window::Total,
            mode: BudgetMode::Hard,
            alert_at: Vec::new(),
            downgrade_at: None,
            alert_to: Vec::new(),
        };
        let budgets = [
            budget("per-tenant", "tenant"),
            budget("all", "global"),
            budget("nobody", "tenant=initech"),
        ];
        for (backend, store, _db) in crate::testing::stores() {
            let c = store.conn().unwrap();
            crate::trace_row::insert_batch(
                &c,
                &[
                    trace("a", 10, "acme", 5, Origin::Live),
                    trace("b", 20, "globex", 9, Origin::Live),
                ],
            )
            .unwrap();
            let rows = budget_rows(&c, &budgets, 30).unwrap();
            let got: Vec<(&str, &str)> = rows
                .iter()
                .map(|r| (r.budget.as_str(), r.scope.as_str()))
                .collect();
            assert_eq!(
                got,
                [
                    ("per-tenant", "tenant=globex"),
                    ("per-tenant", "tenant=acme"),
                    ("all", "global"),
                    ("nobody", "tenant=initech")
                ],
                "{backend}"
            );
            let spent: Vec<i64> = rows.iter().map(|r| r.spent.0 .0).collect();
            assert_eq!(spent, [9, 5, 14, 0], "{backend}");
        }
    }
}
