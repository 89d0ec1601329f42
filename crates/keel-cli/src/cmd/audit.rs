//! `keel audit`: the append-only record of changes (prompt pushes, label moves and
//! rollbacks, dataset locks, key changes, config loads), newest first, with who, what and
//! why — and every call governance blocked (read from the traces: `block.<class>`).

use std::process::ExitCode;

use anyhow::Result;
use comfy_table::Table;

use crate::since::{format_ms, parse_since};
use crate::ConfigArg;

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only events since (e.g. 7d, 24h, or an RFC 3339 time); default: all.
    #[arg(long)]
    since: Option<String>,
    /// At most this many events (0 = all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Leave out blocked calls (list recorded changes only).
    #[arg(long)]
    no_blocks: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(a: AuditArgs) -> Result<ExitCode> {
    let since_ms = a
        .since
        .as_deref()
        .map(parse_since)
        .transpose()?
        .unwrap_or(0);
    let config = super::load_config(&a.config)?;
    let (_store, conn) = super::open_store(&config)?;
    let mut events = keel_store::list_audit(&conn, since_ms, a.limit)?;
    if !a.no_blocks {
        let mut classes = keel_governance::error::BLOCK_CLASSES.to_vec();
        classes.extend(["guardrail_input_blocked", "guardrail_output_blocked"]);
        events.extend(keel_store::list_blocks(&conn, &classes, since_ms, a.limit)?);
        events.sort_by(|x, y| y.at_ms.cmp(&x.at_ms).then(y.id.cmp(&x.id)));
        if a.limit > 0 {
            events.truncate(a.limit);
        }
    }
    if a.json {
        println!("{}", serde_json::json!({ "events": events }));
        return Ok(ExitCode::SUCCESS);
    }
    if events.is_empty() {
        println!("no audit events");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.set_header(["when", "actor", "action", "target", "change", "reason"]);
    for e in &events {
        let change = match (&e.from_value, &e.to_value) {
            (Some(f), Some(to)) => format!("{f} → {to}"),
            (None, Some(to)) => to.clone(),
            (Some(f), None) => format!("{f} →"),
            (None, None) => String::new(),
        };
        t.add_row([
            format_ms(e.at_ms),
            e.actor.clone(),
            e.action.clone(),
            e.target.clone(),
            change,
            e.reason.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
