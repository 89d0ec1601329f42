//! Budgets and rate limits in Redis, shared by every gateway replica.
//!
//! Each operation is one Lua script (`reserve.lua`, `settle.lua`, `gcra.lua`,
//! `adjust.lua`), so it is atomic across replicas: a reservation checks and takes room in
//! every bucket, or none. Reservations carry an expiry, so a replica that dies mid-call
//! cannot hold budget forever. A bucket that does not exist yet starts from the spend
//! this replica found in its store at startup (its seed). Keys are
//! `<prefix>b:<bucket>` (a hash), `<prefix>b:<bucket>:r` (reservations) and
//! `<prefix>r:<bucket>` (a rate TAT); budget hashes expire a day after their window.
//!
//! Every call has `[limits] backend_timeout`; a timeout or connection error is a
//! [`BackendError`], which the governor turns into fail-closed or fail-open.

use std::time::Duration;

use dashmap::DashMap;
use keel_core::money::Nanos;
use redis::aio::ConnectionManager;
use redis::{Client, Script};

use super::{Acquire, BackendError, BucketSpec, RateSpec, Reserve};
use crate::gcra::{RateState, Refusal};

pub struct RedisBackend {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    seeds: DashMap<String, Nanos>,
    reserve: Script,
    settle: Script,
    gcra: Script,
    adjust: Script,
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
        Ok(RedisBackend {
            conn,
            prefix: prefix.to_string(),
            timeout,
            seeds: DashMap::new(),
            reserve: Script::new(include_str!("reserve.lua")),
            settle: Script::new(include_str!("settle.lua")),
            gcra: Script::new(include_str!("gcra.lua")),
            adjust: Script::new(include_str!("adjust.lua")),
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

    /// See [`super::Backend::reserve`]. A bucket whose hash is missing starts from
    /// `seeds[i]`; without `seeds`, from this replica's start-up seed when it has no
    /// [`super::SpendSource`], else the script answers which buckets are missing.
    pub async fn reserve(
        &self,
        buckets: &[BucketSpec],
        amount: Nanos,
        reservation: &str,
        hold: Duration,
        now_ms: i64,
        seeds: Option<&[Nanos]>,
    ) -> Result<Reserve, BackendError> {
        let mut inv = self.reserve.prepare_invoke();
        let expiry = now_ms.saturating_add(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX));
        inv.arg(now_ms).arg(amount.0).arg(reservation).arg(expiry);
        for (i, b) in buckets.iter().enumerate() {
            let key = self.budget_key(&b.id);
            inv.key(&key).key(format!("{key}:r"));
            // -1: "tell me it is missing" (the store knows its spend).
            let seed = match (seeds.and_then(|s| s.get(i)), &b.source) {
                (Some(s), _) => s.0,
                (None, Some(_)) => -1,
                (None, None) => self.seed_of(&b.id).0,
            };
            let ttl = if b.window_end_ms == i64::MAX {
                0
            } else {
                (b.window_end_ms - now_ms).max(1) + 86_400_000
            };
            inv.arg(b.limit.map_or(-1, |l| l.0)).arg(seed).arg(ttl);
        }
        let out: Vec<i64> = self.run(inv).await?;
        match out.as_slice() {
            [0] => Ok(Reserve::Admitted),
            [-1, missing @ ..] => Ok(Reserve::Missing(
                missing
                    .iter()
                    .filter_map(|i| usize::try_from(*i - 1).ok())
                    .collect(),
            )),
            [i, spent, reserved] if *i >= 1 => Ok(Reserve::Blocked {
                index: usize::try_from(*i - 1).unwrap_or(0),
                spent: Nanos(*spent),
                reserved: Nanos(*reserved),
            }),
            other => Err(BackendError(format!(
                "redis: unexpected reply from reserve: {other:?}"
            ))),
        }
    }

    pub async fn settle(
        &self,
        buckets: &[BucketSpec],
        reservation: &str,
        reserved: Nanos,
        actual: Nanos,
    ) -> Result<Vec<Nanos>, BackendError> {
        let mut inv = self.settle.prepare_invoke();
        inv.arg(reservation).arg(reserved.0).arg(actual.0);
        for b in buckets {
            let key = self.budget_key(&b.id);
            inv.key(&key).key(format!("{key}:r"));
        }
        let out: Vec<i64> = self.run(inv).await?;
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

    pub async fn acquire(&self, rates: &[RateSpec], now_us: i64) -> Result<Acquire, BackendError> {
        let mut inv = self.gcra.prepare_invoke();
        inv.arg(now_us);
        for r in rates {
            inv.key(format!("{}r:{}", self.prefix, r.id))
                .arg(r.per_minute)
                .arg(r.cost);
        }
        let out: Vec<i64> = self.run(inv).await?;
        match out.split_first() {
            Some((0, rest)) if rest.len() == 2 * rates.len() => Ok(Acquire::Admitted(
                rest.chunks(2)
                    .zip(rates)
                    .map(|(c, r)| RateState {
                        limit: r.per_minute,
                        remaining: u64::try_from(c[0]).unwrap_or(0),
                        reset: Duration::from_micros(u64::try_from(c[1]).unwrap_or(0)),
                    })
                    .collect(),
            )),
            Some((i, [kind, wait])) if *i >= 1 => Ok(Acquire::Refused {
                index: usize::try_from(*i - 1).unwrap_or(0),
                why: if *kind == 2 {
                    Refusal::TooLarge
                } else {
                    Refusal::Wait(Duration::from_micros(u64::try_from(*wait).unwrap_or(0)))
                },
            }),
            _ => Err(BackendError(format!(
                "redis: unexpected reply from the rate limiter: {out:?}"
            ))),
        }
    }

    pub async fn adjust(
        &self,
        rate: &RateSpec,
        delta: i64,
        now_us: i64,
    ) -> Result<(), BackendError> {
        let mut inv = self.adjust.prepare_invoke();
        inv.key(format!("{}r:{}", self.prefix, rate.id))
            .arg(now_us)
            .arg(delta)
            .arg(rate.per_minute);
        let _: i64 = self.run(inv).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Against the real Redis on 127.0.0.1:6379, under a key prefix of their own that
    //! they delete afterwards. No Redis is a failure, unless `KEEL_SKIP_REDIS=1`.

    use super::*;
    use crate::backend::local::Local;

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
        let hold = Duration::from_secs(60);
        for (i, want) in [(0, true), (1, true), (2, false)] {
            let got = r
                .reserve(
                    std::slice::from_ref(&b),
                    Nanos(30),
                    &format!("r{i}"),
                    hold,
                    1_000,
                    None,
                )
                .await
                .unwrap();
            assert_eq!(got == Reserve::Admitted, want, "call {i}: {got:?}");
            assert_eq!(
                local.reserve(std::slice::from_ref(&b), Nanos(30), 1_000),
                got
            );
        }
        // Settling the first at a lower cost makes room for one more.
        let after = r
            .settle(std::slice::from_ref(&b), "r0", Nanos(30), Nanos(10))
            .await
            .unwrap();
        assert_eq!(after, vec![Nanos(50)]);
        assert_eq!(
            r.usage(std::slice::from_ref(&b.id)).await.unwrap(),
            vec![(Nanos(50), Nanos(30))]
        );
        // An unsettled reservation lapses after its hold.
        let later = 1_000 + 61_000;
        assert_eq!(
            r.reserve(std::slice::from_ref(&b), Nanos(50), "r3", hold, later, None)
                .await
                .unwrap(),
            Reserve::Admitted
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
        let hold = Duration::from_secs(60);
        let one = std::slice::from_ref(&b);
        let ask = r
            .reserve(one, Nanos(30), "a", hold, 1_000, None)
            .await
            .unwrap();
        assert_eq!(ask, Reserve::Missing(vec![0]));
        // Nothing was created by the question.
        assert_eq!(
            r.usage(std::slice::from_ref(&b.id)).await.unwrap(),
            vec![(Nanos(0), Nanos(0))]
        );
        let seeded = r
            .reserve(one, Nanos(30), "a", hold, 1_000, Some(&[Nanos(90)]))
            .await
            .unwrap();
        assert!(
            matches!(
                seeded,
                Reserve::Blocked {
                    spent: Nanos(90),
                    ..
                }
            ),
            "{seeded:?}"
        );
        // Once it exists, no question is asked.
        assert!(matches!(
            r.reserve(one, Nanos(5), "b", hold, 1_000, None)
                .await
                .unwrap(),
            Reserve::Admitted
        ));
        cleanup(&r).await;
    }

    #[tokio::test]
    async fn the_lua_gcra_matches_the_rust_one() {
        let p = prefix();
        let Some(r) = redis_or_skip(&p).await else {
            return;
        };
        let local = Local::new();
        let rates = |cost| {
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
        };
        let mut now = 1_700_000_000_000_000i64;
        for step in 0..40 {
            let cost = [10, 30, 5, 60][step % 4];
            let a = r.acquire(&rates(cost), now).await.unwrap();
            let b = local.acquire(&rates(cost), now);
            assert_eq!(a, b, "step {step}");
            now += 2_500_000;
        }
        r.adjust(&rates(0)[1], -40, now).await.unwrap();
        local.adjust(&rates(0)[1], -40, now);
        assert_eq!(
            r.acquire(&rates(30), now).await.unwrap(),
            local.acquire(&rates(30), now)
        );
        cleanup(&r).await;
    }
}
