//! Filling review queues, off the request path.
//!
//! A pass reads, for each `[[review_queues]]` table, what is new in the calls it covers
//! since it last looked (`keel_store::review_intake`): negative feedback, failed or low
//! online scores, guardrail flags and new calls for the random sample — in that order,
//! so when the daily cap (`max_items_per_day`, items that entered on their own since the
//! UTC day began) is short, the strongest signals get in first. Beyond the cap, calls
//! are counted as `capped` and passed over for good: a flood today does not become a
//! backlog tomorrow. A trace enters a queue once, with the reason it first matched.
//! Each queue's pass is one transaction (reads, inserts, watermarks), so a crash
//! mid-pass repeats it rather than losing or doubling items.
//!
//! `keel serve` runs a pass every [`INTERVAL`]; `keel review` runs one before it reads,
//! so the CLI works without a server.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_core::config::review::{ReviewQueueConfig, ReviewTarget};
use keel_core::sample::in_sample;
use keel_core::scope::ScopeKind;
use keel_store::review::enqueue;
use keel_store::review_intake::{self as read, Coverage, Watermarks, FEEDBACK_OVERLAP_MS};
use keel_store::StoreError;
use serde::Serialize;

/// How often `keel serve` fills the queues.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Most rows read per source per queue per pass (the rest waits for the next pass).
pub const BATCH: usize = 1_000;
/// How long a score whose trace is not written yet holds the score read back (the
/// trace writer is usually milliseconds behind; a trace that never comes is given up).
pub const PENDING_TRACE_MS: i64 = 60_000;
/// A queue seen for the first time starts with what arrived in the last day.
pub const FIRST_LOOK_BACK_MS: i64 = 86_400_000;

const DAY_MS: i64 = 86_400_000;

/// The start of `now_ms`'s UTC day: "today" for the daily cap and every "labelled today".
pub fn day_start_ms(now_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(DAY_MS)
}

/// What one pass did for one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueIntake {
    pub queue: String,
    /// Items that entered, by reason.
    pub entered: BTreeMap<&'static str, u64>,
    /// Calls that matched a rule but found the day's cap full.
    pub capped: u64,
}

impl QueueIntake {
    pub fn total(&self) -> u64 {
        self.entered.values().sum()
    }
}

fn coverage(q: &ReviewQueueConfig) -> Coverage<'_> {
    let (function, model) = match &q.target {
        ReviewTarget::Function(f) => (Some(f.as_str()), None),
        ReviewTarget::Model(m) => (None, Some(m.as_str())),
        ReviewTarget::All => (None, None),
    };
    let scoped = |kind: ScopeKind| {
        q.scope
            .as_ref()
            .filter(|s| s.kind == kind)
            .and_then(|s| s.value.as_deref())
    };
    Coverage {
        function,
        model,
        feature: scoped(ScopeKind::Feature),
        tenant: scoped(ScopeKind::Tenant),
    }
}

/// One pass over every queue at `now_ms`.
pub fn run_once(
    conn: keel_store::sql::Db<'_>,
    queues: &[ReviewQueueConfig],
    now_ms: i64,
) -> Result<Vec<QueueIntake>, StoreError> {
    let mut out = Vec::with_capacity(queues.len());
    for q in queues {
        // One queue at a time across replicas: the watermarks are read, then moved.
        let done = conn.exclusive_for(&format!("review-intake:{}", q.name), |tx| {
            fill(tx, q, now_ms)
        })?;
        out.push(done);
    }
    Ok(out)
}

/// One queue's pass, inside the caller's transaction.
fn fill(
    conn: keel_store::sql::Db<'_>,
    q: &ReviewQueueConfig,
    now_ms: i64,
) -> Result<QueueIntake, StoreError> {
    let cov = coverage(q);
    let w = read::watermarks(conn, &q.name, now_ms - FIRST_LOOK_BACK_MS)?;
    let entered_today = read::entered_since(conn, &q.name, day_start_ms(now_ms))?;
    let mut room = u64::from(q.max_items_per_day).saturating_sub(entered_today);
    let mut done = QueueIntake {
        queue: q.name.clone(),
        ..QueueIntake::default()
    };
    let mut offer = |trace_id: &str, reason: &'static str| -> Result<(), StoreError> {
        if room == 0 {
            // Counted once per call: a call already in the queue is not capped.
            if !keel_store::review::items_for_trace(conn, trace_id)?
                .iter()
                .any(|i| i.queue == q.name)
            {
                done.capped += 1;
            }
            return Ok(());
        }
        if enqueue(conn, &q.name, trace_id, reason, q.reviewers, now_ms, None)? {
            room -= 1;
            *done.entered.entry(reason).or_default() += 1;
        }
        Ok(())
    };
    let e = &q.entry;

    let mut feedback_at_ms = w.feedback_at_ms;
    if e.negative_feedback {
        let since = w.feedback_at_ms.saturating_sub(FEEDBACK_OVERLAP_MS);
        let (ids, newest) = read::new_negative_feedback(conn, &q.name, &cov, since, BATCH)?;
        for id in &ids {
            offer(id, "negative_feedback")?;
        }
        feedback_at_ms = newest.max(w.feedback_at_ms);
    }

    let (scores, scores_rowid) = if e.failed_eval.is_some() || e.score_below.is_some() {
        read::new_scores(conn, &cov, w.scores_rowid, BATCH, now_ms - PENDING_TRACE_MS)?
    } else {
        (
            Vec::new(),
            keel_store::review_intake::max_scores_rowid(conn)?.max(w.scores_rowid),
        )
    };
    for s in &scores {
        if e.failed_eval.as_deref() == Some(s.eval.as_str()) && !s.passed {
            offer(&s.trace_id, "failed_eval")?;
        } else if e
            .score_below
            .as_ref()
            .is_some_and(|(m, v)| *m == s.metric && s.value < *v)
        {
            offer(&s.trace_id, "score_below")?;
        }
    }

    let (traces, traces_rowid) = if e.guardrail_flagged || e.sample_rate.is_some() {
        read::new_traces(conn, &cov, w.traces_rowid, BATCH)?
    } else {
        (
            Vec::new(),
            keel_store::review_intake::max_traces_rowid(conn)?.max(w.traces_rowid),
        )
    };
    for t in traces.iter().filter(|t| e.guardrail_flagged && t.flagged) {
        offer(&t.id, "guardrail_flagged")?;
    }
    if let Some(rate) = e.sample_rate {
        for t in &traces {
            if in_sample(&q.name, &t.id, rate) {
                offer(&t.id, "sample")?;
            }
        }
    }

    read::set_watermarks(
        conn,
        &q.name,
        &Watermarks {
            traces_rowid,
            scores_rowid,
            feedback_at_ms,
        },
    )?;
    Ok(done)
}

/// What the background intake reports as it goes (`keel serve` turns it into the
/// `keel_review_items_entered_total{queue,reason}` and `keel_review_intake_errors_total`
/// metrics).
pub trait IntakeCounters: Send + Sync {
    /// `n` items entered `queue` because of `reason` in one pass.
    fn entered(&self, queue: &str, reason: &str, n: u64);
    /// A pass failed (it is logged and tried again next time).
    fn failed(&self);
}

/// Fill the queues every [`INTERVAL`] until `shutdown` is cancelled (inside `keel
/// serve`). A failed pass is logged, counted and tried again next time; it never stops
/// serving.
pub async fn run_every(
    store: std::sync::Arc<keel_store::Store>,
    queues: Vec<ReviewQueueConfig>,
    shutdown: tokio_util::sync::CancellationToken,
    counters: std::sync::Arc<dyn IntakeCounters>,
) {
    if queues.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (store, queues) = (store.clone(), queues.clone());
        let pass = tokio::task::spawn_blocking(move || -> Result<Vec<QueueIntake>, StoreError> {
            let conn = store.conn()?;
            run_once(conn.db(), &queues, keel_store::prompts::now_ms())
        })
        .await;
        match pass {
            Ok(Ok(done)) => {
                for d in &done {
                    for (reason, n) in &d.entered {
                        counters.entered(&d.queue, reason, *n);
                    }
                }
                for d in done.iter().filter(|d| d.total() > 0 || d.capped > 0) {
                    tracing::info!(queue = %d.queue, entered = ?d.entered, capped = d.capped, "review items entered");
                }
            }
            Ok(Err(e)) => {
                counters.failed();
                tracing::warn!(error = %e, "review intake failed; retrying next pass");
            }
            Err(e) => {
                counters.failed();
                tracing::warn!(error = %e, "review intake task failed; retrying next pass");
            }
        }
    }
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
