//! `keel review …`: human review from a terminal — the queues and where they stand, a
//! trace added by hand, the next item labelled interactively (`next`, in
//! [`review_next`](super::review_next)), the labels exported, and the agreement figures.
//!
//! Each command first runs one intake pass (`keel_review::intake`), so queues are filled
//! from what the store holds even when no `keel serve` is running. The figures are
//! `keel_review::agreement`, the labels `keel_review::label` — the dashboard's Review page
//! uses the same.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use keel_core::config::review::ReviewQueueConfig;
use keel_core::config::Config;
use serde_json::{json, Value};

use crate::since::{format_ms, now_ms, parse_since};
use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum ReviewCommand {
    /// Each review queue: what it covers, how calls enter, items left, labelled today.
    List(ListArgs),
    /// Put a trace in a queue by hand (audited).
    Add(AddArgs),
    /// Review the queue's items one at a time: shows each and asks for its labels
    /// (answers are read line by line from stdin when it is not a terminal).
    Next(super::review_next::NextArgs),
    /// The labels given since a time, one row per label, as JSON or CSV.
    Export(ExportArgs),
    /// Items reviewed, label spread, agreement between reviewers and with the judge.
    Stats(StatsArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue (`name` of a [[review_queues]] table).
    queue: String,
    /// The trace's request id.
    trace: String,
    /// Who adds it (default: $KEEL_ACTOR, else git's user.name, else $USER).
    #[arg(long)]
    reviewer: Option<String>,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    config: ConfigArg,
    queue: String,
    /// How far back: a duration (24h, 7d) or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    since: String,
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    #[arg(long)]
    csv: bool,
}

#[derive(clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    config: ConfigArg,
    queue: String,
    #[arg(long, default_value = "30d")]
    since: String,
    #[arg(long)]
    json: bool,
}

pub fn run(c: ReviewCommand) -> Result<ExitCode> {
    match c {
        ReviewCommand::List(a) => list(a),
        ReviewCommand::Add(a) => add(a),
        ReviewCommand::Next(a) => super::review_next::next(a),
        ReviewCommand::Export(a) => export(a),
        ReviewCommand::Stats(a) => stats(a),
    }
}

/// The queue named `name`, or an error listing the configured ones.
pub(crate) fn queue<'a>(config: &'a Config, name: &str) -> Result<&'a ReviewQueueConfig> {
    config
        .review_queues
        .iter()
        .find(|q| q.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = config.review_queues.iter().map(|q| q.name.as_str()).collect();
            if known.is_empty() {
                anyhow!(
                    "no review queue `{name}`: {} has no [[review_queues]] (see the README's \"Human review\")",
                    config.source.display()
                )
            } else {
                anyhow!("no review queue `{name}`; configured: {}", known.join(", "))
            }
        })
}

/// The writer connection, after one intake pass over every queue.
pub(crate) fn open_filled(config: &Config) -> Result<(keel_store::Store, keel_store::Conn)> {
    let (store, _) = super::open_store(config)?;
    let conn = store.conn()?;
    keel_review::intake::run_once(conn.db(), &config.review_queues, now_ms())?;
    Ok((store, conn))
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    if config.review_queues.is_empty() {
        if a.json {
            println!("{}", json!({"review_queues": []}));
        } else {
            println!("no [[review_queues]] in {}", config.source.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (_store, conn) = open_filled(&config)?;
    let today = keel_review::intake::day_start_ms(now_ms());
    let mut rows = Vec::new();
    for q in &config.review_queues {
        let p = keel_store::review::progress(&conn, &q.name, today)?;
        rows.push((q, p));
    }
    if a.json {
        let out: Vec<Value> = rows
            .iter()
            .map(|(q, p)| {
                json!({
                    "name": q.name,
                    "covers": q.describe(),
                    "enters_by": q.entry.describe(),
                    "reviewers_per_item": q.reviewers,
                    "max_items_per_day": q.max_items_per_day,
                    "open": p.open,
                    "done": p.done,
                    "labelled_today": p.labelled_today,
                    "entered_today": p.entered_today,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "review_queues": out }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "queue",
        "covers",
        "enters by",
        "reviewers",
        "left",
        "done",
        "labelled today",
        "entered today / cap",
    ]);
    for (q, p) in &rows {
        t.add_row([
            q.name.clone(),
            q.describe(),
            q.entry.describe(),
            q.reviewers.to_string(),
            p.open.to_string(),
            p.done.to_string(),
            p.labelled_today.to_string(),
            format!("{} / {}", p.entered_today, q.max_items_per_day),
        ]);
    }
    println!("{t}");
    println!("Review with `keel review next QUEUE`, or on the dashboard's Review page.");
    Ok(ExitCode::SUCCESS)
}

fn add(a: AddArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let q = queue(&config, &a.queue)?;
    let (_store, conn) = open_filled(&config)?;
    if keel_store::get_trace(&conn, &a.trace)?.is_none() {
        bail!(
            "no trace with request id `{}` in {}",
            a.trace,
            config.gateway.store
        );
    }
    let who = a.reviewer.unwrap_or_else(super::prompt::default_actor);
    let now = now_ms();
    if !keel_store::review::add_by_hand(&conn, &q.name, &a.trace, q.reviewers, &who, now, "cli")? {
        println!("{} is already in {}", a.trace, q.name);
        return Ok(ExitCode::SUCCESS);
    }
    println!("added {} to {}", a.trace, q.name);
    Ok(ExitCode::SUCCESS)
}

fn export(a: ExportArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let q = queue(&config, &a.queue)?;
    let since = parse_since(&a.since)?;
    let (_store, conn) = open_filled(&config)?;
    let labels = keel_store::review::labels_since(&conn, &q.name, since)?;
    if a.csv {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        let mut header = vec![
            "queue",
            "item",
            "trace_id",
            "reviewer",
            "at",
            "entered_because",
            "verdict",
        ];
        let names: Vec<&str> = q
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .filter(|n| *n != "verdict")
            .collect();
        header.extend(names.iter().copied());
        header.push("correction");
        w.write_record(&header)?;
        for (l, reason) in &labels {
            let mut rec = vec![
                l.queue.clone(),
                l.item_id.to_string(),
                l.trace_id.clone(),
                l.reviewer.clone(),
                format_ms(l.at_ms),
                reason.clone(),
                l.verdict.clone().unwrap_or_default(),
            ];
            for n in &names {
                rec.push(match l.labels.get(*n) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(v) => v.to_string(),
                });
            }
            rec.push(l.correction.clone().unwrap_or_default());
            w.write_record(&rec)?;
        }
        w.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Value> = labels
        .iter()
        .map(|(l, reason)| {
            json!({
                "queue": l.queue,
                "item": l.item_id,
                "trace_id": l.trace_id,
                "reviewer": l.reviewer,
                "at": format_ms(l.at_ms),
                "at_ms": l.at_ms,
                "entered_because": reason,
                "verdict": l.verdict,
                "labels": l.labels,
                "correction": l.correction,
            })
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        // One JSON object per line: a stream another tool can read as it comes.
        for r in rows {
            println!("{r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn agreement_text(a: &Option<keel_review::Agreement>, what: &str) -> String {
    match a {
        None => format!("{what}: no items to compare yet"),
        Some(a) => format!(
            "{what}: {:.0} % agree over {} item{} (chance {:.0} %), Cohen's kappa {}",
            a.observed * 100.0,
            a.n,
            if a.n == 1 { "" } else { "s" },
            a.expected * 100.0,
            a.kappa.map_or_else(
                || "undefined (one label only)".to_string(),
                |k| format!("{k:.2}")
            )
        ),
    }
}

fn stats(a: StatsArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let q = queue(&config, &a.queue)?;
    let since = parse_since(&a.since)?;
    let (_store, conn) = open_filled(&config)?;
    let f = keel_review::agreement::figures(conn.db(), q, since)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} since {}: {} items reviewed, {} labels",
        q.name,
        format_ms(since),
        f.items_reviewed,
        f.labels
    );
    for (label, counts) in &f.distribution {
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("  {label}: {}", parts.join(", "));
    }
    for (label, mean) in &f.means {
        println!("  {label}: mean {mean:.2}");
    }
    println!(
        "{}",
        agreement_text(&f.reviewers, "reviewers (items with two labels)")
    );
    println!(
        "{}",
        agreement_text(&f.human_vs_judge, "humans vs the online judge")
    );
    Ok(ExitCode::SUCCESS)
}
