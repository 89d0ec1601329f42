//! `keel models`: the model inventory (built by `keel_gateway::inventory`, shared with
//! the dashboard's Models page), and `keel models check-successor MODEL`: every suite
//! that uses MODEL run on its successor against MODEL, one verdict table, exit 0 on parity
//! or better and 1 on a regression — the command for a monthly job.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use keel_core::config::Config;
use keel_core::lifecycle::today;
use keel_evals::runner::plan::RunOptions;
use keel_evals::runner::{run_suite, RunOutcome, RunSettings};
use keel_gateway::inventory::{self, Inventory, LifecycleEntry};
use serde_json::json;

use crate::ConfigArg;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: Option<ModelsCommand>,
    #[command(flatten)]
    config: ConfigArg,
    /// Print the inventory as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// Run each suite that uses MODEL on its successor against MODEL; exit 0 on parity or
    /// better, 1 on a regression.
    CheckSuccessor(CheckSuccessorArgs),
}

#[derive(clap::Args)]
pub struct CheckSuccessorArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// A configured model with a known successor (the table's, or `successor` in keel.toml).
    model: String,
    /// Only these suites (repeatable); default: every suite that runs on MODEL.
    #[arg(long = "suite")]
    suites: Vec<String>,
    /// Try this configured model instead of the known successor.
    #[arg(long)]
    successor: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: ModelsArgs) -> Result<ExitCode> {
    match a.command {
        Some(ModelsCommand::CheckSuccessor(c)) => check_successor(c),
        None => list(&a.config, a.json),
    }
}

fn list(config: &ConfigArg, as_json: bool) -> Result<ExitCode> {
    let config = super::load_config(config)?;
    let versions = match super::open_store(&config) {
        Ok((store, conn)) => {
            // Catch up with traces written since the gateway's last watch pass (or
            // without a gateway), as `keel serve` would: changes are audited once.
            keel_gateway::model_watch::run_once(
                &store,
                keel_store::prompts::now_ms(),
                config.gateway.version_memory,
            )?;
            keel_store::model_versions::versions(&conn)?
        }
        // `:memory:` keeps nothing between processes: the inventory has no versions.
        Err(_) => Vec::new(),
    };
    let (suites, problems) = keel_evals::suite_models::suite_models(&config);
    let inv = inventory::build(&config, &versions, &suites, problems, today());
    if as_json {
        println!("{}", serde_json::to_string_pretty(&inv)?);
    } else {
        print!("{}", render(&inv));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(inv: &Inventory) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} model{} (prices of {}, lifecycle of {}; today {})",
        inv.models.len(),
        if inv.models.len() == 1 { "" } else { "s" },
        inv.price_table_as_of,
        inv.lifecycle_table_as_of,
        inv.today
    );
    for m in &inv.models {
        let _ = writeln!(
            s,
            "\n{}  {} `{}` on provider {}",
            m.name, m.provider_kind, m.upstream_model, m.provider
        );
        let price = match &m.price {
            Some(p) => format!(
                "${}/${} per Mtok in/out ({}{})",
                p.input_per_mtok_usd,
                p.output_per_mtok_usd,
                p.source,
                p.as_of
                    .as_ref()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default()
            ),
            None => "unpriced: calls are recorded without cost".into(),
        };
        let _ = writeln!(s, "  price       {price}");
        if let Some(l) = &m.lifecycle {
            let _ = writeln!(s, "  lifecycle   {}", lifecycle_line(l));
            if let Some(cmd) = &l.test_command {
                let _ = writeln!(s, "  test        {cmd}");
            }
            if let Some(cmd) = &l.compare_command {
                let _ = writeln!(s, "              {cmd}");
            }
        }
        for d in &m.deployments {
            if d.versions.is_empty() {
                let _ = writeln!(s, "  versions    {}: none seen yet", d.deployment);
            }
            for v in &d.versions {
                let _ = writeln!(
                    s,
                    "  version     {}: {}  first {}  last {}  {} call{}",
                    d.deployment,
                    v.version,
                    crate::since::format_ms(v.first_seen_ms),
                    crate::since::format_ms(v.last_seen_ms),
                    v.calls,
                    if v.calls == 1 { "" } else { "s" }
                );
            }
        }
        for (what, list) in [
            ("functions", &m.functions),
            ("online", &m.online_evals),
            ("review", &m.review_queues),
            ("suites", &m.suites),
            ("canaries", &m.canaries),
            ("guardrails", &m.guardrails),
            ("tools", &m.tools),
            ("fallbacks", &m.fallbacks),
        ] {
            if !list.is_empty() {
                let _ = writeln!(s, "  {what:<11} {}", list.join(", "));
            }
        }
    }
    for p in &inv.suite_problems {
        let _ = writeln!(s, "\nwarning: suite not read: {p}");
    }
    s
}

fn lifecycle_line(l: &LifecycleEntry) -> String {
    let mut parts = Vec::new();
    if let Some(d) = &l.deprecated {
        parts.push(format!("deprecated {d}"));
    }
    match (&l.retires, l.days_left) {
        (Some(r), Some(d)) if d < 0 => parts.push(format!("RETIRED {r} ({} days ago)", -d)),
        (Some(r), Some(d)) if l.retiring => parts.push(format!("RETIRES {r} (in {d} days)")),
        (Some(r), Some(d)) => parts.push(format!("retires {r} (in {d} days)")),
        _ => {}
    }
    if let Some(s) = &l.successor {
        parts.push(format!("successor {s}"));
    }
    parts.push(format!("per {}", l.source));
    parts.join(" · ")
}

/// The configured model that `successor` names: a model by that name, else one whose
/// upstream id is it.
fn configured_successor(config: &Config, successor: &str) -> Option<String> {
    if config.models.contains_key(successor) {
        return Some(successor.to_string());
    }
    config
        .models
        .values()
        .find(|m| m.upstream_model == successor)
        .map(|m| m.name.clone())
}

fn check_successor(a: CheckSuccessorArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let current = config.models.get(&a.model).ok_or_else(|| {
        anyhow!(
            "model `{}` is not configured (configured: {})",
            a.model,
            config.models.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let named = match (&a.successor, current.lifecycle.as_ref().and_then(|l| l.successor.clone())) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => s,
        (None, None) => {
            return Err(anyhow!(
                "no successor is known for `{}`: set successor = \"MODEL\" in [models.{}], or pass --successor MODEL",
                a.model,
                a.model
            ))
        }
    };
    let successor = configured_successor(&config, &named).ok_or_else(|| {
        anyhow!(
            "the successor `{named}` is not a configured model: add [models.{named}] (its provider and upstream_model) to {}, or pass --successor MODEL",
            config.source.display()
        )
    })?;
    let (all, problems) = keel_evals::suite_models::suites_in(&config);
    for p in &problems {
        eprintln!("warning: suite not read: {p}");
    }
    let suites: Vec<_> = if a.suites.is_empty() {
        all.into_iter()
            .filter(|s| keel_evals::suite_models::models_of(&config, s).contains(&a.model))
            .collect()
    } else {
        let mut chosen = Vec::new();
        for name in &a.suites {
            let s = all.iter().find(|s| &s.name == name).ok_or_else(|| {
                anyhow!("suite `{name}` is not in {}", config.evals_dir.display())
            })?;
            chosen.push(s.clone());
        }
        chosen
    };
    if suites.is_empty() {
        return Err(anyhow!(
            "no suite in {} runs on `{}`: name one with --suite SUITE",
            config.evals_dir.display(),
            a.model
        ));
    }
    let (store, _) = super::open_store(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for suite in &suites {
        let settings = RunSettings {
            options: RunOptions {
                model: Some(successor.clone()),
                baseline_model: Some(a.model.clone()),
                ..RunOptions::default()
            },
            use_cache: true,
            actor: super::prompt::default_actor(),
            concurrency: None,
            repeat: None,
        };
        if !a.json {
            eprintln!("suite `{}`: {successor} against {}", suite.name, a.model);
        }
        let bar = super::eval::progress::Bar::new(
            super::eval::suite_cases(suite) * u64::from(suite.repeat) * 2,
            !a.json,
        );
        let outcome = rt.block_on(run_suite(&config, &store, suite, &settings, &bar));
        bar.finish();
        let outcome = outcome.map_err(|e| anyhow!("suite `{}`: {e}", suite.name))?;
        rows.push(outcome);
    }
    let regressed = rows
        .iter()
        .any(|o| o.verdict.as_ref().is_none_or(|v| v.regressed));
    if a.json {
        let out: Vec<_> = rows.iter().map(row_json).collect();
        println!(
            "{}",
            json!({"model": a.model, "successor": successor, "regressed": regressed, "suites": out})
        );
    } else {
        print!("{}", table(&a.model, &successor, &rows));
    }
    Ok(if regressed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn row_json(o: &RunOutcome) -> serde_json::Value {
    let c = o.comparison.as_ref();
    json!({
        "suite": o.suite,
        "verdict": o.verdict.as_ref().map(|v| v.to_string()),
        "regressed": o.verdict.as_ref().is_none_or(|v| v.regressed),
        "pass_rate": c.map(|c| json!({"current": c.pass_rate.baseline.estimate, "successor": c.pass_rate.candidate.estimate, "delta": c.pass_rate.delta, "p_value": c.pass_rate.p_value})),
        "cost_per_case_usd": c.and_then(|c| c.cost_per_case.as_ref()).map(|d| json!({"current": d.baseline, "successor": d.candidate, "change_pct": d.change_pct})),
        "latency_p95_ms": c.map(|c| json!({"current": c.latency_p95.baseline, "successor": c.latency_p95.candidate, "change_pct": c.latency_p95.change_pct})),
        "run_id": o.candidate.run_id,
        "baseline_run_id": o.baseline.as_ref().map(|b| b.run_id.clone()),
    })
}

fn table(model: &str, successor: &str, rows: &[RunOutcome]) -> String {
    use std::fmt::Write;
    let pct = |p: Option<f64>| p.map_or("n/a".to_string(), |p| format!("{p:+.1}%"));
    let mut s = format!(
        "\n{successor} against {model}\n{:<20} {:>16} {:>10} {:>10}  verdict\n",
        "suite", "pass rate", "cost", "p95"
    );
    for o in rows {
        let (pass, cost, p95) = match &o.comparison {
            Some(c) => (
                format!(
                    "{:.0}% → {:.0}%",
                    c.pass_rate.baseline.estimate * 100.0,
                    c.pass_rate.candidate.estimate * 100.0
                ),
                pct(c.cost_per_case.as_ref().and_then(|d| d.change_pct)),
                pct(c.latency_p95.change_pct),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let verdict = o
            .verdict
            .as_ref()
            .map_or("no comparison".to_string(), |v| v.to_string());
        let _ = writeln!(
            s,
            "{:<20} {pass:>16} {cost:>10} {p95:>10}  {verdict}",
            o.suite
        );
    }
    let bad = rows
        .iter()
        .any(|o| o.verdict.as_ref().is_none_or(|v| v.regressed));
    let _ = writeln!(
        s,
        "\n{}",
        if bad {
            format!("{successor} regressed against {model}: do not switch yet")
        } else {
            format!("{successor} is at parity or better with {model} on every suite")
        }
    );
    s
}

/// Lifecycle JSON for `keel check --json` (the inventory's shape).
pub fn lifecycle_json(
    model: &str,
    l: &keel_core::lifecycle::Lifecycle,
    today: time::Date,
) -> serde_json::Value {
    serde_json::to_value(inventory::lifecycle_entry(model, l, None, today)).unwrap_or_default()
}
