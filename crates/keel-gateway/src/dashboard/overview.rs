//! `/`: the overview — live requests, spend, error rate, latency and time to first token
//! over a window (`?since=1h|24h|7d|30d`) as SVG charts, the totals, breakdowns by
//! model, function, feature and tenant, budget use and the alerts firing now. Everything
//! but budgets and alerts comes from the store's rollups, so the page stays fast on a
//! store of millions of traces.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use keel_core::money::Nanos;
use keel_store::report::GroupRow;

use super::charts::{bars, lines, Series};
use super::html::{esc, ms, pct, shell, table, urlenc, usd, when, PageError};
use super::{read, window, window_links, Params};
use crate::state::AppState;

/// Rows shown per breakdown.
const TOP: usize = 10;

fn breakdown(title: &str, id: &str, param: &str, since: &str, rows: &[GroupRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .take(TOP)
        .map(|r| {
            let s = &r.stats;
            let name = if r.name.starts_with('(') {
                esc(&r.name)
            } else {
                format!(
                    "<a href=\"/ui/traces?{param}={}&amp;since={since}\">{}</a>",
                    urlenc(&r.name),
                    esc(&r.name)
                )
            };
            vec![
                name,
                s.requests.to_string(),
                pct(s.error_rate),
                usd(s.cost.nanos()),
                s.unpriced_calls.to_string(),
                ms(s.latency_ms.p50),
                ms(s.latency_ms.p95),
            ]
        })
        .collect();
    format!(
        "<section class=\"half\"><h3>{}</h3>{}</section>",
        esc(title),
        table(
            id,
            &[title, "requests", "errors", "spend", "unpriced", "p50", "p95"],
            &body
        )
    )
}

fn card(label: &str, value: &str) -> String {
    format!(
        "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\">{}</div></div>",
        esc(label),
        value
    )
}

/// `GET /`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Query(params): Query<Params>,
) -> Result<Html<String>, PageError> {
    let (since_name, span, buckets) = window(&params)?;
    let now = keel_store::prompts::now_ms();
    // From the rollups: milliseconds whatever the store's size (keel-store overview.rs).
    let (overview, firing) = read(&app, move |c| {
        Ok((
            keel_store::overview::overview(c, now, span, buckets)?,
            keel_store::alerts::firing_alerts(c)?,
        ))
    })
    .await?;
    let budgets = super::governance::budgets_panel(&app).await;
    let timeline = &overview.timeline;

    let t = &overview.totals;
    let ttft = t
        .ttft_ms
        .map_or_else(|| "—".into(), |p| format!("{} / {}", ms(p.p50), ms(p.p95)));
    let cards = [
        card("requests", &t.requests.to_string()),
        card("spend", &usd(t.cost.nanos())),
        card("error rate", &pct(t.error_rate)),
        card(
            "latency p50 / p95",
            &format!("{} / {}", ms(t.latency_ms.p50), ms(t.latency_ms.p95)),
        ),
        card("TTFT p50 / p95", &ttft),
        card("unpriced calls", &t.unpriced_calls.to_string()),
    ]
    .concat();

    let labels: Vec<String> = timeline
        .iter()
        .map(|b| {
            let w = when(b.start_ms);
            // `2026-01-02 13:04:05`: the hour for short windows, the day for long ones.
            if span <= 86_400_000 {
                w.get(11..16).unwrap_or(&w).to_string()
            } else {
                w.get(5..13).unwrap_or(&w).to_string()
            }
        })
        .collect();
    let requests: Vec<f64> = timeline.iter().map(|b| b.requests as f64).collect();
    let spend: Vec<f64> = timeline.iter().map(|b| b.cost.0 as f64 / 1e9).collect();
    let errors: Vec<f64> = timeline
        .iter()
        .map(|b| {
            if b.requests == 0 {
                0.0
            } else {
                b.errors as f64 / b.requests as f64
            }
        })
        .collect();
    let p = |f: fn(&keel_store::Percentiles) -> u64, lat: bool| -> Vec<Option<f64>> {
        timeline
            .iter()
            .map(|b| {
                let v = if lat { b.latency_ms } else { b.ttft_ms };
                v.as_ref().map(|v| f(v) as f64)
            })
            .collect()
    };
    let fmt_ms = |v: f64| ms(v.round() as u64);
    let fmt_usd = |v: f64| usd(Nanos((v * 1e9).round() as i64));
    let charts = [
        bars("Requests", &labels, &requests, &|v| format!("{v:.0}")),
        bars("Spend (priced calls)", &labels, &spend, &fmt_usd),
        bars("Error rate", &labels, &errors, &|v| pct(v)),
        lines(
            "Latency",
            &labels,
            &[
                Series {
                    name: "p50",
                    class: "s1",
                    points: p(|p| p.p50, true),
                },
                Series {
                    name: "p95",
                    class: "s2",
                    points: p(|p| p.p95, true),
                },
            ],
            &fmt_ms,
        ),
        lines(
            "Time to first token (streams)",
            &labels,
            &[
                Series {
                    name: "p50",
                    class: "s1",
                    points: p(|p| p.p50, false),
                },
                Series {
                    name: "p95",
                    class: "s2",
                    points: p(|p| p.p95, false),
                },
            ],
            &fmt_ms,
        ),
    ]
    .concat();
    let empty = if overview.is_empty() {
        "<p class=\"empty\">No live traffic in this window yet. Send a request to \
         <code>/v1/chat/completions</code> and reload.</p>"
    } else {
        ""
    };
    let body = format!(
        "{}{empty}<div class=\"cards\">{cards}</div><div class=\"charts\">{charts}</div>\
         <h2>Breakdowns</h2><div class=\"grid\">{}{}{}{}</div>\
         <p class=\"note\">Since {} UTC, in 5-minute steps. Percentiles are estimated \
         from histograms, within 3.2 % (exact below 32 ms); <code>keel report</code> gives \
         exact ones.</p>\
         <h2>Budgets</h2>{budgets}<h2>Alerts firing</h2>{}",
        window_links("/", since_name),
        breakdown("model", "by-model", "model", since_name, &overview.by_model),
        breakdown(
            "function",
            "by-function",
            "function",
            since_name,
            &overview.by_function
        ),
        breakdown(
            "feature",
            "by-feature",
            "feature",
            since_name,
            &overview.by_feature
        ),
        breakdown(
            "tenant",
            "by-tenant",
            "tenant",
            since_name,
            &overview.by_tenant
        ),
        esc(&when(overview.since_ms)),
        super::governance::alerts_table("alerts", &firing),
    );
    Ok(shell("Overview", "/", &body))
}
