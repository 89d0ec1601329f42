//! `keel shadow report FUNCTION`: the shadow variant against live traffic, pair by pair —
//! agreement (exact and ROUGE-L similarity), error rates, cost and latency — and whether
//! the shadow is at parity, so a cut-over is decided on evidence.
//!
//! Parity: the mean similarity (reported with its 95 % bootstrap interval) is at least
//! `--threshold` (default 0.8), and the shadow's error rate is no more than 2 points
//! above the live one.

use std::process::ExitCode;

use anyhow::Result;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use keel_core::money::Nanos;
use keel_evals::stats::{bootstrap_mean, Interval};
use keel_gateway::parity::shadow_parity;
use keel_store::shadow::{shadow_pairs, ShadowPair};
use serde_json::json;

use crate::since::parse_since;
use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum ShadowCommand {
    /// Compare a function's shadow variant with its live traffic and say whether it is at parity.
    Report(ReportArgs),
}

#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    config: ConfigArg,
    function: String,
    #[arg(long, default_value = "7d")]
    since: String,
    /// Most pairs read (newest first; 0 = all).
    #[arg(long, default_value_t = 5000)]
    limit: usize,
    /// Mean similarity the shadow must reach to be at parity.
    #[arg(long, default_value_t = keel_gateway::parity::DEFAULT_THRESHOLD)]
    threshold: f64,
    /// Also have this configured model judge each shadow answer against the live one
    /// (factuality); its mean score must reach --threshold too.
    #[arg(long, value_name = "MODEL")]
    judge: Option<String>,
    /// Most pairs sent to the judge (newest first).
    #[arg(long, default_value_t = 50)]
    judge_limit: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: ShadowCommand) -> Result<ExitCode> {
    match cmd {
        ShadowCommand::Report(a) => report(a),
    }
}

/// Ask `model` whether each shadow answer agrees with the live one.
fn judge_pairs(
    config: &keel_core::config::Config,
    store: &keel_store::Store,
    model: &str,
    pairs: &[ShadowPair],
    limit: usize,
) -> Result<Interval> {
    use keel_evals::assert::{evaluate, AssertionSpec};
    use keel_evals::case::Case;
    use keel_evals::output::CaseOutput;
    if !config.models.contains_key(model) {
        anyhow::bail!("--judge: no model `{model}` in the config");
    }
    let engine = keel_gateway::inproc::InProcess::new(
        config.clone(),
        store,
        Some(keel_core::trace::Origin::Eval),
    )?;
    let judge = keel_evals::runner::exec::EngineJudge {
        engine: &engine,
        model: Some(model.to_string()),
        tags: vec!["keel:shadow-judge".into()],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scores: Vec<f64> = rt.block_on(async {
        let mut scores = Vec::new();
        for p in pairs
            .iter()
            .filter(|p| p.live.status == "ok" && p.shadow.status == "ok")
            .take(limit)
        {
            let live = p.live.output.clone().unwrap_or_default();
            let spec = AssertionSpec {
                kind: "factuality".into(),
                value: Some(serde_json::Value::String(live.clone())),
                ..AssertionSpec::default()
            };
            let Ok(a) = spec.validate() else { continue };
            let case = Case {
                id: p.live_id.clone(),
                variables: serde_json::Map::new(),
                input: None,
                expected: Some(serde_json::Value::String(live)),
                context: None,
                metadata: serde_json::Map::new(),
                assertions: Vec::new(),
            };
            let out = CaseOutput {
                text: p.shadow.output.clone().unwrap_or_default(),
                ..CaseOutput::default()
            };
            scores.push(evaluate(&a, &case, &out, &judge).await.score);
        }
        scores
    });
    drop(judge);
    rt.block_on(async {
        let _ = tokio::task::spawn_blocking(move || engine.finish()).await;
    });
    if scores.is_empty() {
        anyhow::bail!("--judge: no pair where both calls succeeded");
    }
    Ok(bootstrap_mean(&scores, 0.95, 2000, 11))
}

fn report(a: ReportArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    if !config.functions.contains_key(&a.function) {
        anyhow::bail!(
            "no function `{}` in {}; configured: {}",
            a.function,
            config.source.display(),
            config
                .functions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let since = parse_since(&a.since)?;
    let (_store, conn) = super::open_store(&config)?;
    let pairs = shadow_pairs(&conn, &a.function, since, a.limit)?;
    let mut r = shadow_parity(&a.function, &pairs, a.threshold);
    if let (Some(model), false) = (&a.judge, pairs.is_empty()) {
        let store = keel_store::Store::open(&config.gateway.store)?;
        let iv = judge_pairs(&config, &store, model, &pairs, a.judge_limit)?;
        if iv.estimate < a.threshold {
            r.reasons.push(format!(
                "judge agreement {:.3} [{:.3}–{:.3}] is below {:.2}",
                iv.estimate, iv.low, iv.high, a.threshold
            ));
            r.at_parity = false;
        }
        r.judge = Some(iv);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!(r))?);
        return Ok(ExitCode::SUCCESS);
    }
    if r.pairs == 0 {
        println!(
            "No shadow traffic for `{}` since {} — set `shadow = {{ variant = \"...\", sample = 0.1 }}` on the function.",
            a.function, a.since
        );
        return Ok(ExitCode::SUCCESS);
    }
    let variants = pairs
        .first()
        .map(|p| {
            format!(
                "live {} → shadow {}",
                p.live.variant.as_deref().unwrap_or("?"),
                p.shadow.variant.as_deref().unwrap_or("?")
            )
        })
        .unwrap_or_default();
    println!(
        "Shadow report for `{}` ({variants}), since {}: {} pairs, {} compared",
        r.function, a.since, r.pairs, r.compared
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["", "live", "shadow"]);
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0} ms"));
    let cost = |v: Option<f64>| {
        v.map_or_else(
            || "unpriced".into(),
            |c| Nanos(c.round() as i64).to_string(),
        )
    };
    t.add_row([
        "error rate".to_string(),
        pct(r.live.error_rate),
        pct(r.shadow.error_rate),
    ]);
    t.add_row([
        "cost / call".to_string(),
        cost(r.live.mean_cost_nanos),
        cost(r.shadow.mean_cost_nanos),
    ]);
    t.add_row([
        "latency p50".to_string(),
        ms(r.live.latency_p50_ms),
        ms(r.shadow.latency_p50_ms),
    ]);
    t.add_row([
        "latency p95".to_string(),
        ms(r.live.latency_p95_ms),
        ms(r.shadow.latency_p95_ms),
    ]);
    println!("{t}");
    if let Some(e) = r.exact_agreement {
        println!("exact agreement: {}", pct(e));
    }
    if let Some(s) = &r.similarity {
        println!(
            "similarity (ROUGE-L): {:.3} [{:.3}–{:.3}]",
            s.estimate, s.low, s.high
        );
    }
    if let Some(j) = &r.judge {
        println!(
            "judge agreement: {:.3} [{:.3}–{:.3}]",
            j.estimate, j.low, j.high
        );
    }
    if let Some(c) = r.cost_change_pct {
        println!("cost change: {c:+.1}% (pairs priced on both sides)");
    }
    if r.at_parity {
        println!("AT PARITY (threshold {:.2})", a.threshold);
    } else {
        println!("NOT AT PARITY: {}", r.reasons.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}
