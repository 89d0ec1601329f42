//! `/ui/governance`: budgets and their use now, virtual keys (ids and limits, never a
//! secret or hash), alerts firing and recent, the audit log and the calls governance
//! refused. Also the budget and alert panels the overview shows.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;
use keel_store::alerts::AlertEvent;

use super::html::{esc, opt, pct, shell, table, usd, when, PageError};
use super::read;
use crate::state::AppState;

/// Each budget's use in its current window, with a bar (shared with the overview).
pub(crate) async fn budgets_panel(app: &AppState) -> String {
    let list = match app.governor.all_budget_use().await {
        Ok(l) => l,
        Err(e) => {
            return format!(
                "<p class=\"error\">budgets unavailable: {}</p>",
                esc(&e.to_string())
            )
        }
    };
    if list.is_empty() {
        let configured = app.governor.config().budgets.len();
        return if configured == 0 {
            "<p class=\"empty\">No budgets configured (<code>[[budgets]]</code> in keel.toml, or a key's <code>--budget</code>).</p>".into()
        } else {
            format!(
                "<p class=\"empty\">{configured} budget{} configured (<code>[[budgets]]</code>); none has been used in its current window yet.</p>",
                if configured == 1 { "" } else { "s" }
            )
        };
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|u| {
            let share = u.share();
            let class = if share >= 1.0 {
                "over"
            } else if share >= 0.8 {
                "warn"
            } else {
                "ok"
            };
            vec![
                esc(&u.budget),
                esc(&u.scope),
                esc(&u.window),
                if u.hard { "hard" } else { "soft" }.into(),
                usd(u.spent),
                usd(u.reserved),
                usd(u.limit),
                format!(
                    "<span class=\"meter {class}\"><span style=\"width:{:.0}%\"></span></span> {}",
                    (share * 100.0).clamp(0.0, 100.0),
                    pct(share)
                ),
            ]
        })
        .collect();
    table(
        "budgets",
        &[
            "budget", "scope", "window", "mode", "spent", "reserved", "limit", "used",
        ],
        &rows,
    )
}

/// Alert events as a table.
pub(crate) fn alerts_table(id: &str, events: &[AlertEvent]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|a| {
            vec![
                when(a.at_ms),
                format!(
                    "<span class=\"tag {}\">{}</span>",
                    esc(&a.state),
                    esc(&a.state)
                ),
                esc(&a.source),
                esc(&a.name),
                esc(&a.scope),
                opt(a.value.map(|v| format!("{v:.4}"))),
                opt(a.threshold.map(|v| format!("{v:.4}"))),
                esc(&a.message),
            ]
        })
        .collect();
    table(
        id,
        &[
            "at",
            "state",
            "source",
            "name",
            "scope",
            "value",
            "threshold",
            "message",
        ],
        &rows,
    )
}

/// `GET /ui/governance`.
pub async fn page(State(app): State<Arc<AppState>>) -> Result<Html<String>, PageError> {
    let budgets = budgets_panel(&app).await;
    let (keys, firing, recent, audit, blocks) = read(&app, |c| {
        Ok((
            keel_store::keys::list_keys(c, true)?,
            keel_store::alerts::firing_alerts(c)?,
            keel_store::alerts::list_alert_events(c, 0, 50)?,
            keel_store::list_audit(c, 0, 100)?,
            keel_store::list_blocks(c, keel_governance::error::BLOCK_CLASSES, 0, 50)?,
        ))
    })
    .await?;
    let now = keel_store::prompts::now_ms();
    let key_rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let state = if k.revoked_at_ms.is_some() {
                "revoked"
            } else if k.active_at(now) {
                "active"
            } else {
                "expired"
            };
            vec![
                format!("<code>{}</code>", esc(&k.id)),
                opt(k.name.as_deref()),
                esc(&k.tenant),
                opt(k.feature.as_deref()),
                opt(k.models.as_ref().map(|m| m.join(", "))),
                match (k.budget_nanos, k.budget_window.as_deref()) {
                    (Some(n), Some(w)) => {
                        format!("{} / {}", usd(keel_core::money::Nanos(n)), esc(w))
                    }
                    _ => "—".into(),
                },
                opt(k.rpm),
                opt(k.tpm),
                opt(k.expires_at_ms.map(when)),
                when(k.created_at_ms),
                format!("<span class=\"tag {state}\">{state}</span>"),
            ]
        })
        .collect();
    let audit_rows = |events: &[keel_store::AuditEvent]| -> Vec<Vec<String>> {
        events
            .iter()
            .map(|e| {
                vec![
                    when(e.at_ms),
                    esc(&e.actor),
                    format!("<code>{}</code>", esc(&e.action)),
                    esc(&e.target),
                    opt(e.from_value.as_deref()),
                    opt(e.to_value.as_deref()),
                    opt(e.reason.as_deref()),
                ]
            })
            .collect()
    };
    let heads = ["at", "actor", "action", "target", "from", "to", "reason"];
    let body = format!(
        "<h2>Budgets</h2>{budgets}\
         <h2>Keys</h2><p class=\"hint\">Secrets are never stored or shown; only ids and limits.</p>{}\
         <h2>Alerts firing</h2>{}\
         <h2>Recent alert events</h2>{}\
         <h2>Audit log</h2>{}\
         <h2>Refused calls</h2>{}",
        table(
            "keys",
            &["id", "name", "tenant", "feature", "models", "budget", "rpm", "tpm", "expires", "created", "state"],
            &key_rows
        ),
        alerts_table("alerts-firing", &firing),
        alerts_table("alerts-recent", &recent),
        table("audit", &heads, &audit_rows(&audit)),
        table("blocks", &heads, &audit_rows(&blocks)),
    );
    Ok(shell("Governance", "/ui/governance", &body))
}
