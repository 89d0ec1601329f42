//! Scheduled canary evals inside `keel serve` (`[[canaries]]`): every [`TICK`], each
//! canary's models are checked; one is **due** when it never ran, when its last run is
//! older than `every`, or when the model answered with a new version
//! (`model.version_changed`) since. A due canary is run by the one replica that takes its
//! lease in the store (so N replicas run it once), through the suite runner `keel serve`
//! installs (`keel_evals::canary`: the suite on the model, traced as origin `canary`,
//! compared with the last run on the previous version; a significant change is audited
//! as `model.behaviour_changed`, which the alert metric of that name reads). Off the
//! request path; a failed run is recorded and retried at the next `every`.

use std::sync::Arc;
use std::time::Duration;

use keel_store::Store;

use crate::metrics::CanaryLabels;
use crate::state::AppState;

/// How often due canaries are looked for.
pub const TICK: Duration = Duration::from_secs(5);
/// A lease outlives any sane run; a replica that dies mid-run frees it after this.
pub const LEASE_TTL: Duration = Duration::from_secs(30 * 60);

/// What one run found, as the scheduler needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryResult {
    pub run_id: String,
    pub model_version: Option<String>,
    /// A significant change from the last run on another version.
    pub changed: bool,
    pub pass_rate: f64,
}

/// Why a canary is due now, if it is: `schedule` or `model_changed`.
fn due(
    store: &Store,
    key: &str,
    model: &str,
    every: Duration,
    now_ms: i64,
) -> Result<Option<&'static str>, keel_store::StoreError> {
    let conn = store.conn()?;
    let Some(last) = keel_store::canaries::last_run(&conn, key)? else {
        return Ok(Some("schedule"));
    };
    if keel_store::canaries::version_changed_since(&conn, model, last.started_ms)? {
        return Ok(Some("model_changed"));
    }
    let every = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    Ok((now_ms - last.started_ms >= every).then_some("schedule"))
}

/// Give the lease on `key` back (errors are left to its expiry).
async fn release(store: &Arc<Store>, key: &str, holder: &str) {
    let (s, k, h) = (store.clone(), key.to_string(), holder.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        let conn = s.conn()?;
        keel_store::canaries::release_lease(&conn, &k, &h)
    })
    .await;
}

/// Look for due canaries until the task is aborted (the gateway's stop does).
pub async fn run_every(app: Arc<AppState>, store: Arc<Store>) {
    let Some(runner) = app.suites.clone() else {
        tracing::warn!(
            "[[canaries]] are configured but this gateway has no suite runner: they do not run"
        );
        return;
    };
    let holder = uuid::Uuid::now_v7().to_string();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let config = app.config.clone();
        let (suite_models, _) = if config.canaries.iter().any(|c| c.models.is_empty()) {
            let (r, c) = (runner.clone(), config.clone());
            tokio::task::spawn_blocking(move || r.suite_models(&c))
                .await
                .unwrap_or_default()
        } else {
            Default::default()
        };
        for canary in &config.canaries {
            let models = if canary.models.is_empty() {
                suite_models
                    .iter()
                    .find(|(s, _)| *s == canary.suite)
                    .map(|(_, m)| m.clone())
                    .unwrap_or_default()
            } else {
                canary.models.clone()
            };
            for model in models {
                let key = canary.key(&model);
                let (s, k, m, every) = (store.clone(), key.clone(), model.clone(), canary.every);
                let now = keel_store::prompts::now_ms();
                let why = tokio::task::spawn_blocking(move || due(&s, &k, &m, every, now)).await;
                // A cheap read first; the lease (a write) only when it looks due.
                match why {
                    Ok(Ok(Some(_))) => {}
                    Ok(Ok(None)) => continue,
                    Ok(Err(e)) => {
                        tracing::warn!(canary = %key, error = %e, "cannot check a canary; retrying");
                        continue;
                    }
                    Err(_) => continue,
                }
                let (s, k, h) = (store.clone(), key.clone(), holder.clone());
                let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
                let leased = tokio::task::spawn_blocking(move || {
                    let mut conn = s.conn()?;
                    keel_store::canaries::try_acquire_lease(&mut conn, &k, &h, now, ttl)
                })
                .await;
                if !matches!(leased, Ok(Ok(true))) {
                    continue;
                }
                // Checked again under the lease: another replica may have run it between
                // our first look and taking the lease (it releases when done).
                let (s, k, m) = (store.clone(), key.clone(), model.clone());
                let still = tokio::task::spawn_blocking(move || due(&s, &k, &m, every, now)).await;
                let trigger = match still {
                    Ok(Ok(Some(t))) => t,
                    _ => {
                        release(&store, &key, &holder).await;
                        continue;
                    }
                };
                tracing::info!(canary = %key, trigger, "running a scheduled canary");
                let result = runner
                    .run_canary(
                        config.clone(),
                        store.clone(),
                        canary.suite.clone(),
                        model.clone(),
                        trigger,
                        app.governor.clone(),
                    )
                    .await;
                let outcome = match &result {
                    Ok(r) if r.changed => "changed",
                    Ok(_) => "ok",
                    Err(_) => "failed",
                };
                app.metrics
                    .canary_runs
                    .get_or_create(&CanaryLabels {
                        suite: canary.suite.clone(),
                        trigger: trigger.to_string(),
                        outcome: outcome.to_string(),
                    })
                    .inc();
                match result {
                    Ok(r) if r.changed => tracing::warn!(
                        canary = %key, version = ?r.model_version, run = %r.run_id,
                        "the canary found the model's behaviour changed (audited as model.behaviour_changed)"
                    ),
                    Ok(r) => {
                        tracing::info!(canary = %key, version = ?r.model_version, run = %r.run_id, pass_rate = r.pass_rate, "canary done")
                    }
                    Err(e) => {
                        tracing::warn!(canary = %key, error = %e, "the canary run failed; it runs again at its next schedule")
                    }
                }
                release(&store, &key, &holder).await;
            }
        }
    }
}
