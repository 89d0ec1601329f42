//! `/ui/functions`: experiments — each function's variants, the traffic split served now
//! (a `keel function canary` override or the config's weights), per-variant live
//! metrics over a window, and, for a function with a shadow, how its shadow compares
//! with the live calls it mirrored (parity).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use keel_core::config::function::PromptRef;
use keel_store::report::{GroupRow, VARIANT_SEP};
use keel_store::shadow::ShadowPair;

use super::html::{esc, ms, pct, shell, table, urlenc, usd, PageError};
use super::{read, window, window_links, Params};
use crate::state::AppState;

/// Most shadow pairs read per function.
const PAIRS: usize = 500;

/// The shadow's parity, as `keel shadow report` computes it (`crate::parity`).
fn parity(function: &str, pairs: &[ShadowPair]) -> String {
    if pairs.is_empty() {
        return "<p class=\"empty\">No shadow pairs in this window.</p>".into();
    }
    let r = crate::parity::shadow_parity(function, pairs, crate::parity::DEFAULT_THRESHOLD);
    let opt_pct = |v: Option<f64>| v.map_or_else(|| "—".into(), pct);
    let similarity = r.similarity.map_or_else(
        || "—".into(),
        |s| format!("{:.3} [{:.3}–{:.3}]", s.estimate, s.low, s.high),
    );
    let latency = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| ms(v as u64));
    let rows = vec![vec![
        r.pairs.to_string(),
        r.compared.to_string(),
        opt_pct(r.exact_agreement),
        similarity,
        format!("{} / {}", pct(r.live.error_rate), pct(r.shadow.error_rate)),
        r.cost_change_pct
            .map_or_else(|| "—".into(), |c| format!("{c:+.1}%")),
        format!(
            "{} → {}",
            latency(r.live.latency_p50_ms),
            latency(r.shadow.latency_p50_ms)
        ),
    ]];
    let verdict = if r.at_parity {
        format!(
            "<p><span class=\"tag ok\">at parity</span> (similarity threshold {:.2})</p>",
            crate::parity::DEFAULT_THRESHOLD
        )
    } else {
        format!(
            "<p><span class=\"tag error\">not at parity</span> {}</p>",
            esc(&r.reasons.join("; "))
        )
    };
    table(
        "shadow",
        &["pairs", "both ok", "exact agreement", "similarity (ROUGE-L)", "error rate live / shadow", "cost vs live", "p50 latency live → shadow"],
        &rows,
    ) + &verdict
        + "<p class=\"hint\">The same figures as <code>keel shadow report FUNCTION</code> (which can also ask a judge model).</p>"
}

/// `GET /ui/functions`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Query(params): Query<Params>,
) -> Result<Html<String>, PageError> {
    let (since_name, span, _) = window(&params)?;
    let until = keel_store::prompts::now_ms() + 1;
    let since = until - span;
    let shadowed: Vec<String> = app
        .config
        .functions
        .values()
        .filter(|f| f.shadow.is_some())
        .map(|f| f.name.clone())
        .collect();
    let (variants, pairs) = read(&app, move |c| {
        // From the rollups: a busy function's week is thousands of rows, not millions.
        let rows = keel_store::overview::variant_breakdown(c, until, span)?;
        let mut pairs = HashMap::new();
        for f in shadowed {
            let p = keel_store::shadow::shadow_pairs(c, &f, since, PAIRS)?;
            pairs.insert(f, p);
        }
        Ok((rows, pairs))
    })
    .await?;
    let metrics: HashMap<(&str, &str), &GroupRow> = variants
        .iter()
        .filter_map(|r| {
            let (f, v) = r.name.split_once(VARIANT_SEP)?;
            Some(((f, v), r))
        })
        .collect();
    let snapshot = app.registry.current();
    let mut body = window_links("/ui/functions", since_name);
    if app.config.functions.is_empty() {
        body.push_str("<p class=\"empty\">No functions configured (<code>[functions.NAME]</code> in keel.toml).</p>");
    }
    let mut names: Vec<&String> = app.config.functions.keys().collect();
    names.sort();
    for name in names {
        let Some(f) = app.config.functions.get(name) else {
            continue;
        };
        let configured = keel_core::split::config_weights(f);
        let (source, served): (&str, Vec<u32>) = match snapshot.split(&f.name) {
            Some(w) => ("canary override", w.to_vec()),
            None => ("config", configured.iter().map(|(_, w)| *w).collect()),
        };
        let total: u64 = served.iter().map(|w| u64::from(*w)).sum::<u64>().max(1);
        let rows: Vec<Vec<String>> = f
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let share = u64::from(served.get(i).copied().unwrap_or(0)) as f64 / total as f64;
                let version = match snapshot.slot(&f.name, i) {
                    Some(Ok(d)) => format!("v{}", d.prompt_version),
                    Some(Err(why)) => {
                        format!("<span class=\"tag error\">{}</span>", esc(why.as_ref()))
                    }
                    None => "—".into(),
                };
                let label = match &v.prompt_ref {
                    PromptRef::Label(l) => format!("@{}", esc(l)),
                    PromptRef::Version(n) => format!("pinned v{n}"),
                };
                let m = metrics.get(&(f.name.as_str(), v.name.as_str()));
                let cell = |g: &dyn Fn(&GroupRow) -> String| m.map_or("—".to_string(), |r| g(r));
                vec![
                    format!(
                        "<a href=\"/ui/traces?function={}&amp;variant={}\">{}</a>",
                        urlenc(&f.name),
                        urlenc(&v.name),
                        esc(&v.name)
                    ),
                    esc(&v.model),
                    format!(
                        "<a href=\"/ui/prompts/{}\">{}</a> {label} ({version})",
                        esc(&v.prompt),
                        esc(&v.prompt)
                    ),
                    format!(
                        "<span class=\"meter ok\"><span style=\"width:{:.0}%\"></span></span> {}",
                        share * 100.0,
                        pct(share)
                    ),
                    cell(&|r| r.stats.requests.to_string()),
                    cell(&|r| pct(r.stats.error_rate)),
                    cell(&|r| usd(r.stats.cost.nanos())),
                    cell(&|r| {
                        let priced = r
                            .stats
                            .requests
                            .saturating_sub(r.stats.unpriced_calls)
                            .max(1);
                        usd(keel_core::money::Nanos(
                            r.stats.cost.nanos().0 / priced as i64,
                        ))
                    }),
                    cell(&|r| {
                        format!(
                            "{} / {}",
                            ms(r.stats.latency_ms.p50),
                            ms(r.stats.latency_ms.p95)
                        )
                    }),
                ]
            })
            .collect();
        let _ = write!(
            body,
            "<section class=\"function\" id=\"fn-{}\"><h2>{}</h2><p>{} · split from {source} · sticky by {:?}</p>{}",
            esc(&f.name),
            esc(&f.name),
            esc(f.description.as_deref().unwrap_or("")),
            f.sticky,
            table(
                &format!("variants-{}", f.name),
                &["variant", "model", "prompt", "share now", "requests", "errors", "spend", "per call", "p50 / p95"],
                &rows
            )
        );
        if let Some(s) = &f.shadow {
            let _ = write!(
                body,
                "<h3>Shadow: {} ({} of live calls)</h3>{}",
                esc(&s.variant),
                pct(s.sample),
                parity(&f.name, pairs.get(&f.name).map_or(&[][..], Vec::as_slice))
            );
        }
        body.push_str("</section>");
    }
    Ok(shell("Experiments", "/ui/functions", &body))
}
