//! The judges' pool: takes sampled calls off the gateway's queue, grades each with its
//! eval's assertions, and stores the scores, off the request path.
//!
//! [`WORKERS`] tasks share the queue. For each call: skip it when the eval's judge spend
//! for the day has reached its cap (counted, reason `budget`); rebuild what the call sent
//! (a store read, on a blocking thread); run every assertion (judge-backed ones call the
//! judge model through the gateway); then store one score per assertion — or, when the
//! judge failed after its retries, the failure instead. Metrics move as it goes:
//! `keel_online_judged_total`, `keel_online_failed_total`, `keel_online_queued`,
//! `keel_online_judge_lag_seconds`. On shutdown each task finishes the call in hand;
//! what is still queued is counted as skipped (reason `shutdown`).

use std::sync::Arc;

use keel_evals::assert::evaluate;
use keel_gateway::online::{Judges, JudgesHandle, OnlineMetrics, SampledCall};
use keel_gateway::state::AppState;
use keel_store::scores::ScoreRow;
use keel_store::Store;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::assertions::CompiledEval;
use crate::conns::ConnPool;
use crate::judge::GatewayJudge;
use crate::spend::JudgeSpend;

/// Judging tasks per gateway (judging is I/O-bound: these wait on the judge model).
pub const WORKERS: usize = 4;

/// What `keel serve` plugs into the gateway.
pub struct OnlineJudges {
    evals: Vec<Arc<CompiledEval>>,
}

impl OnlineJudges {
    pub fn new(evals: Vec<CompiledEval>) -> OnlineJudges {
        OnlineJudges {
            evals: evals.into_iter().map(Arc::new).collect(),
        }
    }
}

/// The store's reading and writing connections, kept between calls.
#[derive(Clone)]
pub struct Stores {
    pub read: Arc<ConnPool>,
    pub write: Arc<ConnPool>,
}

impl Stores {
    pub fn new(store: Arc<Store>) -> Stores {
        Stores {
            read: Arc::new(ConnPool::readers(store.clone())),
            write: Arc::new(ConnPool::writers(store)),
        }
    }
}

/// What every worker shares.
pub(crate) struct Context {
    pub app: Arc<AppState>,
    pub store: Option<Stores>,
    pub evals: Vec<Arc<CompiledEval>>,
    pub spend: Vec<JudgeSpend>,
}

impl Judges for OnlineJudges {
    fn start(&self, app: Arc<AppState>, queue: mpsc::Receiver<SampledCall>) -> JudgesHandle {
        let now = crate::now_ms();
        let day = JudgeSpend::day_start_ms(now);
        let store = app.store.clone();
        let conn = store.as_ref().and_then(|s| s.conn().ok());
        let spend = self
            .evals
            .iter()
            .map(|e| {
                let so_far = conn.as_ref().map_or(0, |c| {
                    keel_store::scores::judge_spend_since(c, &e.config.name, day).unwrap_or(0)
                });
                JudgeSpend::new(now, so_far)
            })
            .collect();
        drop(conn);
        let ctx = Arc::new(Context {
            app,
            store: store.map(Stores::new),
            evals: self.evals.clone(),
            spend,
        });
        let queue = Arc::new(Mutex::new(queue));
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        for _ in 0..WORKERS {
            tasks.spawn(run(ctx.clone(), queue.clone(), stop.clone()));
        }
        JudgesHandle { stop, tasks }
    }
}

async fn run(
    ctx: Arc<Context>,
    queue: Arc<Mutex<mpsc::Receiver<SampledCall>>>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => None,
            item = async { queue.lock().await.recv().await } => item,
        };
        let Some(item) = next else {
            break;
        };
        ctx.app.online.dequeued(&item);
        judge_call(&ctx, item).await;
    }
    let mut q = queue.lock().await;
    while let Ok(item) = q.try_recv() {
        ctx.app.online.dequeued(&item);
        if let Some(e) = ctx.evals.get(item.eval) {
            ctx.app.online.metrics().skip(&e.config.name, "shutdown");
        }
    }
}

/// Judge one sampled call and store the outcome.
pub(crate) async fn judge_call(ctx: &Context, item: SampledCall) {
    let (Some(eval), Some(spend)) = (ctx.evals.get(item.eval), ctx.spend.get(item.eval)) else {
        return;
    };
    let name = eval.config.name.clone();
    let metrics: &OnlineMetrics = ctx.app.online.metrics();
    let now = crate::now_ms();
    if spend.reached(eval.config.max_judge_spend_per_day, now) {
        metrics.skip(&name, "budget");
        return;
    }
    let outcome = grade(ctx.app.clone(), ctx.store.as_ref(), eval, &item.trace).await;
    spend.add(outcome.cost, crate::now_ms());
    let labels = OnlineMetrics::labels(&name);
    let stored = store_outcome(
        ctx.store.as_ref(),
        &name,
        crate::SOURCE_ONLINE,
        &item.trace.id,
        &outcome,
    )
    .await;
    if outcome.error.is_some() {
        metrics.failed.get_or_create(&labels).inc();
    } else if stored {
        metrics.judged.get_or_create(&labels).inc();
        let ended = item
            .trace
            .started_at_ms
            .saturating_add(i64::try_from(item.trace.latency_ms).unwrap_or(0));
        let lag = (crate::now_ms() - ended).max(0) as f64 / 1000.0;
        metrics.lag_seconds.get_or_create(&labels).set(lag);
    }
}

/// One call's grading: the scores, or why there are none, and what the judge cost.
#[derive(Debug, Default)]
pub struct Graded {
    pub rows: Vec<ScoreRow>,
    pub cost: Option<keel_core::money::Nanos>,
    /// The judge failed after its retries: no scores.
    pub error: Option<String>,
}

/// Run `eval`'s assertions on `trace`.
pub async fn grade(
    app: Arc<AppState>,
    store: Option<&Stores>,
    eval: &CompiledEval,
    trace: &Arc<keel_core::trace::TraceRecord>,
) -> Graded {
    // Only a function call's messages need the store (its prompt version is rendered
    // again); a model call's are in its request.
    let case = match (store, trace.prompt_name.is_some()) {
        (Some(s), true) => {
            let t = trace.clone();
            s.read
                .with(move |c| Ok(crate::call::case_of(Some(c), &t)))
                .await
                .unwrap_or_else(|_| crate::call::case_of(None, trace))
        }
        _ => crate::call::case_of(None, trace),
    };
    let out = crate::call::output_of(trace);
    let judge = GatewayJudge::new(app, &eval.config.name, eval.config.judge.clone(), &trace.id);
    let mut rows = Vec::with_capacity(eval.assertions.len());
    for a in &eval.assertions {
        let r = evaluate(a, &case, &out, &judge).await;
        // The engine's reason ("score 0.90, needs 0.70"), then the judge's own words.
        let reason = match r.judge_reasoning {
            Some(j) if !j.is_empty() => format!("{} — judge: {j}", r.reason),
            _ => r.reason,
        };
        rows.push(ScoreRow {
            metric: r.name,
            value: r.score,
            passed: r.pass,
            reason: Some(reason),
        });
    }
    Graded {
        rows,
        cost: judge.cost(),
        error: judge.error(),
    }
}

/// Store a grading (scores, or the failure) on a blocking thread; whether it was stored.
pub async fn store_outcome(
    store: Option<&Stores>,
    eval: &str,
    source: &str,
    trace_id: &str,
    g: &Graded,
) -> bool {
    let Some(store) = store else {
        return false;
    };
    let (eval, source, trace_id) = (eval.to_string(), source.to_string(), trace_id.to_string());
    let rows = g.rows.clone();
    let (cost, error) = (g.cost.map(|c| c.0), g.error.clone());
    let done = store
        .write
        .with(move |conn| {
            let now = crate::now_ms();
            match error {
                Some(e) => keel_store::scores::record_failure(conn, &eval, &trace_id, now, &e),
                None => keel_store::scores::replace_scores(
                    conn, &trace_id, &eval, &source, &rows, cost, now,
                ),
            }
        })
        .await;
    match done {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "online eval: cannot store the outcome");
            false
        }
    }
}
