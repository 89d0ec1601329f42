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

use super::{Acquire, BucketSpec, RateSpec, Reserve};
use crate::gcra;

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

    pub fn reserve(&self, buckets: &[BucketSpec], amount: Nanos, _now_ms: i64) -> Reserve {
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
                return Reserve::Blocked {
                    index: i,
                    spent: Nanos(spent),
                    reserved: Nanos(reserved - amount.0),
                };
            }
        }
        Reserve::Admitted
    }

    pub fn settle(&self, buckets: &[BucketSpec], reserved: Nanos, actual: Nanos) -> Vec<Nanos> {
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

    pub fn acquire(&self, rates: &[RateSpec], now_us: i64) -> Acquire {
        let mut taken: Vec<(Arc<AtomicI64>, i64)> = Vec::with_capacity(rates.len());
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
                        return Acquire::Refused { index: i, why };
                    }
                }
            }
        }
        Acquire::Admitted(states)
    }

    pub fn adjust(&self, rate: &RateSpec, delta: i64, now_us: i64) {
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
    use std::sync::Barrier;

    fn bucket(id: &str, limit: i64) -> BucketSpec {
        BucketSpec {
            id: id.into(),
            limit: Some(Nanos(limit)),
            window_end_ms: i64::MAX,
            source: None,
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
                        if l.reserve(&bs, Nanos(7), 0) == Reserve::Admitted {
                            admitted += 1;
                            l.settle(&bs, Nanos(7), Nanos(7));
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

    #[test]
    fn a_refused_rate_bucket_charges_none_of_the_others() {
        let l = Local::new();
        let both = |cost| {
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
        };
        assert!(matches!(l.acquire(&both(900), 0), Acquire::Admitted(_)));
        assert!(matches!(
            l.acquire(&both(200), 0),
            Acquire::Refused { index: 1, .. }
        ));
        match l.acquire(&both(100), 0) {
            Acquire::Admitted(states) => {
                assert_eq!(states[0].remaining, 98, "the refused call took no request");
                assert_eq!(states[1].remaining, 0);
            }
            other => panic!("{other:?}"),
        }
        // Giving tokens back makes room.
        l.adjust(&both(0)[1], -500, 0);
        assert!(matches!(l.acquire(&both(400), 0), Acquire::Admitted(_)));
    }
}
