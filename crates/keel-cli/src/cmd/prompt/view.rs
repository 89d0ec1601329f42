//! The read side of `keel prompt`: list, show, history and diff of stored versions.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use comfy_table::Table;
use keel_registry::Prompt;
use keel_store::sql::Db;
use keel_store::PromptVersion;
use serde_json::json;

use super::parse_version;
use crate::since::format_ms;
use crate::ConfigArg;

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    config: ConfigArg,
    name: String,
    /// A version number (default: the latest).
    #[arg(long, conflicts_with = "label")]
    version: Option<i64>,
    /// The version a label points at.
    #[arg(long)]
    label: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    config: ConfigArg,
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    config: ConfigArg,
    name: String,
    /// The old side: a version number or a label.
    a: String,
    /// The new side: a version number or a label.
    b: String,
    #[arg(long)]
    json: bool,
}

fn reader(config: &ConfigArg) -> Result<keel_store::Conn> {
    let config = crate::cmd::load_config(config)?;
    Ok(crate::cmd::open_store(&config)?.1)
}

fn not_found(message: String, json_out: bool) -> Result<ExitCode> {
    if json_out {
        println!("{}", json!({"ok": false, "error": message}));
    } else {
        eprintln!("error: {message}");
    }
    Ok(ExitCode::from(1))
}

pub fn list(a: ListArgs) -> Result<ExitCode> {
    let conn = reader(&a.config)?;
    let prompts = keel_store::list_prompts(&conn)?;
    if a.json {
        let rows: Vec<_> = prompts
            .iter()
            .map(|p| {
                let labels: serde_json::Map<_, _> = p
                    .labels
                    .iter()
                    .map(|(l, v)| (l.clone(), json!(v)))
                    .collect();
                json!({"name": p.name, "latest_version": p.latest_version, "labels": labels,
                    "last_change_ms": p.last_change_ms})
            })
            .collect();
        println!("{}", json!({"prompts": rows}));
        return Ok(ExitCode::SUCCESS);
    }
    if prompts.is_empty() {
        println!("no prompts stored — run `keel prompt push`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.set_header(["prompt", "latest", "labels", "last change"]);
    for p in &prompts {
        let labels: Vec<String> = p
            .labels
            .iter()
            .map(|(l, v)| format!("{l} → v{v}"))
            .collect();
        t.add_row([
            p.name.clone(),
            format!("v{}", p.latest_version),
            labels.join(", "),
            format_ms(p.last_change_ms),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// A version number (`3`, `v3`) or a label name → the stored version.
fn resolve(
    conn: Db<'_>,
    name: &str,
    which: &str,
) -> Result<std::result::Result<PromptVersion, String>> {
    let version = match parse_version(which) {
        Some(v) => v,
        None => match keel_store::label_version(conn, name, which)? {
            Some(v) => v,
            None => return Ok(Err(format!("prompt `{name}` has no label `{which}`"))),
        },
    };
    Ok(keel_store::get_version(conn, name, version)?
        .ok_or_else(|| format!("prompt `{name}` has no version {version}")))
}

fn content(v: &PromptVersion) -> Result<Prompt> {
    let value: serde_json::Value = serde_json::from_str(&v.content_json)?;
    Prompt::from_json(&v.name, &value).map_err(|e| anyhow!("{e}"))
}

pub fn show(a: ShowArgs) -> Result<ExitCode> {
    let conn = reader(&a.config)?;
    let found = match (&a.version, &a.label) {
        (Some(v), _) => resolve(conn.db(), &a.name, &v.to_string())?,
        (None, Some(l)) => match keel_store::label_version(&conn, &a.name, l)? {
            Some(v) => resolve(conn.db(), &a.name, &v.to_string())?,
            None => Err(format!("prompt `{}` has no label `{l}`", a.name)),
        },
        (None, None) => keel_store::latest_version(&conn, &a.name)?.ok_or_else(|| {
            format!(
                "no prompt `{}` in the store — `keel prompt list` shows what is",
                a.name
            )
        }),
    };
    let v = match found {
        Ok(v) => v,
        Err(m) => return not_found(m, a.json),
    };
    let labels: Vec<String> = keel_store::all_labels(&conn)?
        .into_iter()
        .filter(|l| l.name == v.name && l.version == v.version)
        .map(|l| l.label)
        .collect();
    let body: serde_json::Value = serde_json::from_str(&v.content_json)?;
    if a.json {
        println!(
            "{}",
            json!({"name": v.name, "version": v.version, "content_hash": v.content_hash,
            "author": v.author, "reason": v.reason, "commit_id": v.commit_id,
            "created_at_ms": v.created_at_ms, "labels": labels, "content": body})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} v{}{}",
        v.name,
        v.version,
        if labels.is_empty() {
            String::new()
        } else {
            format!(" ({})", labels.join(", "))
        }
    );
    println!("hash:    {}", v.content_hash);
    println!("author:  {}", v.author);
    println!("reason:  {}", v.reason);
    if let Some(c) = &v.commit_id {
        println!("commit:  {c}");
    }
    println!("created: {}", format_ms(v.created_at_ms));
    println!();
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(ExitCode::SUCCESS)
}

pub fn history(a: HistoryArgs) -> Result<ExitCode> {
    let conn = reader(&a.config)?;
    let versions = keel_store::versions(&conn, &a.name)?;
    if versions.is_empty() {
        return not_found(format!("no prompt `{}` in the store", a.name), a.json);
    }
    let moves = keel_store::label_moves(&conn, &a.name)?;
    if a.json {
        let vs: Vec<_> = versions
            .iter()
            .map(|v| {
                json!({"version": v.version, "content_hash": v.content_hash, "author": v.author,
                "reason": v.reason, "commit_id": v.commit_id, "created_at_ms": v.created_at_ms})
            })
            .collect();
        println!(
            "{}",
            json!({"name": a.name, "versions": vs, "label_moves": moves})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.set_header(["version", "created", "author", "reason", "hash"]);
    for v in &versions {
        t.add_row([
            format!("v{}", v.version),
            format_ms(v.created_at_ms),
            v.author.clone(),
            v.reason.clone(),
            v.content_hash.chars().take(12).collect(),
        ]);
    }
    println!("{t}");
    if !moves.is_empty() {
        let mut t = Table::new();
        t.set_header(["label", "move", "when", "actor", "reason"]);
        for m in &moves {
            let from = m.from_version.map_or("—".to_string(), |f| format!("v{f}"));
            t.add_row([
                m.label.clone(),
                format!("{from} → v{}", m.to_version),
                format_ms(m.at_ms),
                m.actor.clone(),
                m.reason.clone(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn diff(a: DiffArgs) -> Result<ExitCode> {
    let config = crate::cmd::load_config(&a.config)?;
    let conn = crate::cmd::open_store(&config)?.1;
    let (va, vb) = match (
        resolve(conn.db(), &a.name, &a.a)?,
        resolve(conn.db(), &a.name, &a.b)?,
    ) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(m), _) | (_, Err(m)) => return not_found(m, a.json),
    };
    let d = keel_registry::diff(&content(&va)?, &content(&vb)?);
    // A is the baseline, B the candidate; a failure here never hides the diff.
    let impact = super::impact::for_diff(conn.db(), &config, &va, &vb);
    if a.json {
        let token_impact = match &impact {
            Ok(i) => super::impact::to_json(i),
            Err(e) => json!({"error": e.to_string()}),
        };
        println!(
            "{}",
            json!({"name": a.name, "a": va.version, "b": vb.version,
            "identical": d.is_empty(), "sections": d.sections, "token_impact": token_impact})
        );
    } else if d.is_empty() {
        println!(
            "{}: v{} and v{} have the same content",
            a.name, va.version, vb.version
        );
    } else {
        println!("{}: v{} → v{}", a.name, va.version, vb.version);
        print!("{d}");
        match &impact {
            Ok(i) => println!("\n{}", super::impact::paragraph(i)),
            Err(e) => println!("\nToken impact: not available ({e})."),
        }
    }
    Ok(ExitCode::SUCCESS)
}
