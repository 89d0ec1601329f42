//! `/ui/functions`: experiments — each function's variants, the traffic split served now
//! (a `keel function canary` override or the config's weights), per-variant live
//! metrics over a window with online quality beside them (judged calls, pass rate with
//! its interval, positive feedback) and whether the variants differ in quality (the
//! same two-proportion test as `keel report`), and, for a function with a shadow, how
//! its shadow compares with the live calls it mirrored (parity).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use keel_core::config::function::PromptRef;
use keel_store::quality::QualityGrouping;
use keel_store::quality_figures::{format_rate, quality_rows, variant_comparisons, QualityRow};
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

/// The share of positive feedback among positive and negative, with its interval.
pub(super) fn feedback(r: &QualityRow) -> String {
    let f = &r.feedback;
    match f.positive_rate {
        None => "—".into(),
        Some(_) => format!(
            "{} of {}",
            esc(&format_rate(
                f.positive_rate,
                f.positive_rate_low,
                f.positive_rate_high
            )),
            f.positive + f.negative
        ),
    }
}

/// Whether `function`'s variants differ in online quality, in words, as `keel report`
/// says it (`keel_store::quality_figures::variant_comparisons`).
fn verdicts(
    function: &str,
    comparisons: &[keel_store::quality_figures::VariantComparison],
    judged: &HashMap<(&str, &str), &QualityRow>,
) -> String {
    let mine: Vec<_> = comparisons
        .iter()
        .filter(|c| c.function == function)
        .collect();
    if mine.is_empty() {
        let any = judged.keys().any(|(f, _)| *f == function);
        return if any {
            "<p class=\"hint\">Only one variant has online quality in this window: nothing to compare.</p>".into()
        } else {
            "<p class=\"hint\">No call of this function was judged online or got feedback in this window (<code>[[online_evals]]</code> in keel.toml, <code>POST /v1/feedback</code>).</p>".into()
        };
    }
    let mut out = String::from("<ul class=\"verdicts\">");
    for c in mine {
        let tag = if c.pass_rate.significant {
            "<span class=\"tag warn\">differ</span>"
        } else {
            "<span class=\"tag\">no significant difference</span>"
        };
        let _ = write!(
            out,
            "<li>{tag} <b>{}</b> vs <b>{}</b> — online pass rate: {}; feedback: {}</li>",
            esc(&c.variant),
            esc(&c.baseline),
            esc(&c.pass_rate.verdict),
            esc(&c.feedback.verdict)
        );
    }
    out.push_str("</ul><p class=\"hint\">Two-proportion z-test, significant when p &lt; 0.05; the baseline is the variant with the most judged calls.</p>");
    out
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
    let (variants, quality, pairs) = read(&app, move |c| {
        // From the rollups: a busy function's week is thousands of rows, not millions.
        let rows = keel_store::overview::variant_breakdown(c, until, span)?;
        // Scores are a sample of live calls: joined through their traces in the window.
        let quality = quality_rows(c, since, until, QualityGrouping::Variant)?;
        let mut pairs = HashMap::new();
        for f in shadowed {
            let p = keel_store::shadow::shadow_pairs(c, &f, since, PAIRS)?;
            pairs.insert(f, p);
        }
        Ok((rows, quality, pairs))
    })
    .await?;
    let comparisons = variant_comparisons(&quality);
    let judged: HashMap<(&str, &str), &QualityRow> = quality
        .iter()
        .filter_map(|r| {
            let (f, v) = r.name.split_once(VARIANT_SEP)?;
            Some(((f, v), r))
        })
        .collect();
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
                let q = judged.get(&(f.name.as_str(), v.name.as_str()));
                let quality =
                    |g: &dyn Fn(&QualityRow) -> String| q.map_or("—".to_string(), |r| g(r));
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
                    quality(&|r| r.judged.to_string()),
                    quality(&|r| esc(&format_rate(r.pass_rate, r.pass_rate_low, r.pass_rate_high))),
                    quality(&|r| feedback(r)),
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
                &["variant", "model", "prompt", "share now", "requests", "errors", "spend", "per call", "p50 / p95", "judged", "online pass (95% CI)", "feedback +"],
                &rows
            )
        );
        body.push_str(&verdicts(&f.name, &comparisons, &judged));
        if let Some(s) = &f.shadow {
            let _ = write!(
                body,
                "<h3>Shadow: {} ({} of live calls)</h3>{}<p class=\"hint\">Online evals judge live calls only: a shadow's quality is its agreement with the live answers above.</p>",
                esc(&s.variant),
                pct(s.sample),
                parity(&f.name, pairs.get(&f.name).map_or(&[][..], Vec::as_slice))
            );
        }
        body.push_str("</section>");
    }
    Ok(shell("Experiments", "/ui/functions", &body))
}
