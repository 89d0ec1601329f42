//! `keel incident open | list | show | note | close | export`: an incident's scope and
//! window joined with everything Keel knows — alerts, changes, metric change points,
//! ranked suspects with revert commands, the playbook of its kind — built by
//! `keel-incidents` (the dashboard's Incidents page shows the same).

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use keel_core::config::Config;
use keel_incidents::{playbook, postmortem, suspects, timeline};
use keel_store::incidents::{self, Incident, IncidentEvent, NewIncident};
use serde_json::json;

use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum IncidentCommand {
    /// Open an incident on a scope.
    Open(OpenArgs),
    /// Open incidents (`--all`: closed ones too), newest first.
    List(ListArgs),
    /// One incident: its timeline, suspects with revert commands, and playbook.
    Show(ShowArgs),
    /// Add a note.
    Note(NoteArgs),
    /// Close with a summary.
    Close(CloseArgs),
    /// The postmortem draft (Markdown).
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct OpenArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long)]
    title: String,
    /// A playbook kind: hallucination, prompt-injection, cost-runaway, model-regression, or
    /// one of the team's (playbooks/KIND.md beside keel.toml).
    #[arg(long)]
    kind: Option<String>,
    /// function=F, feature=X, tenant=T or model=M (default: global).
    #[arg(long)]
    scope: Option<String>,
    /// sev1 (worst) to sev4.
    #[arg(long, default_value = "sev2")]
    severity: String,
    /// When the trouble started, if before now (a duration back, e.g. 30m, or RFC 3339).
    #[arg(long)]
    since: Option<String>,
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
    all: bool,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    config: ConfigArg,
    id: i64,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct NoteArgs {
    #[command(flatten)]
    config: ConfigArg,
    id: i64,
    text: String,
    #[arg(long)]
    actor: Option<String>,
}

#[derive(clap::Args)]
pub struct CloseArgs {
    #[command(flatten)]
    config: ConfigArg,
    id: i64,
    #[arg(long)]
    summary: String,
    #[arg(long)]
    actor: Option<String>,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    config: ConfigArg,
    id: i64,
    /// Markdown (the only format, and the default).
    #[arg(long)]
    markdown: bool,
    /// Write to this file instead of stdout.
    #[arg(long, short = 'o')]
    out: Option<std::path::PathBuf>,
}

pub fn run(cmd: IncidentCommand) -> Result<ExitCode> {
    match cmd {
        IncidentCommand::Open(a) => open(a),
        IncidentCommand::List(a) => list(a),
        IncidentCommand::Show(a) => show(a),
        IncidentCommand::Note(a) => note(a),
        IncidentCommand::Close(a) => close(a),
        IncidentCommand::Export(a) => export(a),
    }
}

/// A scope as `kind=value`, checked.
fn check_scope(config: &Config, scope: &str) -> Result<String> {
    let (kind, value) = scope
        .split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(_, v)| !v.is_empty())
        .ok_or_else(|| {
            anyhow!("--scope `{scope}`: write function=F, feature=X, tenant=T or model=M")
        })?;
    let known: Option<Vec<String>> = match kind {
        "function" => Some(config.functions.keys().cloned().collect()),
        "model" => Some(config.models.keys().cloned().collect()),
        "feature" | "tenant" => None,
        other => {
            return Err(anyhow!(
                "--scope `{scope}`: `{other}` is not a scope kind; use function, feature, tenant or model"
            ))
        }
    };
    if let Some(known) = known {
        if !known.iter().any(|k| k == value) {
            return Err(anyhow!(
                "--scope `{scope}`: {} has no {kind} `{value}`; its {kind}s are: {}",
                config.source.display(),
                known.join(", ")
            ));
        }
    }
    Ok(format!("{kind}={value}"))
}

fn config_dir(config: &Config) -> std::path::PathBuf {
    config
        .source
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

fn open(a: OpenArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let scope = a
        .scope
        .as_deref()
        .map(|s| check_scope(&config, s))
        .transpose()?;
    if let Some(k) = &a.kind {
        let kinds = playbook::kinds(&config_dir(&config));
        if !kinds.contains(k) {
            eprintln!(
                "warning: no playbook for kind `{k}` (known: {}); add playbooks/{k}.md beside keel.toml to have one",
                kinds.join(", ")
            );
        }
    }
    let now = keel_store::prompts::now_ms();
    let first_signal = match &a.since {
        Some(s) => Some(crate::since::parse_since(s)?),
        None => None,
    };
    let who = super::actor_or_default(&a.actor);
    let mut conn = super::open_writer(&config)?;
    let id = incidents::open(
        &mut conn,
        &NewIncident {
            title: &a.title,
            kind: a.kind.as_deref(),
            scope: scope.as_deref(),
            actor: &who,
            at_ms: now,
            first_signal_ms: first_signal,
            alert_rule: None,
            severity: Some(&a.severity),
        },
    )?;
    if a.json {
        println!("{}", json!({"id": id, "scope": scope, "kind": a.kind}));
    } else {
        println!(
            "opened incident {id}: {} ({}); see it with `keel incident show {id}`",
            a.title,
            scope.as_deref().unwrap_or("global")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (_, conn) = super::open_store(&config)?;
    let all = incidents::list(&conn, a.all, a.limit)?;
    if a.json {
        println!("{}", json!({"incidents": all}));
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no {}incidents", if a.all { "" } else { "open " });
    }
    for i in &all {
        println!(
            "{:>4}  {:<6}  {}  {}  {:<18} {:<16} {}",
            i.id,
            i.status,
            i.severity,
            crate::since::format_ms(i.opened_at_ms),
            i.scope.as_deref().unwrap_or("global"),
            i.kind.as_deref().unwrap_or("-"),
            i.title
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The incident, its events, timeline and suspects.
fn load(
    config: &Config,
    id: i64,
) -> Result<(
    Incident,
    Vec<IncidentEvent>,
    timeline::Timeline,
    Vec<suspects::Suspect>,
)> {
    let (_, conn) = super::open_store(config)?;
    let (inc, events) = incidents::get(&conn, id)?.ok_or_else(|| {
        anyhow!("there is no incident {id}; `keel incident list --all` lists them")
    })?;
    let now = keel_store::prompts::now_ms();
    let tl = timeline::build(conn.db(), config, &inc, &events, now)?;
    let sus = suspects::rank(
        &tl,
        inc.kind.as_deref(),
        inc.scope.as_deref(),
        inc.id,
        inc.first_signal_ms,
    );
    Ok((inc, events, tl, sus))
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (inc, events, tl, sus) = load(&config, a.id)?;
    let book = inc
        .kind
        .as_deref()
        .and_then(|k| playbook::find(&config_dir(&config), k));
    if a.json {
        println!(
            "{}",
            json!({"incident": inc, "events": events, "timeline": tl, "suspects": sus, "playbook": book})
        );
        return Ok(ExitCode::SUCCESS);
    }
    use postmortem::utc;
    println!(
        "incident {}: {} [{}, {}]",
        inc.id, inc.title, inc.status, inc.severity
    );
    println!(
        "scope {} · kind {} · opened {} by {} · window {} – {}",
        inc.scope.as_deref().unwrap_or("global"),
        inc.kind.as_deref().unwrap_or("-"),
        utc(inc.opened_at_ms),
        inc.opened_by,
        utc(tl.since_ms),
        utc(tl.until_ms)
    );
    println!("\ntimeline");
    for e in &tl.entries {
        println!(
            "  {}  {:<12} {}{}{}",
            utc(e.at_ms),
            e.kind,
            e.title,
            if e.detail.is_empty() {
                String::new()
            } else {
                format!(" — {}", e.detail)
            },
            if e.traces.is_empty() {
                String::new()
            } else {
                format!(" (traces: {})", e.traces.join(", "))
            }
        );
    }
    println!("\nsuspects");
    if sus.is_empty() {
        println!("  no recorded change precedes the first shift");
    }
    for (i, s) in sus.iter().take(5).enumerate() {
        println!(
            "  {}. {} {} by {} at {} ({})",
            i + 1,
            s.action,
            s.target,
            s.actor,
            utc(s.at_ms),
            s.why
        );
        if let Some(r) = &s.revert {
            println!("     revert: {r}");
        }
    }
    match book {
        Some(b) => println!("\nplaybook ({}, {})\n\n{}", b.kind, b.source, b.markdown),
        None => println!(
            "\nno playbook: open with --kind (one of {})",
            playbook::kinds(&config_dir(&config)).join(", ")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn note(a: NoteArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let mut conn = super::open_writer(&config)?;
    incidents::note(
        &mut conn,
        a.id,
        "note",
        &super::actor_or_default(&a.actor),
        &a.text,
        keel_store::prompts::now_ms(),
    )?;
    println!("noted on incident {}", a.id);
    Ok(ExitCode::SUCCESS)
}

fn close(a: CloseArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let mut conn = super::open_writer(&config)?;
    let closed = incidents::close(
        &mut conn,
        a.id,
        &super::actor_or_default(&a.actor),
        &a.summary,
        keel_store::prompts::now_ms(),
    )?;
    if closed {
        println!(
            "closed incident {}; the postmortem draft: `keel incident export {} --markdown`",
            a.id, a.id
        );
    } else {
        println!("incident {} was already closed: nothing changed", a.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn export(a: ExportArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (inc, _, tl, sus) = load(&config, a.id)?;
    let md = postmortem::markdown(&inc, &tl, &sus);
    match &a.out {
        Some(path) => {
            std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
            println!(
                "wrote the postmortem draft of incident {} to {}",
                a.id,
                path.display()
            );
        }
        None => print!("{md}"),
    }
    Ok(ExitCode::SUCCESS)
}
