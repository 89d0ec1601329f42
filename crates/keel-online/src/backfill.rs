//! `keel online run NAME --since 24h`: judge calls that were recorded before — after an
//! online eval is added, or to fill a gap while the judge was down.
//!
//! It takes the eval's live, successful calls in the window, newest first, up to
//! `limit`, skipping those already scored by this eval (unless `rejudge`), and judges them
//! one after another with the same assertions and judge as the serving gateway (through
//! an in-process pipeline whose judge calls are traced `origin = "judge"`). Scores are
//! stored with source `backfill`. The eval's daily judge cap holds here too, counted
//! from the store: the run stops when today's judge spend reaches it.

use std::sync::Arc;

use keel_core::config::online::OnlineTarget;
use keel_core::scope::ScopeKind;
use keel_core::trace::{Origin, TraceStatus};
use keel_gateway::state::AppState;
use keel_store::{Store, TraceFilter};
use serde::Serialize;

use crate::assertions::CompiledEval;
use crate::spend::JudgeSpend;
use crate::worker::{grade, store_outcome};

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub since_ms: i64,
    /// Most calls judged (0: no limit).
    pub limit: usize,
    /// Judge calls already scored by this eval again.
    pub rejudge: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackfillReport {
    /// Calls in the window that the eval covers.
    pub considered: u64,
    pub judged: u64,
    pub passed: u64,
    /// Calls the judge could not grade.
    pub failed: u64,
    pub skipped_already_scored: u64,
    pub skipped_no_text: u64,
    /// The run stopped because today's judge spend reached the cap.
    pub stopped_for_budget: bool,
    pub judge_spend_usd: f64,
}

/// The calls `eval` covers since `since_ms`, newest first (full traces).
pub fn candidates(
    conn: keel_store::sql::Db<'_>,
    eval: &CompiledEval,
    opts: &BackfillOptions,
) -> Result<Vec<keel_core::trace::TraceRecord>, keel_store::StoreError> {
    let c = &eval.config;
    let scoped = |kind: ScopeKind| {
        c.scope
            .as_ref()
            .filter(|s| s.kind == kind)
            .and_then(|s| s.value.clone())
    };
    let mut filter = TraceFilter {
        since_ms: Some(opts.since_ms),
        origin: Some(Origin::Live),
        status: Some(TraceStatus::Ok),
        tenant: scoped(ScopeKind::Tenant),
        feature: scoped(ScopeKind::Feature),
        limit: 0,
        ..TraceFilter::default()
    };
    match &c.target {
        OnlineTarget::Function(f) => filter.function = Some(f.clone()),
        OnlineTarget::Model(m) => filter.model = Some(m.clone()),
    }
    let mut out = keel_store::list_traces(conn, &filter)?;
    if let OnlineTarget::Model(m) = &c.target {
        // The filter's model also matches upstream and served names: keep the callers'.
        out.retain(|t| t.model_requested.as_deref() == Some(m.as_str()));
    }
    Ok(out)
}

/// Judge `eval`'s recorded calls; `progress(done, total)` after each.
pub async fn run(
    app: Arc<AppState>,
    store: Arc<Store>,
    eval: &CompiledEval,
    opts: &BackfillOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> anyhow::Result<BackfillReport> {
    let name = eval.config.name.clone();
    let (traces, spent) = {
        let conn = store.conn()?;
        let all = candidates(conn.db(), eval, opts)?;
        let spent = keel_store::scores::judge_spend_since(
            &conn,
            &name,
            JudgeSpend::day_start_ms(crate::now_ms()),
        )?;
        (all, spent)
    };
    let mut report = BackfillReport {
        considered: traces.len() as u64,
        ..BackfillReport::default()
    };
    let mut todo = Vec::new();
    {
        let conn = store.conn()?;
        for t in traces {
            if t.output.is_none() {
                report.skipped_no_text += 1;
                continue;
            }
            if !opts.rejudge {
                let scored = keel_store::scores::scores_for_trace(&conn, &t.id)?
                    .iter()
                    .any(|s| s.eval == name);
                if scored {
                    report.skipped_already_scored += 1;
                    continue;
                }
            }
            todo.push(Arc::new(t));
            if opts.limit > 0 && todo.len() >= opts.limit {
                break;
            }
        }
    }
    let stores = crate::worker::Stores::new(store.clone());
    let spend = JudgeSpend::new(crate::now_ms(), spent);
    let start_spent = spent;
    let total = todo.len() as u64;
    progress(0, total);
    for (i, t) in todo.iter().enumerate() {
        if spend.reached(eval.config.max_judge_spend_per_day, crate::now_ms()) {
            report.stopped_for_budget = true;
            break;
        }
        let g = grade(app.clone(), Some(&stores), eval, t).await;
        spend.add(g.cost, crate::now_ms());
        store_outcome(Some(&stores), &name, crate::SOURCE_BACKFILL, &t.id, &g).await;
        if g.error.is_some() {
            report.failed += 1;
        } else {
            report.judged += 1;
            if g.rows.iter().all(|r| r.passed) {
                report.passed += 1;
            }
        }
        progress(i as u64 + 1, total);
    }
    report.judge_spend_usd =
        keel_core::money::Nanos(spend.spent(crate::now_ms()) - start_spent).as_dollars();
    Ok(report)
}
