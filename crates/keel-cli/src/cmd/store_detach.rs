//! `keel store detach --before 2026-09-01 | 90d [--dry-run] [--json]`: the days of
//! traces before a date leave a PostgreSQL store's `traces` whole (a partition each,
//! `keel_store::partitions`), far faster than deleting them row by row, and stay in the
//! database as `traces_archived_dYYYYMMDD` until dumped (`pg_dump -t`) or dropped.
//! Their rollups are recomputed, so the dashboard, `keel report` and `keel traces`
//! agree afterwards; audited as `store.detach`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use keel_store::partitions::{detach_before, DetachReport};
use time::macros::format_description;

use crate::ConfigArg;

#[derive(clap::Args)]
pub struct DetachArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Detach the days before this one: a date (2026-09-01, UTC) or an age (90d: the
    /// days older than 90 days).
    #[arg(long)]
    before: String,
    /// Count what would be detached; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

/// `--before` as ms since the epoch: a UTC date's midnight, or now minus an age.
fn cutoff(before: &str, now_ms: i64) -> Result<i64> {
    if let Ok(date) = time::Date::parse(before, format_description!("[year]-[month]-[day]")) {
        return Ok(date.midnight().assume_utc().unix_timestamp() * 1000);
    }
    let age = humantime::parse_duration(before).map_err(|_| {
        anyhow::anyhow!("--before {before}: give a date (2026-09-01) or an age (90d, 12w)")
    })?;
    let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    Ok(now_ms.saturating_sub(age_ms))
}

pub fn run(a: DetachArgs) -> Result<ExitCode> {
    let now = keel_store::prompts::now_ms();
    let before = cutoff(&a.before, now)?;
    let config = super::load_config(&a.config)?;
    let conn = super::open_writer(&config)?;
    let actor = super::actor_or_default(&a.actor);
    let report = detach_before(&conn, before, a.dry_run, &actor, now)
        .context("detaching old days of traces")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &DetachReport) {
    if r.days.is_empty() {
        println!("no day of traces before {} to detach", r.before);
        return;
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(vec!["day", "traces", "table"]);
    for d in &r.days {
        table.add_row(vec![d.day.clone(), d.traces.to_string(), d.table.clone()]);
    }
    println!("{table}");
    if r.dry_run {
        println!(
            "would detach {} day(s), {} traces, before {} (dry run: nothing changed)",
            r.days.len(),
            r.traces,
            r.before
        );
    } else {
        println!(
            "detached {} day(s), {} traces, before {}: they are out of every figure and kept in the tables above (pg_dump -t TABLE, then DROP TABLE TABLE, when archived)",
            r.days.len(),
            r.traces,
            r.before
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_is_a_date_or_an_age() {
        assert_eq!(cutoff("2025-11-01", 0).unwrap(), 1_761_955_200_000);
        assert_eq!(
            cutoff("2d", 1_761_955_200_000).unwrap(),
            1_761_955_200_000 - 2 * 86_400_000
        );
        let e = cutoff("last week", 0).unwrap_err().to_string();
        assert!(e.contains("2026-09-01") && e.contains("90d"), "{e}");
    }
}
