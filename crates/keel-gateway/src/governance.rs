//! Starting governance with a gateway: the limits backend, the governor with its keys
//! and seeded budgets, and the background work that keeps it current — the key
//! refresher (`[auth] refresh`), the alert dispatcher, the alert-rule evaluator and the
//! housekeeping tick. None of it runs on the request path.

use std::sync::Arc;
use std::time::Duration;

use keel_core::config::governance::LimitsBackend;
use keel_core::config::Config;
use keel_governance::alerts::rules::{RuleEvaluator, EVAL_INTERVAL};
use keel_governance::alerts::{AlertSink, Dispatcher};
use keel_governance::backend::{local::Local, redis::RedisBackend, Backend};
use keel_governance::{Governor, KeyTable};
use keel_store::Store;

/// The background tasks; stopped (the alert queue drained) on shutdown.
pub struct GovernanceTasks {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
    sink: Option<AlertSink>,
}

impl GovernanceTasks {
    /// Stop the loops, then let the dispatcher send what is queued (at most 5 s).
    pub async fn stop(mut self, gov: &Governor) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        drop(self.sink.take());
        gov.clear_sink();
        if let Some(d) = self.dispatcher.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
        }
    }
}

/// Load every key (revoked ones too, so their callers are told so) into the governor.
pub fn reload_keys(gov: &Governor, store: &Store) -> anyhow::Result<usize> {
    let conn = store.conn()?;
    let rows = keel_store::keys::list_keys(&conn, true)?;
    let table = KeyTable::from_rows(&rows);
    let n = table.len();
    gov.replace_keys(table);
    Ok(n)
}

/// Build the governor for `config` and start its background tasks.
pub fn start(
    config: &Config,
    store: &Arc<Store>,
) -> anyhow::Result<(Arc<Governor>, GovernanceTasks)> {
    let g = &config.governance;
    let backend = match &g.limits.backend {
        LimitsBackend::Local => Backend::Local(Local::new()),
        LimitsBackend::Redis { url, prefix } => Backend::Redis(
            RedisBackend::new(url, prefix, g.limits.timeout).map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
    };
    let admin = std::env::var(&g.auth.admin_key_env).ok();
    // A reservation outlives the longest call a model allows, then lapses.
    let longest = config
        .models
        .values()
        .map(|m| m.timeout)
        .chain(config.functions.values().filter_map(|f| f.timeout))
        .max()
        .unwrap_or(config.gateway.request_timeout);
    let hold = longest.saturating_mul(4) + Duration::from_secs(60);
    let gov = Arc::new(Governor::new(
        g.clone(),
        config.alerting.spikes.clone(),
        backend,
        admin.as_deref(),
        hold,
    ));
    let keys = reload_keys(&gov, store)?;
    let seeded = gov.seed_from_store(store.conn()?.db())?;
    gov.set_store(store.clone());
    record_config_load(config, store);
    tracing::info!(keys, seeded_budgets = seeded, backend = gov.backend_name(), auth = ?g.auth.mode, "governance ready");

    let (sink, dispatcher) =
        Dispatcher::new(store.clone(), config.alerting.destinations.clone()).start();
    gov.set_sink(sink.clone());
    let mut tasks = Vec::new();

    // Keys: reload when the table changes.
    {
        let (gov, store) = (gov.clone(), store.clone());
        let every = g.auth.refresh;
        tasks.push(tokio::spawn(async move {
            let mut seen = None;
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let (gov2, store2) = (gov.clone(), store.clone());
                let r = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<(i64, i64)>> {
                    let v = keel_store::keys::keys_version(store2.conn()?.db())?;
                    if Some(v) != seen {
                        reload_keys(&gov2, &store2)?;
                        return Ok(Some(v));
                    }
                    Ok(None)
                })
                .await;
                match r {
                    Ok(Ok(Some(v))) => seen = Some(v),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot reload keys; the previous ones stay in force"),
                    Err(e) => tracing::warn!(error = %e, "key refresh task failed"),
                }
            }
        }));
    }
    // Alert rules.
    if !config.alerting.rules.is_empty() {
        let (gov, store, sink) = (gov.clone(), store.clone(), sink.clone());
        let rules = config.alerting.rules.clone();
        tasks.push(tokio::spawn(async move {
            let mut eval = RuleEvaluator::default();
            let mut tick = tokio::time::interval(EVAL_INTERVAL);
            loop {
                tick.tick().await;
                let now = keel_store::prompts::now_ms();
                for n in eval.evaluate(&rules, &store, Some(&gov), now).await {
                    sink.send(n);
                }
            }
        }));
    }
    // Housekeeping.
    {
        let gov = gov.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                gov.tick();
            }
        }));
    }
    Ok((
        gov,
        GovernanceTasks {
            tasks,
            dispatcher: Some(dispatcher),
            sink: Some(sink),
        },
    ))
}

/// Note in the audit log that this config was loaded, when it differs from the last
/// one loaded (so alerts can say "the config changed an hour ago"), with the hash it
/// replaced and which sections changed, were added or removed
/// (`keel_core::config::sections`).
fn record_config_load(config: &Config, store: &Store) {
    let Ok(text) = std::fs::read(&config.source) else {
        return;
    };
    use keel_core::config::sections;
    use sha2::Digest;
    let hash = hex_digest(&sha2::Sha256::digest(&text));
    let path = config.source.display().to_string();
    let now = sections::fingerprints(&String::from_utf8_lossy(&text)).unwrap_or_default();
    let result = (|| -> anyhow::Result<()> {
        let conn = store.conn()?;
        let last = keel_store::audit::last_event_values(&conn, "config.load", &path)?;
        let (previous_hash, previous_details) = last.unwrap_or_default();
        if previous_hash.as_deref() == Some(hash.as_str()) {
            return Ok(());
        }
        let before: std::collections::BTreeMap<String, String> = previous_details
            .as_deref()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .and_then(|v| serde_json::from_value(v["sections"].clone()).ok())
            .unwrap_or_default();
        let (changed, added, removed) = if before.is_empty() {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            sections::diff(&before, &now)
        };
        let what = sections::describe(&changed, &added, &removed);
        let reason = if what.is_empty() {
            "a changed config was loaded".to_string()
        } else {
            format!("a changed config was loaded: {what}")
        };
        keel_store::audit::record_audit(
            &conn,
            keel_store::prompts::now_ms(),
            &keel_store::audit::NewAuditEvent {
                actor: "keel serve",
                action: "config.load",
                target: &path,
                from_value: previous_hash,
                to_value: Some(hash.clone()),
                reason: Some(&reason),
                details: Some(serde_json::json!({
                    "sections": now, "changed": changed, "added": added, "removed": removed,
                })),
            },
        )?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot record the config load in the audit log");
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
