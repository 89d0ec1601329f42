//! `keel function …`: move a function's traffic split in steps without editing
//! keel.toml (`canary`), see what serves now (`split`) and how it got there (`history`).
//!
//! The override lives in the store (see `keel_store::splits`), so every gateway on that
//! store serves it within one `[registry] refresh`, and each move is an audit event with
//! who and why. The arithmetic is `keel_core::split`'s.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use comfy_table::Table;
use keel_core::config::{Config, FunctionConfig};
use keel_core::split::{self, format_bps, format_shares};
use keel_store::splits::{FunctionSplit, SplitChange};
use serde_json::json;

use super::prompt::default_actor;
use crate::since::format_ms;
use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum FunctionCommand {
    /// Give VARIANT P % of FUNCTION's traffic (the other variants share the rest by their
    /// configured weights), or --reset to the configured weights. Served within a
    /// registry refresh, no restart.
    Canary(CanaryArgs),
    /// The split FUNCTION serves now: configured weights, the override and who set it.
    Split(SplitArgs),
    /// Every move of FUNCTION's split, newest first.
    History(HistoryArgs),
}

#[derive(clap::Args)]
pub struct CanaryArgs {
    #[command(flatten)]
    config: ConfigArg,
    function: String,
    /// The variant to move (omit with --reset).
    #[arg(required_unless_present = "reset")]
    variant: Option<String>,
    /// VARIANT's share of traffic, 0 to 100 (two decimals at most: 0.25 is a quarter %).
    #[arg(
        long,
        required_unless_present = "reset",
        conflicts_with = "reset",
        allow_hyphen_values = true
    )]
    percent: Option<String>,
    /// Return to the weights in keel.toml.
    #[arg(long, conflicts_with = "variant")]
    reset: bool,
    /// Why (recorded with the move and in the audit log).
    #[arg(long, default_value = "no reason given")]
    reason: String,
    /// Who moves it (default: $KEEL_ACTOR, else git user.name, else $USER).
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct SplitArgs {
    #[command(flatten)]
    config: ConfigArg,
    function: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    config: ConfigArg,
    function: String,
    /// At most this many moves (0 = all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: FunctionCommand) -> Result<ExitCode> {
    match cmd {
        FunctionCommand::Canary(a) => canary(a),
        FunctionCommand::Split(a) => show_split(a),
        FunctionCommand::History(a) => history(a),
    }
}

/// The configured function, or an error naming the functions that exist.
fn function<'c>(config: &'c Config, name: &str) -> Result<&'c FunctionConfig> {
    config.functions.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.functions.keys().map(String::as_str).collect();
        if known.is_empty() {
            anyhow!(
                "{} defines no functions, so there is no `{name}`; add a [functions.{name}] table",
                config.source.display()
            )
        } else {
            anyhow!(
                "{} has no function `{name}`; its functions are: {}",
                config.source.display(),
                known.join(", ")
            )
        }
    })
}

fn canary(a: CanaryArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let f = function(&config, &a.function)?;
    let configured = split::config_weights(f);
    let actor = a.actor.clone().unwrap_or_else(default_actor);
    let change = SplitChange {
        actor: &actor,
        reason: &a.reason,
        config_weights: &configured,
    };
    if a.reset {
        let conn = super::open_writer(&config)?;
        let removed = keel_store::splits::reset_split(&conn, &f.name, &change)?;
        let now = format_shares(&configured);
        if a.json {
            println!(
                "{}",
                json!({"ok": true, "function": f.name, "reset": true, "changed": removed.is_some(),
                "from": removed.as_ref().map(|r| format_shares(&r.weights)), "to": now,
                "actor": actor, "reason": a.reason})
            );
        } else {
            match removed {
                Some(r) => println!(
                    "{}: {} → {now} (the configured weights)",
                    f.name,
                    format_shares(&r.weights)
                ),
                None => println!("{}: already on the configured weights ({now})", f.name),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(variant), Some(percent)) = (a.variant.as_deref(), a.percent.as_deref()) else {
        bail!("name a VARIANT and --percent P, or pass --reset");
    };
    let bps = split::parse_percent(percent).map_err(|e| anyhow!("--percent: {e}"))?;
    let weights = split::canary_weights(f, variant, bps)?;
    let conn = super::open_writer(&config)?;
    let before = keel_store::splits::set_split(&conn, &f.name, variant, bps, &weights, &change)?;
    let from = before
        .as_ref()
        .map_or_else(|| format_shares(&configured), |b| format_shares(&b.weights));
    let to = format_shares(&weights);
    if a.json {
        println!(
            "{}",
            json!({"ok": true, "function": f.name, "variant": variant, "percent": format_bps(bps),
            "from": from, "to": to, "weights": weights_json(&weights), "actor": actor, "reason": a.reason})
        );
    } else {
        println!("{}: {from} → {to}", f.name);
        println!(
            "served by running gateways within [registry] refresh ({}); `keel function canary {} --reset` returns to keel.toml's weights",
            humantime::format_duration(config.registry.refresh),
            f.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn weights_json(weights: &[(String, u32)]) -> serde_json::Value {
    serde_json::Value::Array(
        weights
            .iter()
            .map(|(v, w)| json!({"variant": v, "weight": w, "percent": format_bps(*w)}))
            .collect(),
    )
}

fn show_split(a: SplitArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let f = function(&config, &a.function)?;
    let (_store, conn) = super::open_store(&config)?;
    let current = keel_store::splits::current_split(&conn, &f.name)?;
    let configured = split::config_weights(f);
    // What a gateway serves: the override when it fits keel.toml, else the config.
    let fit = current
        .as_ref()
        .map(|c| split::resolve_override(f, &c.weights));
    let serving: Vec<(String, u32)> = match &fit {
        Some(Ok(w)) => configured
            .iter()
            .zip(w)
            .map(|((n, _), w)| (n.clone(), *w))
            .collect(),
        _ => configured.clone(),
    };
    let problem = fit.and_then(Result::err);
    if a.json {
        println!(
            "{}",
            json!({
                "function": f.name,
                "source": if current.is_some() && problem.is_none() { "override" } else { "config" },
                "serving": format_shares(&serving),
                "configured": format_shares(&configured),
                "override": current.as_ref().map(override_json),
                "problem": problem,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.set_header(["variant", "configured", "serving"]);
    let shares = |w: &[(String, u32)]| -> Vec<String> {
        format_shares(w)
            .split(',')
            .map(|p| p.split_once('=').map_or("", |(_, v)| v).to_string() + " %")
            .collect()
    };
    for ((name, _), (c, s)) in configured
        .iter()
        .zip(shares(&configured).into_iter().zip(shares(&serving)))
    {
        t.add_row([name.clone(), c, s]);
    }
    println!("{t}");
    match (&current, &problem) {
        (None, _) => println!("{}: serving the weights in keel.toml", f.name),
        (Some(c), None) => println!(
            "{}: override set {} by {} ({})",
            f.name,
            format_ms(c.updated_at_ms),
            c.actor,
            c.reason
        ),
        (Some(_), Some(why)) => println!("warning: {why}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn override_json(c: &FunctionSplit) -> serde_json::Value {
    json!({"weights": weights_json(&c.weights), "shares": format_shares(&c.weights),
        "updated_at_ms": c.updated_at_ms, "actor": c.actor, "reason": c.reason})
}

fn history(a: HistoryArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let f = function(&config, &a.function)?;
    let (_store, conn) = super::open_store(&config)?;
    let moves = keel_store::splits::split_moves(&conn, &f.name, a.limit)?;
    let configured = split::config_weights(f);
    let shares = |w: &Option<Vec<(String, u32)>>| match w {
        Some(w) => format_shares(w),
        None => format!("config ({})", format_shares(&configured)),
    };
    if a.json {
        let rows: Vec<_> = moves
            .iter()
            .map(|m| {
                json!({"id": m.id, "at_ms": m.at_ms, "action": m.action, "variant": m.variant,
                "percent": m.percent_bps.map(format_bps), "from": shares(&m.from_weights),
                "to": shares(&m.to_weights), "actor": m.actor, "reason": m.reason})
            })
            .collect();
        println!("{}", json!({"function": f.name, "moves": rows}));
        return Ok(ExitCode::SUCCESS);
    }
    if moves.is_empty() {
        println!(
            "{}: the split was never moved (serving keel.toml's weights)",
            f.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.set_header(["when", "actor", "move", "from", "to", "reason"]);
    for m in &moves {
        let what = match (&m.variant, m.percent_bps) {
            (Some(v), Some(p)) => format!("canary {v} {} %", format_bps(p)),
            _ => "reset".to_string(),
        };
        t.add_row([
            format_ms(m.at_ms),
            m.actor.clone(),
            what,
            shares(&m.from_weights),
            shares(&m.to_weights),
            m.reason.clone(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
