//! `[retention]` inside `keel serve`: every `every` (and once at start), traces past
//! their origin's window are deleted with what derives from them and captured text past
//! the capture window is dropped (`keel_store::retention`), on a blocking thread in
//! small transactions, never on the request path. Counted in
//! `keel_retention_removed_total{what}`; a run that removed anything is audited. Several
//! replicas on one store may all run it: a row removed by one is simply not found by the
//! next.

use std::sync::Arc;

use keel_core::config::retention::RetentionConfig;
use keel_store::retention::{cutoff, run_retention, Cutoffs, RetentionCounts};
use keel_store::Store;

use crate::metrics::RetentionLabels;
use crate::state::AppState;

/// Run until the task is aborted (the gateway's stop does).
pub async fn run_every(app: Arc<AppState>, store: Arc<Store>, config: RetentionConfig) {
    let mut tick = tokio::time::interval(config.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (s, c) = (store.clone(), config.clone());
        let now = keel_store::prompts::now_ms();
        let result = tokio::task::spawn_blocking(move || run_once(&s, &c, now)).await;
        match result {
            Ok(Ok(counts)) => count(&app, &counts),
            Ok(Err(error)) => {
                app.metrics.retention_errors.inc();
                tracing::warn!(%error, "retention run failed; retrying at the next run");
            }
            Err(_) => {
                app.metrics.retention_errors.inc();
            }
        }
    }
}

/// One run over every origin.
pub fn run_once(
    store: &Store,
    config: &RetentionConfig,
    now_ms: i64,
) -> Result<RetentionCounts, keel_store::StoreError> {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let rules: Vec<Cutoffs<'_>> = config
        .windows
        .iter()
        .map(|(origin, w)| Cutoffs {
            origin,
            traces_before_ms: w.traces.map(|d| cutoff(now_ms, ms(d))),
            capture_before_ms: w.capture.map(|d| cutoff(now_ms, ms(d))),
        })
        .collect();
    let mut conn = store.conn()?;
    run_retention(&mut conn, &rules, config.batch, now_ms)
}

fn count(app: &AppState, c: &RetentionCounts) {
    for (what, n) in [
        ("traces", c.deleted.traces),
        ("captures", c.captures_dropped),
        ("responses", c.deleted.responses + c.responses_dropped),
    ] {
        if n > 0 {
            app.metrics
                .retention_removed
                .get_or_create(&RetentionLabels { what })
                .inc_by(n);
        }
    }
    if !c.is_empty() {
        tracing::info!(
            traces = c.deleted.traces,
            captures = c.captures_dropped,
            "retention removed what aged past its window"
        );
    }
}
