//! Budgets and rate limits in this process: lock-free counters in a sharded map.
//!
//! A reservation adds its amount to every bucket's `reserved` first and checks the
//! limits after; if any bucket would overrun, it takes the amount back from all. Two
//! racing calls near a limit may therefore both be refused where one would have fit —
//! never both admitted past it. Rate buckets update their TAT by compare-and-swap.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use keel_core::money::Nanos;

use super::{Admit, Ask, BucketSpec, RateSpec, Settlement};
use crate::gcra::{self, RateState, Refusal};

/// Rate charges taken so far: each TAT and what was added to it (to give back).
type Charges = Vec<(Arc<AtomicI64>, i64)>;

#[derive(Debug)]
struct Cell {
    spent: AtomicI64,
    reserved: AtomicI64,
    window_end_ms: AtomicI64,
}

#[derive(Debug, Default)]
pub struct Local {
    budgets: DashMap<String, Arc<Cell>>,
    rates: DashMap<String, Arc<AtomicI64>>,
}

impl Local {
    pub fn new() -> Local {
        Local::default()
    }

    fn cell(&self, b: &BucketSpec) -> Arc<Cell> {
        if let Some(c) = self.budgets.get(&b.id) {
            return c.clone();
        }
        self.budgets
            .entry(b.id.clone())
            .or_insert_with(|| {
                Arc::new(Cell {
                    spent: AtomicI64::new(0),
                    reserved: AtomicI64::new(0),
                    window_end_ms: AtomicI64::new(b.window_end_ms),
                })
            })
            .clone()
    }

    pub fn seed(&self, b: &BucketSpec, spent: Nanos) {
        self.budgets.entry(b.id.clone()).or_insert_with(|| {
            Arc::new(Cell {
                spent: AtomicI64::new(spent.0),
                reserved: AtomicI64::new(0),
                window_end_ms: AtomicI64::new(b.window_end_ms),
            })
        });
    }

    /// Rate limits, then the budget reservation; a budget that refuses gives the rate
    /// charges back, so a refused call is charged nowhere (as in Redis).
    pub fn admit(&self, ask: Ask<'_>) -> Admit {
        let now_us = ask.now_ms.saturating_mul(1000);
        let (charges, states) = match self.charge(ask.rates, now_us) {
            Ok(c) => c,
            Err((index, why)) => return Admit::RateRefused { index, why },
        };
        if let Some(b) = ask.budget {
            if let Some(blocked) = self.reserve(b.buckets, b.amount) {
                for (t, added) in charges {
                    t.fetch_sub(added, Ordering::AcqRel);
                }
                return blocked;
            }
        }
        Admit::Admitted(states)
    }

    /// Correct the token buckets, then settle the budgets.
    pub fn finish(&self, s: Settlement<'_>) -> Vec<Nanos> {
        if s.token_delta != 0 {
            let now_us = s.now_ms.saturating_mul(1000);
            for r in s.token_rates {
                self.adjust(r, s.token_delta, now_us);
            }
        }
        self.settle(s.buckets, s.reserved, s.actual)
    }

    /// Reserve `amount` in every bucket; `Some(Blocked)` (nothing reserved) when one
    /// would overrun.
    fn reserve(&self, buckets: &[BucketSpec], amount: Nanos) -> Option<Admit> {
        let cells: Vec<Arc<Cell>> = buckets.iter().map(|b| self.cell(b)).collect();
        for (c, b) in cells.iter().zip(buckets) {
            c.window_end_ms.store(b.window_end_ms, Ordering::Relaxed);
            c.reserved.fetch_add(amount.0, Ordering::AcqRel);
        }
        for (i, (c, b)) in cells.iter().zip(buckets).enumerate() {
            let Some(limit) = b.limit else { continue };
            let spent = c.spent.load(Ordering::Acquire);
            let reserved = c.reserved.load(Ordering::Acquire);
            if spent.saturating_add(reserved) > limit.0 {
                for c in &cells {
                    c.reserved.fetch_sub(amount.0, Ordering::AcqRel);
                }
                return Some(Admit::Blocked {
                    index: i,
                    spent: Nanos(spent),
                    reserved: Nanos(reserved - amount.0),
                });
            }
        }
        None
    }

    fn settle(&self, buckets: &[BucketSpec], reserved: Nanos, actual: Nanos) -> Vec<Nanos> {
        buckets
            .iter()
            .map(|b| {
                let c = self.cell(b);
                c.reserved.fetch_sub(reserved.0, Ordering::AcqRel);
                Nanos(c.spent.fetch_add(actual.0, Ordering::AcqRel) + actual.0)
            })
            .collect()
    }

    pub fn usage(&self, ids: &[String]) -> Vec<(Nanos, Nanos)> {
        ids.iter()
            .map(|id| match self.budgets.get(id) {
                Some(c) => (
                    Nanos(c.spent.load(Ordering::Acquire)),
                    Nanos(c.reserved.load(Ordering::Acquire)),
                ),
                None => (Nanos(0), Nanos(0)),
            })
            .collect()
    }

    fn tat(&self, id: &str) -> Arc<AtomicI64> {
        if let Some(t) = self.rates.get(id) {
            return t.clone();
        }
        self.rates
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(AtomicI64::new(0)))
            .clone()
    }

    /// Charge every rate bucket or none: the charges taken and the buckets' states, or
    /// the first bucket that refuses.
    fn charge(
        &self,
        rates: &[RateSpec],
        now_us: i64,
    ) -> Result<(Charges, Vec<RateState>), (usize, Refusal)> {
        let mut taken: Charges = Vec::with_capacity(rates.len());
        let mut states = Vec::with_capacity(rates.len());
        for (i, r) in rates.iter().enumerate() {
            let tat = self.tat(&r.id);
            let mut cur = tat.load(Ordering::Acquire);
            loop {
                match gcra::check(cur, now_us, r.per_minute, r.cost) {
                    Ok((next, st)) => match tat.compare_exchange_weak(
                        cur,
                        next,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            taken.push((tat.clone(), next - cur.max(now_us)));
                            states.push(st);
                            break;
                        }
                        Err(actual) => cur = actual,
                    },
                    Err(why) => {
                        // Give back what the earlier buckets took.
                        for (t, added) in taken {
                            t.fetch_sub(added, Ordering::AcqRel);
                        }
                        return Err((i, why));
                    }
                }
            }
        }
        Ok((taken, states))
    }

    fn adjust(&self, rate: &RateSpec, delta: i64, now_us: i64) {
        let tat = self.tat(&rate.id);
        let step = delta.saturating_mul(gcra::interval_us(rate.per_minute));
        let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            Some(cur.max(now_us).saturating_add(step).max(now_us))
        });
    }

    pub fn prune(&self, now_ms: i64) {
        let day = 86_400_000;
        self.budgets
            .retain(|_, c| c.window_end_ms.load(Ordering::Relaxed).saturating_add(day) > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BudgetAsk;
    use std::sync::Barrier;
    use std::time::Duration;

    fn bucket(id: &str, limit: i64) -> BucketSpec {
        BucketSpec {
            id: id.into(),
            limit: Some(Nanos(limit)),
            window_end_ms: i64::MAX,
            source: None,
        }
    }

    fn ask<'a>(rates: &'a [RateSpec], buckets: &'a [BucketSpec], amount: i64) -> Ask<'a> {
        Ask {
            rates,
            budget: (!buckets.is_empty()).then_some(BudgetAsk {
                buckets,
                amount: Nanos(amount),
                reservation: "r",
                hold: Duration::from_secs(60),
                seeds: None,
            }),
            now_ms: 0,
        }
    }

    fn settlement<'a>(buckets: &'a [BucketSpec], reserved: i64, actual: i64) -> Settlement<'a> {
        Settlement {
            token_rates: &[],
            token_delta: 0,
            buckets,
            reservation: "r",
            reserved: Nanos(reserved),
            actual: Nanos(actual),
            now_ms: 0,
        }
    }

    #[test]
    fn concurrent_reservations_never_overrun_a_limit() {
        let local = Arc::new(Local::new());
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (l, b) = (local.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    let mut admitted = 0;
                    for _ in 0..1000 {
                        let bs = [bucket("a", 1_000), bucket("b", 5_000)];
                        if matches!(l.admit(ask(&[], &bs, 7)), Admit::Admitted(_)) {
                            admitted += 1;
                            l.finish(settlement(&bs, 7, 7));
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let (spent, reserved) = local.usage(&["a".into()])[0];
        assert_eq!(reserved, Nanos(0));
        assert_eq!(spent, Nanos(admitted * 7));
        assert!(spent.0 <= 1_000, "overran: {spent:?}");
        assert_eq!(admitted, 1_000 / 7, "a full budget admits up to its limit");
        // The second bucket saw exactly the same calls.
        assert_eq!(local.usage(&["b".into()])[0].0, spent);
    }

    fn both(cost: u64) -> Vec<RateSpec> {
        vec![
            RateSpec {
                id: "rpm".into(),
                per_minute: 100,
                cost: 1,
            },
            RateSpec {
                id: "tpm".into(),
                per_minute: 1_000,
                cost,
            },
        ]
    }

    #[test]
    fn a_refused_rate_bucket_charges_none_of_the_others() {
        let l = Local::new();
        assert!(matches!(
            l.admit(ask(&both(900), &[], 0)),
            Admit::Admitted(_)
        ));
        assert!(matches!(
            l.admit(ask(&both(200), &[], 0)),
            Admit::RateRefused { index: 1, .. }
        ));
        match l.admit(ask(&both(100), &[], 0)) {
            Admit::Admitted(states) => {
                assert_eq!(states[0].remaining, 98, "the refused call took no request");
                assert_eq!(states[1].remaining, 0);
            }
            other => panic!("{other:?}"),
        }
        // Giving tokens back makes room.
        let mut give_back = settlement(&[], 0, 0);
        let tpm = [both(0)[1].clone()];
        give_back.token_rates = &tpm;
        give_back.token_delta = -500;
        l.finish(give_back);
        assert!(matches!(
            l.admit(ask(&both(400), &[], 0)),
            Admit::Admitted(_)
        ));
    }

    #[test]
    fn a_call_a_budget_refuses_is_charged_no_rate() {
        let l = Local::new();
        let tight = [bucket("t", 10)];
        assert!(matches!(
            l.admit(ask(&both(100), &tight, 11)),
            Admit::Blocked { index: 0, .. }
        ));
        match l.admit(ask(&both(100), &tight, 10)) {
            Admit::Admitted(states) => {
                assert_eq!(states[0].remaining, 99, "the refused call took no request");
                assert_eq!(states[1].remaining, 900, "nor tokens");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.usage(&["t".into()])[0], (Nanos(0), Nanos(10)));
    }
}
