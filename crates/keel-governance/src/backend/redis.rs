//! Budgets and rate limits in Redis, shared by every gateway replica.
//!
//! A call is two scripts: `admit.lua` (rate limits and budget reservation together,
//! atomic across replicas: it charges and reserves in every bucket, or none), one round
//! trip on the request path, and `finish.lua` (token correction and settlement, after
//! the response), sent in a pipeline with the other settlements of the same 2 ms
//! (`settle_batch`). Scripts run by hash (`EVALSHA`), loaded on first use. Reservations carry an expiry, so a replica that dies mid-call
//! cannot hold budget forever. A bucket that does not exist yet starts from the spend
//! this replica found in its store at startup (its seed). Keys are
//! `<prefix>b:<bucket>` (a hash), `<prefix>b:<bucket>:r` (reservations) and
//! `<prefix>r:<bucket>` (a rate TAT); budget hashes expire a day after their window.
//!
//! Every call has `[limits] backend_timeout`; a timeout or connection error is a
//! [`BackendError`], which the governor turns into fail-closed or fail-open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use keel_core::money::Nanos;
use redis::aio::ConnectionManager;
use redis::{Client, Script};

use super::settle_batch::{self, SettleBatches};
use super::{Admit, Ask, BackendError, Settlement};
use crate::gcra::{RateState, Refusal};

pub struct RedisBackend {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    seeds: DashMap<String, Nanos>,
    admit: Script,
    finish: Arc<Script>,
    settlements: SettleBatches,
    pipelines: Arc<AtomicU64>,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(format!("redis: {e}"))
}

impl RedisBackend {
    /// Connect lazily: a Redis that is down at startup is an error per call, not a
    /// refusal to start.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisBackend, BackendError> {
        let client = Client::open(url).map_err(err)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(err)?;
        let finish = Arc::new(Script::new(include_str!("finish.lua")));
        let pipelines = Arc::new(AtomicU64::new(0));
        Ok(RedisBackend {
            settlements: SettleBatches::new(settle_batch::Sender {
                conn: conn.clone(),
                script: finish.clone(),
                timeout,
                pipelines: pipelines.clone(),
            }),
            conn,
            prefix: prefix.to_string(),
            timeout,
            seeds: DashMap::new(),
            admit: Script::new(include_str!("admit.lua")),
            finish,
            pipelines,
        })
    }

    pub fn seed(&self, id: &str, spent: Nanos) {
        self.seeds.insert(id.to_string(), spent);
    }

    /// This replica's start-up seed of a bucket (0 when it had none).
    pub fn seed_of(&self, id: &str) -> Nanos {
        self.seeds.get(id).map_or(Nanos(0), |s| *s)
    }

    fn budget_key(&self, id: &str) -> String {
        format!("{}b:{id}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn)).await {
            Ok(r) => r.map_err(err),
            Err(_) => Err(BackendError(format!(
                "redis did not answer within {:?} ([limits] backend_timeout)",
                self.timeout
            ))),
        }
    }

    fn rate_key(&self, id: &str) -> String {
        format!("{}r:{id}", self.prefix)
    }

    /// See [`super::Backend::admit`]. A budget bucket whose hash is missing starts from
    /// its seed; without seeds, from this replica's start-up seed when it has no
    /// [`super::SpendSource`], else the script answers which buckets are missing.
    pub async fn admit(&self, ask: Ask<'_>) -> Result<Admit, BackendError> {
        let mut inv = self.admit.prepare_invoke();
        inv.arg(ask.now_ms.saturating_mul(1000))
            .arg(ask.rates.len());
        for r in ask.rates {
            inv.key(self.rate_key(&r.id)).arg(r.per_minute).arg(r.cost);
        }
        let now_ms = ask.now_ms;
        if let Some(b) = ask.budget {
            let hold = i64::try_from(b.hold.as_millis()).unwrap_or(i64::MAX);
            inv.arg(now_ms)
                .arg(b.amount.0)
                .arg(b.reservation)
                .arg(now_ms.saturating_add(hold));
            for (i, bucket) in b.buckets.iter().enumerate() {
                let key = self.budget_key(&bucket.id);
                inv.key(&key).key(format!("{key}:r"));
                // -1: "tell me it is missing" (the store knows its spend).
                let seed = match (b.seeds.and_then(|s| s.get(i)), &bucket.source) {
                    (Some(s), _) => s.0,
                    (None, Some(_)) => -1,
                    (None, None) => self.seed_of(&bucket.id).0,
                };
                let ttl = if bucket.window_end_ms == i64::MAX {
                    0
                } else {
                    (bucket.window_end_ms - now_ms).max(1) + 86_400_000
                };
                inv.arg(bucket.limit.map_or(-1, |l| l.0)).arg(seed).arg(ttl);
            }
        }
        let out: Vec<i64> = self.run(inv).await?;
        let index = |i: i64| usize::try_from(i - 1).unwrap_or(0);
        match out.as_slice() {
            [0, states @ ..] if states.len() == 2 * ask.rates.len() => Ok(Admit::Admitted(
                states
                    .chunks(2)
                    .zip(ask.rates)
                    .map(|(c, r)| RateState {
                        limit: r.per_minute,
                        remaining: u64::try_from(c[0]).unwrap_or(0),
                        reset: Duration::from_micros(u64::try_from(c[1]).unwrap_or(0)),
                    })
                    .collect(),
            )),
            [1, i, kind, wait] => Ok(Admit::RateRefused {
                index: index(*i),
                why: if *kind == 2 {
                    Refusal::TooLarge
                } else {
                    Refusal::Wait(Duration::from_micros(u64::try_from(*wait).unwrap_or(0)))
                },
            }),
            [2, i, spent, reserved] => Ok(Admit::Blocked {
                index: index(*i),
                spent: Nanos(*spent),
                reserved: Nanos(*reserved),
            }),
            [3, missing @ ..] => Ok(Admit::Missing(missing.iter().map(|i| index(*i)).collect())),
            other => Err(BackendError(format!(
                "redis: unexpected reply from the admission script: {other:?}"
            ))),
        }
    }

    /// Pipelines of settlements sent so far (a batch, or one sent on its own).
    pub fn settlement_pipelines(&self) -> u64 {
        self.pipelines.load(Ordering::Relaxed)
    }

    /// See [`super::Backend::finish`]: sent with the other settlements of the moment
    /// (`settle_batch`).
    pub async fn finish(&self, s: Settlement<'_>) -> Result<Vec<Nanos>, BackendError> {
        let mut inv = self.finish.prepare_invoke();
        inv.arg(s.now_ms.saturating_mul(1000))
            .arg(s.token_rates.len())
            .arg(s.token_delta);
        for r in s.token_rates {
            inv.key(self.rate_key(&r.id)).arg(r.per_minute);
        }
        if !s.buckets.is_empty() {
            inv.arg(s.reservation).arg(s.reserved.0).arg(s.actual.0);
            for b in s.buckets {
                let key = self.budget_key(&b.id);
                inv.key(&key).key(format!("{key}:r"));
            }
        }
        let out = self
            .settlements
            .settle(redis::Cmd::invoke_script(&inv))
            .await?;
        Ok(out.into_iter().map(Nanos).collect())
    }

    pub async fn usage(&self, ids: &[String]) -> Result<Vec<(Nanos, Nanos)>, BackendError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let mut conn = self.conn.clone();
            let cmd = redis::cmd("HMGET")
                .arg(self.budget_key(id))
                .arg("spent")
                .arg("reserved")
                .to_owned();
            let got: Result<(Option<i64>, Option<i64>), _> =
                match tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await {
                    Ok(r) => r.map_err(err),
                    Err(_) => Err(BackendError("redis did not answer in time".into())),
                };
            let (spent, reserved) = got?;
            let seed = self.seeds.get(id).map_or(0, |s| s.0);
            out.push((Nanos(spent.unwrap_or(seed)), Nanos(reserved.unwrap_or(0))));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! Against the real Redis on 127.0.0.1:6379, under a key prefix of their own that
    //! they delete afterwards. No Redis is a failure, unless `KEEL_SKIP_REDIS=1`.

    use super::*;
    use crate::backend::local::Local;
    use crate::backend::{BucketSpec, BudgetAsk, RateSpec};

    async fn redis_or_skip(prefix: &str) -> Option<RedisBackend> {
        let b = RedisBackend::new("redis://127.0.0.1:6379", prefix, Duration::from_secs(2)).ok()?;
        let mut conn = b.conn.clone();
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
        if let Err(e) = pong {
            if std::env::var("KEEL_SKIP_REDIS").as_deref() == Ok("1") {
                eprintln!("skipping (KEEL_SKIP_REDIS=1): no Redis at 127.0.0.1:6379: {e}");
                return None;
            }
            panic!("no Redis at 127.0.0.1:6379 ({e}): start it, or set KEEL_SKIP_REDIS=1 to skip");
        }
        Some(b)
    }

    async fn cleanup(b: &RedisBackend) {
        let mut conn = b.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", b.prefix))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }

    fn prefix() -> String {
        format!("keel-test-{}:", uuid_like())
    }

    fn uuid_like() -> String {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        hex::encode(b)
    }

    fn budget_ask<'a>(
        buckets: &'a [BucketSpec],
        amount: i64,
        id: &'a str,
        seeds: Option<&'a [Nanos]>,
    ) -> Option<BudgetAsk<'a>> {
        Some(BudgetAsk {
            buckets,
            amount: Nanos(amount),
            reservation: id,
            hold: Duration::from_secs(60),
            seeds,
        })
    }

    fn reserve<'a>(
        buckets: &'a [BucketSpec],
        amount: i64,
        id: &'a str,
        now_ms: i64,
        seeds: Option<&'a [Nanos]>,
    ) -> Ask<'a> {
        Ask {
            rates: &[],
            budget: budget_ask(buckets, amount, id, seeds),
            now_ms,
        }
    }

    fn settle<'a>(
        buckets: &'a [BucketSpec],
        id: &'a str,
        reserved: i64,
        actual: i64,
    ) -> Settlement<'a> {
        Settlement {
            token_rates: &[],
            token_delta: 0,
            buckets,
            reservation: id,
            reserved: Nanos(reserved),
            actual: Nanos(actual),
            now_ms: 1_000,
        }
    }

    #[tokio::test]
    async fn reservations_settle_lapse_and_agree_with_the_local_backend() {
        let p = prefix();
        let Some(r) = redis_or_skip(&p).await else {
            return;
        };
        let local = Local::new();
        let b = BucketSpec {
            id: "budget|acme|2026-12".into(),
            limit: Some(Nanos(100)),
            window_end_ms: 10_000_000,
            source: None,
        };
        r.seed(&b.id, Nanos(40));
        local.seed(&b, Nanos(40));
        let one = std::slice::from_ref(&b);
        for (i, want) in [(0, true), (1, true), (2, false)] {
            let id = format!("r{i}");
            let got = r.admit(reserve(one, 30, &id, 1_000, None)).await.unwrap();
            assert_eq!(matches!(got, Admit::Admitted(_)), want, "call {i}: {got:?}");
            assert_eq!(local.admit(reserve(one, 30, &id, 1_000, None)), got);
        }
        // Settling the first at a lower cost makes room for one more.
        let after = r.finish(settle(one, "r0", 30, 10)).await.unwrap();
        assert_eq!(after, vec![Nanos(50)]);
        assert_eq!(
            r.usage(std::slice::from_ref(&b.id)).await.unwrap(),
            vec![(Nanos(50), Nanos(30))]
        );
        // An unsettled reservation lapses after its hold.
        let later = 1_000 + 61_000;
        assert!(matches!(
            r.admit(reserve(one, 50, "r3", later, None)).await.unwrap(),
            Admit::Admitted(_)
        ));
        cleanup(&r).await;
    }

    /// Settlements that finish together go in one pipeline, each with its own answer;
    /// a settlement script Redis lost is loaded again and its calls sent once more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settlements_of_the_same_moment_share_a_pipeline_and_survive_a_lost_script() {
        let p = prefix();
        let Some(r) = redis_or_skip(&p).await else {
            return;
        };
        let r = std::sync::Arc::new(r);
        let b = BucketSpec {
            id: "budget|acme|batched".into(),
            limit: Some(Nanos(1_000_000)),
            window_end_ms: 10_000_000,
            source: None,
        };
        let one = std::slice::from_ref(&b);
        let calls = 40;
        for i in 0..calls {
            let id = format!("r{i}");
            let got = r.admit(reserve(one, 100, &id, 1_000, None)).await.unwrap();
            assert!(matches!(got, Admit::Admitted(_)), "{got:?}");
        }
        let before = r.settlement_pipelines();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..calls {
            let r = r.clone();
            let one = one.to_vec();
            tasks.spawn(async move {
                let id = format!("r{i}");
                r.finish(settle(&one, &id, 100, 10)).await.unwrap()
            });
        }
        let settled = tasks.join_all().await;
        let pipelines = r.settlement_pipelines() - before;
        assert!(
            (1..=calls / 2).contains(&pipelines),
            "{calls} settlements at once went in {pipelines} pipelines"
        );
        // Each got the spend after its own settlement: every total from 10 to 400, once.
        let mut totals: Vec<i64> = settled.iter().map(|s| s[0].0).collect();
        totals.sort_unstable();
        assert_eq!(
            totals,
            (1..=calls as i64).map(|n| n * 10).collect::<Vec<_>>()
        );
        assert_eq!(
            r.usage(std::slice::from_ref(&b.id)).await.unwrap(),
            vec![(Nanos(10 * calls as i64), Nanos(0))]
        );

        // Redis restarted (scripts gone): the settlement still lands.
        assert!(matches!(
            r.admit(reserve(one, 100, "late", 1_000, None))
                .await
                .unwrap(),
            Admit::Admitted(_)
        ));
        let mut conn = r.conn.clone();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            r.finish(settle(one, "late", 100, 10)).await.unwrap(),
            vec![Nanos(10 * calls as i64 + 10)]
        );
        cleanup(&r).await;
    }

    #[tokio::test]
    async fn a_lost_bucket_is_reported_missing_then_started_from_the_given_seed() {
        let p = prefix();
        let Some(r) = redis_or_skip(&p).await else {
            return;
        };
        let b = BucketSpec {
            id: "budget|acme|lost".into(),
            limit: Some(Nanos(100)),
            window_end_ms: 10_000_000,
            source: Some(super::super::SpendSource {
                scope: keel_core::scope::Scope {
                    kind: keel_core::scope::ScopeKind::Tenant,
                    value: Some("acme".into()),
                },
                start_ms: 0,
            }),
        };
        let one = std::slice::from_ref(&b);
        let ask = r.admit(reserve(one, 30, "a", 1_000, None)).await.unwrap();
        assert_eq!(ask, Admit::Missing(vec![0]));
        // Nothing was created by the question.
        assert_eq!(
            r.usage(std::slice::from_ref(&b.id)).await.unwrap(),
            vec![(Nanos(0), Nanos(0))]
        );
        let seeded = r
            .admit(reserve(one, 30, "a", 1_000, Some(&[Nanos(90)])))
            .await
            .unwrap();
        assert!(
            matches!(
                seeded,
                Admit::Blocked {
                    spent: Nanos(90),
                    ..
                }
            ),
            "{seeded:?}"
        );
        // Once it exists, no question is asked.
        assert!(matches!(
            r.admit(reserve(one, 5, "b", 1_000, None)).await.unwrap(),
            Admit::Admitted(_)
        ));
        // Lost again before the call settles: settling does not bring it back from
        // this call alone; the next admission asks for its seed again.
        cleanup(&r).await;
        assert_eq!(
            r.finish(settle(one, "b", 5, 5)).await.unwrap(),
            vec![Nanos(0)]
        );
        assert_eq!(
            r.admit(reserve(one, 5, "c", 1_000, None)).await.unwrap(),
            Admit::Missing(vec![0])
        );
        cleanup(&r).await;
    }

    fn rates(cost: u64) -> Vec<RateSpec> {
        vec![
            RateSpec {
                id: "k|rpm".into(),
                per_minute: 5,
                cost: 1,
            },
            RateSpec {
                id: "k|tpm".into(),
                per_minute: 100,
                cost,
            },
        ]
    }

    #[tokio::test]
    async fn the_lua_admission_matches_the_rust_one() {
        let p = prefix();
        let Some(r) = redis_or_skip(&p).await else {
            return;
        };
        let local = Local::new();
        let b = BucketSpec {
            id: "budget|k".into(),
            limit: Some(Nanos(300)),
            window_end_ms: i64::MAX,
            source: None,
        };
        let one = std::slice::from_ref(&b);
        let mut now = 1_700_000_000_000i64;
        let (mut admitted, mut blocked, mut limited) = (0, 0, 0);
        for step in 0..40 {
            let cost = [10, 30, 5, 60][step % 4];
            let amount = [40, 90, 10, 200][step % 4];
            let rs = rates(cost);
            let id = format!("s{step}");
            let ask = Ask {
                rates: &rs,
                budget: budget_ask(one, amount, &id, None),
                now_ms: now,
            };
            let a = r.admit(ask).await.unwrap();
            assert_eq!(a, local.admit(ask), "step {step}");
            blocked += usize::from(matches!(a, Admit::Blocked { .. }));
            limited += usize::from(matches!(a, Admit::RateRefused { .. }));
            if matches!(a, Admit::Admitted(_)) {
                admitted += 1;
                // Settle half of them below their reservation, with tokens given back.
                if step % 2 == 0 {
                    let tpm = [rs[1].clone()];
                    let s = Settlement {
                        token_rates: &tpm,
                        token_delta: -i64::try_from(cost / 2).unwrap(),
                        buckets: one,
                        reservation: &id,
                        reserved: Nanos(amount),
                        actual: Nanos(amount / 2),
                        now_ms: now,
                    };
                    assert_eq!(r.finish(s).await.unwrap(), local.finish(s), "step {step}");
                }
            }
            now += 1_000;
        }
        assert!(
            admitted > 2 && blocked > 0 && limited > 0,
            "the sequence admits ({admitted}), blocks on the budget ({blocked}) and on a rate ({limited})"
        );
        assert_eq!(
            r.usage(std::slice::from_ref(&b.id)).await.unwrap(),
            local.usage(std::slice::from_ref(&b.id))
        );
        cleanup(&r).await;
    }
}
