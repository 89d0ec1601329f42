//! Watching the model behind each name: every [`INTERVAL`] a pass reads the traces
//! written since the last one and records the version each deployment answered with
//! (`keel_store::model_versions`). A version new to a deployment — never seen there, or
//! not within `[gateway] version_memory` (default a week), and not its first version
//! ever — is a change: an audit
//! event `model.version_changed` (model, deployment, old and new version, first trace id,
//! time), `keel_model_version_changes_total{model}` moves, and the log says so. A
//! provider serving two fingerprints at once is not a change on every switch: each is
//! remembered for the window. The pass reads the store only, off the request path.

use std::sync::Arc;
use std::time::Duration;

use keel_store::audit::{record_audit, NewAuditEvent};
use keel_store::model_versions::{watch_pass, VersionChange};

use crate::metrics::ModelLabels;
use crate::state::AppState;

/// How often the watch reads new traces.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Most traces read per pass (the rest is read by the next).
pub const BATCH: usize = 50_000;
/// The audit action of a change.
pub const ACTION: &str = "model.version_changed";

/// One pass at `now_ms`: the changes found, each audited. A version not seen for
/// `version_memory` counts as new when it comes back.
pub fn run_once(
    store: &keel_store::Store,
    now_ms: i64,
    version_memory: Duration,
) -> Result<Vec<VersionChange>, keel_store::StoreError> {
    let memory = i64::try_from(version_memory.as_millis()).unwrap_or(i64::MAX);
    let mut conn = store.conn()?;
    let changes = watch_pass(&mut conn, now_ms.saturating_sub(memory), memory, BATCH)?;
    for c in &changes {
        record_audit(
            &conn,
            now_ms,
            &NewAuditEvent {
                actor: "keel",
                action: ACTION,
                target: &c.model,
                from_value: Some(c.old_version.clone()),
                to_value: Some(c.new_version.clone()),
                reason: None,
                details: Some(serde_json::json!({
                    "deployment": c.deployment,
                    "first_trace_id": c.first_trace_id,
                    "first_seen_ms": c.at_ms,
                })),
            },
        )?;
    }
    Ok(changes)
}

/// Watch until the task is aborted (the gateway's stop does).
pub async fn run_every(store: Arc<keel_store::Store>, app: Arc<AppState>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = store.clone();
        let memory = app.config.gateway.version_memory;
        let pass = tokio::task::spawn_blocking(move || {
            run_once(&s, keel_store::prompts::now_ms(), memory)
        })
        .await;
        match pass {
            Ok(Ok(changes)) => {
                for c in changes {
                    app.metrics
                        .model_version_changes
                        .get_or_create(&ModelLabels {
                            model: c.model.clone(),
                        })
                        .inc();
                    tracing::warn!(
                        model = %c.model, deployment = %c.deployment, old = %c.old_version,
                        new = %c.new_version, first_trace = %c.first_trace_id,
                        "the model behind this name changed version"
                    );
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "model version watch failed; retrying next pass")
            }
            Err(e) => {
                tracing::warn!(error = %e, "model version watch task failed; retrying next pass")
            }
        }
    }
}
