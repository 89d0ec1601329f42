//! `keel switch off | on | list` and `keel budget freeze | unfreeze | list`: the
//! one-command mitigations of an incident. A switched-off function, feature, key, tenant or
//! model makes matching calls fail fast with 503 `disabled` (the message names the switch,
//! its reason and the command that undoes it); a frozen budget does the same for the calls
//! it covers. Running gateways serve both within `[registry] refresh`; every change is
//! audited (and so shows in an incident's timeline as an action).

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use keel_core::config::Config;
use serde_json::json;

use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum SwitchCommand {
    /// Switch a scope off: its calls fail fast with 503 `disabled` until `keel switch on`.
    Off(SwitchArgs),
    /// Switch a scope back on.
    On(SwitchArgs),
    /// What is switched off now, and the frozen budgets.
    List(ListArgs),
}

#[derive(clap::Args)]
#[group(id = "target", required = true, multiple = false)]
pub struct Target {
    #[arg(long, group = "target")]
    function: Option<String>,
    #[arg(long, group = "target")]
    feature: Option<String>,
    /// A virtual key's id.
    #[arg(long, group = "target")]
    key: Option<String>,
    #[arg(long, group = "target")]
    tenant: Option<String>,
    #[arg(long, group = "target")]
    model: Option<String>,
}

#[derive(clap::Args)]
pub struct SwitchArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    target: Target,
    /// Why (kept in the audit log and shown to callers).
    #[arg(long)]
    reason: String,
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum BudgetCommand {
    /// Stop all spend against a configured budget: its calls fail fast with 503 `disabled`.
    Freeze(FreezeArgs),
    /// Let spend against the budget resume.
    Unfreeze(FreezeArgs),
    /// The frozen budgets (and what is switched off).
    List(ListArgs),
}

#[derive(clap::Args)]
pub struct FreezeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// A `[[budgets]]` name.
    budget: String,
    #[arg(long)]
    reason: String,
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

impl Target {
    /// (kind, value), checked against the config where the config knows the names.
    fn resolve(&self, config: &Config) -> Result<(&'static str, String)> {
        let (kind, value) = match (
            &self.function,
            &self.feature,
            &self.key,
            &self.tenant,
            &self.model,
        ) {
            (Some(v), ..) => ("function", v),
            (_, Some(v), ..) => ("feature", v),
            (_, _, Some(v), ..) => ("key", v),
            (_, _, _, Some(v), _) => ("tenant", v),
            (_, _, _, _, Some(v)) => ("model", v),
            _ => {
                return Err(anyhow!(
                    "name what to switch: --function, --feature, --key, --tenant or --model"
                ))
            }
        };
        let known: Option<Vec<String>> = match kind {
            "function" => Some(config.functions.keys().cloned().collect()),
            "model" => Some(config.models.keys().cloned().collect()),
            _ => None,
        };
        if let Some(known) = known {
            if !known.contains(value) {
                return Err(anyhow!(
                    "{} has no {kind} `{value}`; its {kind}s are: {}",
                    config.source.display(),
                    known.join(", ")
                ));
            }
        }
        if value.trim().is_empty() {
            return Err(anyhow!("--{kind} needs a value"));
        }
        Ok((kind, value.clone()))
    }
}

pub fn run(cmd: SwitchCommand) -> Result<ExitCode> {
    match cmd {
        SwitchCommand::Off(a) => flip(a, true),
        SwitchCommand::On(a) => flip(a, false),
        SwitchCommand::List(a) => list(a),
    }
}

pub fn run_budget(cmd: BudgetCommand) -> Result<ExitCode> {
    match cmd {
        BudgetCommand::Freeze(a) => freeze(a, true),
        BudgetCommand::Unfreeze(a) => freeze(a, false),
        BudgetCommand::List(a) => list(a),
    }
}

fn flip(a: SwitchArgs, off: bool) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (kind, value) = a.target.resolve(&config)?;
    let mut conn = super::open_writer(&config)?;
    let who = super::actor_or_default(&a.actor);
    let now = keel_store::prompts::now_ms();
    let changed = if off {
        keel_store::switches::switch_off(&mut conn, kind, &value, &who, &a.reason, now)?
    } else {
        keel_store::switches::switch_on(&mut conn, kind, &value, &who, &a.reason, now)?
    };
    let state = if off { "off" } else { "on" };
    if a.json {
        println!(
            "{}",
            json!({"kind": kind, "value": value, "state": state, "changed": changed})
        );
    } else if changed {
        println!(
            "{kind} `{value}` is switched {state} ({}); running gateways serve it within [registry] refresh ({:?})",
            a.reason, config.registry.refresh
        );
    } else {
        println!("{kind} `{value}` was already {state}: nothing changed");
    }
    Ok(ExitCode::SUCCESS)
}

fn freeze(a: FreezeArgs, frozen: bool) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    if !config.governance.budgets.iter().any(|b| b.name == a.budget) {
        let known: Vec<_> = config
            .governance
            .budgets
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        return Err(anyhow!(
            "{} has no budget `{}`; its budgets are: {}",
            config.source.display(),
            a.budget,
            if known.is_empty() {
                "(none)".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    let mut conn = super::open_writer(&config)?;
    let who = super::actor_or_default(&a.actor);
    let now = keel_store::prompts::now_ms();
    let changed = if frozen {
        keel_store::switches::freeze_budget(&mut conn, &a.budget, &who, &a.reason, now)?
    } else {
        keel_store::switches::unfreeze_budget(&mut conn, &a.budget, &who, &a.reason, now)?
    };
    let state = if frozen { "frozen" } else { "unfrozen" };
    if a.json {
        println!(
            "{}",
            json!({"budget": a.budget, "state": state, "changed": changed})
        );
    } else if changed {
        println!(
            "budget `{}` is {state} ({}); running gateways serve it within [registry] refresh ({:?})",
            a.budget, a.reason, config.registry.refresh
        );
    } else {
        println!("budget `{}` was already {state}: nothing changed", a.budget);
    }
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (_, conn) = super::open_store(&config)?;
    let switches = keel_store::switches::all_switches(&conn)?;
    let freezes = keel_store::switches::all_freezes(&conn)?;
    if a.json {
        println!(
            "{}",
            json!({"switches": switches, "frozen_budgets": freezes})
        );
        return Ok(ExitCode::SUCCESS);
    }
    if switches.is_empty() && freezes.is_empty() {
        println!("nothing is switched off and no budget is frozen");
    }
    for s in &switches {
        println!(
            "off     {}={}  since {} by {}: {}",
            s.kind,
            s.value,
            crate::since::format_ms(s.at_ms),
            s.actor,
            s.reason
        );
    }
    for f in &freezes {
        println!(
            "frozen  budget {}  since {} by {}: {}",
            f.budget,
            crate::since::format_ms(f.at_ms),
            f.actor,
            f.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
