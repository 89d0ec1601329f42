//! What `keel online status` (and the dashboard) show for each online eval: is it
//! judging, how well are the answers doing, what does the judge cost.
//!
//! Read from the store, so any process can show it: calls judged and not judged in the
//! last hour with the last error, the live calls in the eval's scope in that hour, the
//! judge's spend today against its cap, and the pass rate of the last 24 hours with its
//! 95 % Wilson interval. A judge that is configured but not working shows as `stalled`:
//! its scope had enough traffic in the last hour to expect at least
//! [`STALL_EXPECTED_CALLS`] sampled calls, and none was judged. The calls waiting in the
//! queue are only known to the serving process (`keel_online_queued`); the CLI adds them
//! when it can read the gateway's `/metrics`.

use keel_core::config::online::{OnlineEvalConfig, OnlineTarget};
use keel_core::config::Config;
use keel_core::scope::ScopeKind;
use keel_store::StoreError;
use serde::Serialize;

use crate::spend::JudgeSpend;

/// Expected sampled calls in an hour above which judging nothing means the judge stalled.
pub const STALL_EXPECTED_CALLS: f64 = 3.0;

const HOUR_MS: i64 = 3_600_000;

/// A share with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
    pub n: u64,
}

impl Rate {
    pub fn of(successes: u64, n: u64) -> Option<Rate> {
        (n > 0).then(|| {
            let i = keel_stats::intervals::wilson(successes, n, 0.95);
            Rate {
                rate: successes as f64 / n as f64,
                low: i.low,
                high: i.high,
                n,
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalStatus {
    pub name: String,
    /// `function=F` / `model=M`, with its scope.
    pub covers: String,
    pub sample_rate: f64,
    pub judge: Option<String>,
    pub judged_last_hour: u64,
    pub failed_last_hour: u64,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// Live calls in the eval's scope in the last hour.
    pub traffic_last_hour: u64,
    /// Calls waiting in the serving gateway's queue (`None`: not known here).
    pub pending: Option<u64>,
    pub judge_spend_today_usd: f64,
    pub judge_cap_usd: Option<f64>,
    /// Today's judge spend reached the cap: judging is paused until 00:00 UTC.
    pub paused_for_budget: bool,
    /// Judged calls of the last 24 hours where every assertion passed.
    pub pass_rate_24h: Option<Rate>,
    /// Its scope had traffic to judge in the last hour and nothing was judged.
    pub stalled: bool,
}

/// The status of every online eval of `config` at `now_ms`.
pub fn status(
    conn: keel_store::sql::Db<'_>,
    config: &Config,
    now_ms: i64,
) -> Result<Vec<EvalStatus>, StoreError> {
    config
        .online_evals
        .iter()
        .map(|e| eval_status(conn, e, now_ms))
        .collect()
}

fn eval_status(
    conn: keel_store::sql::Db<'_>,
    e: &OnlineEvalConfig,
    now_ms: i64,
) -> Result<EvalStatus, StoreError> {
    use keel_store::scores::{judge_spend_since, judging_figures, scope_traffic};
    let hour = judging_figures(conn, &e.name, now_ms - HOUR_MS)?;
    let day = judging_figures(conn, &e.name, now_ms - 24 * HOUR_MS)?;
    let (function, model) = match &e.target {
        OnlineTarget::Function(f) => (Some(f.as_str()), None),
        OnlineTarget::Model(m) => (None, Some(m.as_str())),
    };
    let scoped = |kind: ScopeKind| {
        e.scope
            .as_ref()
            .filter(|s| s.kind == kind)
            .and_then(|s| s.value.as_deref())
    };
    let traffic = scope_traffic(
        conn,
        function,
        model,
        scoped(ScopeKind::Tenant),
        scoped(ScopeKind::Feature),
        now_ms - HOUR_MS,
    )?;
    let spent = judge_spend_since(conn, &e.name, JudgeSpend::day_start_ms(now_ms))?;
    let cap = e.max_judge_spend_per_day;
    let paused = cap.is_some_and(|c| spent >= c.0);
    let expected = traffic as f64 * e.sample_rate;
    Ok(EvalStatus {
        name: e.name.clone(),
        covers: e.describe(),
        sample_rate: e.sample_rate,
        judge: e.judge.clone(),
        judged_last_hour: hour.judged,
        failed_last_hour: hour.failures,
        last_error: hour.last_error,
        last_error_at_ms: hour.last_error_at_ms,
        traffic_last_hour: traffic,
        pending: None,
        judge_spend_today_usd: keel_core::money::Nanos(spent).as_dollars(),
        judge_cap_usd: cap.map(|c| c.as_dollars()),
        paused_for_budget: paused,
        pass_rate_24h: Rate::of(day.passed, day.judged),
        stalled: !paused && expected >= STALL_EXPECTED_CALLS && hour.judged == 0,
    })
}
