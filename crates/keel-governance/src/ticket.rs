//! An admitted call's hold on budgets and token limits.
//!
//! [`Ticket::settle`] replaces the reservation with the call's real cost (and corrects
//! the tokens charged to token limits); dropping a ticket unsettled releases everything
//! (the call failed or the client left before any usage was known). Either way the
//! backend work runs on a spawned task, never on the response. After settling, each
//! bucket's new spend is checked against its alert thresholds and `downgrade_at`: a
//! threshold alerts once per window, by whichever call crossed it.

use std::sync::Arc;

use keel_core::money::Nanos;

use crate::alerts::{AlertNotice, AlertState};
use crate::backend::{BucketSpec, RateSpec, Settlement};
use crate::governor::{now_ms, BucketMeta, Governor};

pub struct Ticket {
    inner: Option<Inner>,
}

struct Inner {
    gov: Arc<Governor>,
    buckets: Vec<BucketSpec>,
    metas: Vec<BucketMeta>,
    id: String,
    reserved: Nanos,
    tokens: Vec<RateSpec>,
    charged_tokens: u64,
}

impl Ticket {
    pub(crate) fn new(
        gov: Arc<Governor>,
        buckets: Vec<BucketSpec>,
        metas: Vec<BucketMeta>,
        id: String,
        reserved: Nanos,
        tokens: Vec<RateSpec>,
        charged_tokens: u64,
    ) -> Ticket {
        Ticket {
            inner: Some(Inner {
                gov,
                buckets,
                metas,
                id,
                reserved,
                tokens,
                charged_tokens,
            }),
        }
    }

    /// What was reserved for this call.
    pub fn reserved(&self) -> Nanos {
        self.inner.as_ref().map_or(Nanos(0), |i| i.reserved)
    }

    /// The call ended: `cost` is what it really cost (`None`: unknown, counted as
    /// nothing), `tokens` the input + output tokens it really used.
    pub fn settle(mut self, cost: Option<Nanos>, tokens: Option<u64>) {
        if let Some(inner) = self.inner.take() {
            spawn(inner, cost.unwrap_or(Nanos(0)), tokens.unwrap_or(0));
        }
    }

    /// Settle and wait (tests, and callers outside a runtime's hot path).
    pub async fn settle_now(mut self, cost: Option<Nanos>, tokens: Option<u64>) {
        if let Some(inner) = self.inner.take() {
            run(inner, cost.unwrap_or(Nanos(0)), tokens.unwrap_or(0)).await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            spawn(inner, Nanos(0), 0);
        }
    }
}

fn spawn(inner: Inner, cost: Nanos, tokens: u64) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(run(inner, cost, tokens));
        }
        Err(_) => tracing::warn!(
            "a budget reservation was dropped outside a runtime; it lapses with its hold"
        ),
    }
}

async fn run(inner: Inner, cost: Nanos, tokens: u64) {
    let g = &inner.gov;
    let token_delta = if inner.tokens.is_empty() {
        0
    } else {
        i64::try_from(tokens).unwrap_or(i64::MAX)
            - i64::try_from(inner.charged_tokens).unwrap_or(i64::MAX)
    };
    let budgets = !inner.buckets.is_empty() && (inner.reserved.0 != 0 || cost.0 != 0);
    if token_delta == 0 && !budgets {
        return;
    }
    // Token correction and settlement together: one round trip to a shared ledger.
    let settlement = Settlement {
        token_rates: if token_delta == 0 { &[] } else { &inner.tokens },
        token_delta,
        buckets: if budgets { &inner.buckets } else { &[] },
        reservation: &inner.id,
        reserved: inner.reserved,
        actual: cost,
        now_ms: now_ms(),
    };
    let after = match g.backend.finish(settlement).await {
        Ok(a) => a,
        Err(e) => {
            let what = match (budgets, token_delta != 0) {
                (true, true) => "a budget reservation and a token correction",
                (true, false) => "a budget reservation",
                _ => "a token correction",
            };
            tracing::warn!(error = %e, "cannot settle {what} with the limits backend (Redis may still have applied it); if not, a reservation lapses with its hold");
            return;
        }
    };
    for ((spent, m), b) in after.iter().zip(&inner.metas).zip(&inner.buckets) {
        let before = Nanos(spent.0 - cost.0);
        let share = |n: Nanos| n.0 as f64 / m.limit.0.max(1) as f64;
        for t in &m.alert_at {
            if share(before) < *t && share(*spent) >= *t {
                g.alert(AlertNotice {
                    source: "budget",
                    name: m.name.clone(),
                    scope: m.scope.clone(),
                    state: AlertState::Firing,
                    value: Some(share(*spent)),
                    threshold: Some(*t),
                    message: format!(
                        "{:.0}% of the {} budget used: ${} of ${} ({})",
                        t * 100.0,
                        m.window.as_str(),
                        spent.to_dollar_string(),
                        m.limit.to_dollar_string(),
                        m.window_label
                    ),
                    dedupe_key: format!("budget|{}|{}", b.id, t),
                    to: m.to.clone(),
                    repeat: None,
                    at_ms: now_ms(),
                    incident: None,
                });
            }
        }
        if m.downgrade_at.is_some_and(|d| share(*spent) >= d) {
            g.downgraded.insert(b.id.clone(), b.window_end_ms);
        }
    }
}
