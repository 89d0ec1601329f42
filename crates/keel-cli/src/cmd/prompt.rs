//! `keel prompt …`: push the prompts folder as versions, move labels (and roll them
//! back) with a recorded who and why, and read what is stored: list, show, history, diff;
//! `impact` projects what a change does to tokens and monthly cost.

pub(crate) mod git;
mod impact;
mod view;

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use keel_core::config::Config;
use keel_registry::PromptIssue;
use keel_store::PushOutcome;
use serde_json::json;

use crate::ConfigArg;

pub use git::default_actor;

#[derive(clap::Subcommand)]
pub enum PromptCommand {
    /// Validate the prompts folder and store each changed prompt as a new version.
    Push(PushArgs),
    /// Point a label (production, staging, …) of a prompt at a version.
    Label(LabelArgs),
    /// Move a label back to where its latest move took it from.
    Rollback(RollbackArgs),
    /// Every stored prompt: latest version, labels, last change.
    List(view::ListArgs),
    /// One version of a prompt: content, hash, author, reason, time.
    Show(view::ShowArgs),
    /// The versions and label moves of a prompt, newest first.
    History(view::HistoryArgs),
    /// What changed between two versions (numbers or label names).
    Diff(view::DiffArgs),
    /// Token and projected monthly cost change of a version against a baseline.
    Impact(impact::ImpactArgs),
}

#[derive(clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Author of the new versions (default: the last git commit of each file, else $USER;
    /// required with --reason when a file has uncommitted changes).
    #[arg(long)]
    author: Option<String>,
    /// Why (default: the subject of the last git commit of each file).
    #[arg(long, short = 'm', visible_alias = "reason")]
    message: Option<String>,
    /// Also point this label at each prompt's pushed version (created or unchanged),
    /// recorded like `keel prompt label`: how CI builds its baseline in a fresh store.
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
    /// Show what would be pushed without writing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct LabelArgs {
    #[command(flatten)]
    config: ConfigArg,
    name: String,
    version: String,
    label: String,
    /// Why the label moves (recorded in the audit log).
    #[arg(long)]
    reason: String,
    /// Who moves it (default: $KEEL_ACTOR, else git user.name, else $USER).
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    config: ConfigArg,
    name: String,
    label: String,
    #[arg(long, default_value = "rollback")]
    reason: String,
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: PromptCommand) -> Result<ExitCode> {
    match cmd {
        PromptCommand::Push(a) => push(a),
        PromptCommand::Label(a) => label(a),
        PromptCommand::Rollback(a) => rollback(a),
        PromptCommand::List(a) => view::list(a),
        PromptCommand::Show(a) => view::show(a),
        PromptCommand::History(a) => view::history(a),
        PromptCommand::Diff(a) => view::diff(a),
        PromptCommand::Impact(a) => impact::run(a),
    }
}

/// The configured prompts folder, or a usage error saying how to configure it.
pub fn prompts_dir(config: &Config) -> Result<std::path::PathBuf> {
    config.prompts_dir.clone().ok_or_else(|| {
        anyhow!(
            "{}: no prompts folder configured — add prompts = \"prompts\" at the top of the file",
            config.source.display()
        )
    })
}

/// The store for writing prompt changes.
fn open_writer(config: &Config) -> Result<keel_store::Conn> {
    let (store, _reader) = super::open_store(config)?;
    store.conn().with_context(|| {
        format!(
            "opening the store of {} for writing",
            config.source.display()
        )
    })
}

pub fn print_issues(errors: &[PromptIssue], json_out: bool) {
    if json_out {
        println!("{}", json!({"ok": false, "errors": issues_json(errors)}));
    } else {
        print_errors_in(errors, "the prompts folder");
    }
}

/// Each error on stderr, then how many there are in `place` (nothing when none).
pub fn print_errors_in(errors: &[PromptIssue], place: &str) {
    if errors.is_empty() {
        return;
    }
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{} error{} in {place}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
}

pub fn issues_json(issues: &[PromptIssue]) -> Vec<serde_json::Value> {
    issues
        .iter()
        .map(|i| json!({"file": i.file, "path": i.path, "message": i.message, "hint": i.hint}))
        .collect()
}

fn push(a: PushArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let dir = prompts_dir(&config)?;
    let set = match keel_registry::load_prompts(&dir) {
        Ok(s) => s,
        Err(errors) => {
            print_issues(&errors, a.json);
            return Ok(ExitCode::from(1));
        }
    };
    let conn = open_writer(&config)?;
    // Content that would be a new version but differs from its file's last commit: that
    // commit's author and message do not describe it, so they are never credited.
    let mut uncommitted = std::collections::BTreeSet::new();
    for (name, prompt) in &set.prompts {
        let new = keel_store::version_by_hash(&conn, name, &prompt.content_hash())?.is_none();
        if new && set.files.get(name).is_some_and(|f| git::uncommitted(f)) {
            uncommitted.insert(name.clone());
        }
    }
    if !uncommitted.is_empty() && (a.author.is_none() || a.message.is_none()) {
        let files: Vec<String> = uncommitted
            .iter()
            .filter_map(|n| set.files.get(n).map(|f| f.display().to_string()))
            .collect();
        let message = format!(
            "uncommitted changes in {}: the last commit's author and message do not describe them — commit first, or pass --author and --reason to push the content as uncommitted",
            files.join(", ")
        );
        if a.json {
            println!(
                "{}",
                json!({"ok": false, "error": message, "uncommitted": files})
            );
        } else {
            eprintln!("error: {message}");
        }
        return Ok(ExitCode::from(1));
    }
    let mut results = Vec::new();
    for (name, prompt) in &set.prompts {
        let is_uncommitted = uncommitted.contains(name);
        let commit = set
            .files
            .get(name)
            .filter(|_| !is_uncommitted)
            .and_then(|f| git::last_commit(f));
        let author = a
            .author
            .clone()
            .or_else(|| commit.as_ref().map(|c| c.author.clone()))
            .unwrap_or_else(git::default_user);
        let reason = a
            .message
            .clone()
            .or_else(|| commit.as_ref().map(|c| c.subject.clone()))
            .unwrap_or_else(|| "no reason given".to_string());
        let commit_id = commit.map(|c| c.commit_id);
        let hash = prompt.content_hash();
        let outcome = if a.dry_run {
            match (
                keel_store::version_by_hash(&conn, name, &hash)?,
                keel_store::latest_version(&conn, name)?,
            ) {
                (Some(v), _) => PushOutcome::Unchanged(v),
                (None, Some(v)) => PushOutcome::Created(v.version + 1),
                (None, None) => PushOutcome::Created(1),
            }
        } else {
            keel_store::push_version(
                &conn,
                name,
                &hash,
                &prompt.to_json().to_string(),
                &author,
                &reason,
                commit_id.as_deref(),
            )?
        };
        let (word, version) = match outcome {
            PushOutcome::Created(v) => ("created", v),
            PushOutcome::Unchanged(v) => ("unchanged", v),
        };
        let moved = match (&a.label, a.dry_run) {
            (Some(label), false) => {
                match keel_store::set_label(&conn, name, version, label, &author, &reason) {
                    Ok(out) => Some((label.as_str(), out)),
                    Err(e) => return refused(e, a.json),
                }
            }
            _ => None,
        };
        if !a.json {
            let would = if a.dry_run { "would be " } else { "" };
            match outcome {
                PushOutcome::Created(v) => {
                    let note = if is_uncommitted { "; uncommitted" } else { "" };
                    println!("{name}: {would}created v{v} ({author}: {reason}{note})")
                }
                PushOutcome::Unchanged(v) => println!("{name}: unchanged (v{v})"),
            }
            if let Some((label, out)) = moved {
                report_move(name, label, out, &author, false);
            }
        }
        results.push(
            json!({"name": name, "outcome": word, "version": version, "content_hash": hash,
            "author": author, "reason": reason, "commit_id": commit_id, "uncommitted": is_uncommitted,
            "label": moved.map(|(l, out)| json!({"label": l, "from_version": out.from_version, "to_version": out.to_version}))}),
        );
    }
    if a.json {
        println!(
            "{}",
            json!({"ok": true, "dry_run": a.dry_run, "prompts": results,
            "warnings": issues_json(&set.warnings)})
        );
    } else {
        for w in &set.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `3` or `v3` → 3.
pub fn parse_version(s: &str) -> Option<i64> {
    s.strip_prefix('v').unwrap_or(s).parse().ok()
}

fn label(a: LabelArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let version = parse_version(&a.version).ok_or_else(|| {
        anyhow!(
            "VERSION `{}` is not a version number (e.g. 3 or v3)",
            a.version
        )
    })?;
    let conn = open_writer(&config)?;
    let actor = a.actor.unwrap_or_else(default_actor);
    match keel_store::set_label(&conn, &a.name, version, &a.label, &actor, &a.reason) {
        Ok(out) => {
            report_move(&a.name, &a.label, out, &actor, a.json);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(e, a.json),
    }
}

fn rollback(a: RollbackArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let conn = open_writer(&config)?;
    let actor = a.actor.unwrap_or_else(default_actor);
    match keel_store::rollback_label(&conn, &a.name, &a.label, &actor, &a.reason) {
        Ok(out) => {
            report_move(&a.name, &a.label, out, &actor, a.json);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(e, a.json),
    }
}

fn report_move(
    name: &str,
    label: &str,
    out: keel_store::LabelOutcome,
    actor: &str,
    json_out: bool,
) {
    if json_out {
        println!(
            "{}",
            json!({"ok": true, "name": name, "label": label, "from_version": out.from_version,
            "to_version": out.to_version, "actor": actor})
        );
    } else {
        match out.from_version {
            Some(f) if f == out.to_version => println!("{name}: {label} already at v{f}"),
            Some(f) => println!("{name}: {label} v{f} → v{}", out.to_version),
            None => println!("{name}: {label} → v{}", out.to_version),
        }
    }
}

/// A refused change is "found a problem" (exit 1); a store failure is a runtime error.
fn refused(e: keel_store::PromptStoreError, json_out: bool) -> Result<ExitCode> {
    if let keel_store::PromptStoreError::Sqlite(_) | keel_store::PromptStoreError::Store(_) = e {
        return Err(e.into());
    }
    if json_out {
        println!("{}", json!({"ok": false, "error": e.to_string()}));
    } else {
        eprintln!("error: {e}");
    }
    Ok(ExitCode::from(1))
}
