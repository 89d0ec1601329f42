//! `keel traces purge --user U | --tenant T | --session S --reason R [--dry-run]`: a
//! data-protection request carried out — every trace of the subject removed with its
//! scores, feedback, review items, dataset drafts, replay cases, stored responses and the
//! app's spans (`keel_store::purge`), audited as `traces.purge` without the data, rollups
//! kept exact. `--dry-run` counts and changes nothing.

use std::process::ExitCode;

use anyhow::{Context, Result};
use keel_store::purge::{purge, PurgeCounts, Subject};

use crate::ConfigArg;

#[derive(clap::Args)]
#[group(id = "subject", required = true, multiple = false)]
pub struct SubjectArg {
    /// The `x-keel-user` whose calls go.
    #[arg(long, group = "subject")]
    user: Option<String>,
    /// The tenant whose calls (and stored responses) go.
    #[arg(long, group = "subject")]
    tenant: Option<String>,
    /// The `x-keel-session` whose calls go.
    #[arg(long, group = "subject")]
    session: Option<String>,
}

#[derive(clap::Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    subject: SubjectArg,
    /// Why (kept in the audit log, e.g. the request's reference).
    #[arg(long)]
    reason: String,
    /// Count what would go; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: PurgeArgs) -> Result<ExitCode> {
    let subject = match (a.subject.user, a.subject.tenant, a.subject.session) {
        (Some(u), ..) => Subject::User(u),
        (_, Some(t), _) => Subject::Tenant(t),
        (_, _, Some(s)) => Subject::Session(s),
        _ => anyhow::bail!("name whose traces to purge: --user, --tenant or --session"),
    };
    if a.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why (e.g. the data-protection request's reference)");
    }
    let config = super::load_config(&a.config)?;
    let mut conn = super::open_writer(&config)?;
    let actor = super::actor_or_default(&a.actor);
    let counts = purge(
        &mut conn,
        &subject,
        a.dry_run,
        (&actor, &a.reason, keel_store::prompts::now_ms()),
    )
    .with_context(|| format!("purging {}", subject.target()))?;
    if a.json {
        let mut v = serde_json::to_value(&counts)?;
        v["subject"] = subject.target().into();
        v["dry_run"] = a.dry_run.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let what = summary(&counts);
    if a.dry_run {
        println!(
            "would purge {}: {what} (dry run: nothing changed)",
            subject.target()
        );
    } else {
        println!(
            "purged {}: {what}; audited as traces.purge by {actor}",
            subject.target()
        );
    }
    if !counts.pulled_cases.is_empty() {
        eprintln!(
            "warning: {} dataset case(s) came from these traces and live in suite files, not the store; remove them there: {}",
            counts.pulled_cases.len(),
            counts.pulled_cases.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(c: &PurgeCounts) -> String {
    let parts = [
        (c.traces, "trace"),
        (c.scores, "score"),
        (c.feedback, "feedback value"),
        (c.online_eval_failures, "online-eval failure"),
        (c.review_items, "review item"),
        (c.review_labels, "review label"),
        (c.dataset_drafts, "dataset draft"),
        (c.replay_cases, "replay case"),
        (c.responses, "stored response"),
        (c.app_spans, "app span"),
    ];
    let listed: Vec<String> = parts
        .iter()
        .filter(|(n, what)| *n > 0 || *what == "trace")
        .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    listed.join(", ")
}
