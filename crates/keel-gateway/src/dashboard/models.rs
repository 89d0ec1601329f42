//! `/ui/models`: the model inventory (`crate::inventory`, the same figures as
//! `keel models`): each configured model with its provider and upstream id, the versions
//! its deployments answered with, its price, its lifecycle (a retiring model is marked,
//! with the command that tests its successor), and what uses it — functions, online
//! evals, review queues, suites, guardrail policies and tools.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use super::html::{esc, shell, table, when, PageError};
use super::read;
use crate::inventory::{self, ModelEntry};
use crate::state::AppState;

pub async fn page(State(app): State<Arc<AppState>>) -> Result<Html<String>, PageError> {
    let versions = read(&app, |c| Ok(keel_store::model_versions::versions(c)?)).await?;
    let config = app.config.clone();
    let runner = app.suites.clone();
    // Suite files are read from disk: off the async threads.
    let (suites, problems) = tokio::task::spawn_blocking(move || match runner {
        Some(r) => r.suite_models(&config),
        None => (Vec::new(), Vec::new()),
    })
    .await
    .map_err(|e| PageError::Internal(e.to_string()))?;
    let inv = inventory::build(
        &app.config,
        &versions,
        &suites,
        problems,
        keel_core::lifecycle::today(),
    );
    let mut body = format!(
        "<p>{} configured model{}. Prices of {}, lifecycle dates of {} (override either per \
         model in keel.toml). Versions are what each provider said answered; a new one is \
         audited as <code>model.version_changed</code>.</p>",
        inv.models.len(),
        if inv.models.len() == 1 { "" } else { "s" },
        esc(&inv.price_table_as_of),
        esc(&inv.lifecycle_table_as_of)
    );
    let rows: Vec<Vec<String>> = inv.models.iter().map(summary_row).collect();
    body.push_str(&table(
        "models",
        &[
            "model",
            "provider",
            "upstream",
            "price (in/out per Mtok)",
            "lifecycle",
            "used by",
        ],
        &rows,
    ));
    let mut versions_rows = Vec::new();
    for m in &inv.models {
        for d in &m.deployments {
            for v in &d.versions {
                versions_rows.push(vec![
                    esc(&m.name),
                    esc(&d.deployment),
                    format!("<code>{}</code>", esc(&v.version)),
                    when(v.first_seen_ms),
                    when(v.last_seen_ms),
                    v.calls.to_string(),
                    format!(
                        "<a class=\"trace-link\" href=\"/ui/traces/{0}\">{0}</a>",
                        esc(&v.first_trace_id)
                    ),
                ]);
            }
        }
    }
    body.push_str("<h2>Versions seen</h2>");
    body.push_str(&table(
        "versions",
        &[
            "model",
            "deployment",
            "version",
            "first seen",
            "last seen",
            "calls",
            "first trace",
        ],
        &versions_rows,
    ));
    for p in &inv.suite_problems {
        body.push_str(&format!(
            "<p class=\"error\">suite not read: {}</p>",
            esc(p)
        ));
    }
    Ok(shell("Models", "/ui/models", &body))
}

fn summary_row(m: &ModelEntry) -> Vec<String> {
    let price = m.price.as_ref().map_or_else(
        || "<span class=\"tag error\">unpriced</span>".to_string(),
        |p| {
            format!(
                "${} / ${} ({}{})",
                p.input_per_mtok_usd,
                p.output_per_mtok_usd,
                esc(&p.source),
                p.as_of
                    .as_ref()
                    .map(|d| format!(" {}", esc(d)))
                    .unwrap_or_default()
            )
        },
    );
    let lifecycle = m.lifecycle.as_ref().map_or_else(
        || "—".to_string(),
        |l| {
            let when = match (&l.retires, l.days_left) {
                (Some(r), Some(d)) if d < 0 => format!(
                    "<span class=\"tag error retiring\">retired {}</span>",
                    esc(r)
                ),
                (Some(r), Some(d)) if l.retiring => format!(
                    "<span class=\"tag regression retiring\" data-days-left=\"{d}\">retires {} (in {d} days)</span>",
                    esc(r)
                ),
                (Some(r), _) => format!("retires {}", esc(r)),
                _ => String::new(),
            };
            let next = match (&l.successor, &l.test_command) {
                (Some(s), Some(cmd)) => format!(
                    "<br>successor <b>{}</b>: <code>{}</code>{}",
                    esc(s),
                    esc(cmd),
                    l.compare_command
                        .as_ref()
                        .map(|c| format!("<br><code>{}</code>", esc(c)))
                        .unwrap_or_default()
                ),
                _ => String::new(),
            };
            format!("{when}{next}")
        },
    );
    let mut used = Vec::new();
    for (what, list) in [
        ("functions", &m.functions),
        ("online evals", &m.online_evals),
        ("review", &m.review_queues),
        ("suites", &m.suites),
        ("canaries", &m.canaries),
        ("guardrails", &m.guardrails),
        ("tools", &m.tools),
        ("fallbacks", &m.fallbacks),
    ] {
        if !list.is_empty() {
            let names: Vec<_> = list.iter().map(|n| esc(n)).collect();
            used.push(format!("{what}: {}", names.join(", ")));
        }
    }
    vec![
        format!("<b>{}</b>", esc(&m.name)),
        format!("{} ({})", esc(&m.provider), esc(&m.provider_kind)),
        format!("<code>{}</code>", esc(&m.upstream_model)),
        price,
        lifecycle,
        if used.is_empty() {
            "—".into()
        } else {
            used.join("<br>")
        },
    ]
}
