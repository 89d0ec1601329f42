//! `keel report`: the weekly review — totals, by model/feature/tenant, top callers,
//! unpriced calls — as a terminal table, JSON or Markdown.

use std::process::ExitCode;

use anyhow::Result;

use crate::since::{now_ms, parse_since};
use crate::ConfigArg;

#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Window start: a duration back from now (24h, 7d, 30d) or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    since: String,
    /// How many top callers to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Print JSON.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print Markdown (for a PR comment or a wiki page).
    #[arg(long)]
    markdown: bool,
}

pub fn run(a: ReportArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let since = parse_since(&a.since)?;
    let (_store, conn) = super::open_store(&config)?;
    let report = keel_store::build_report(&conn, since, now_ms() + 1, a.top)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if a.markdown {
        print!("{}", keel_store::render_markdown(&report));
    } else {
        print!("{}", keel_store::render_table(&report));
    }
    Ok(ExitCode::SUCCESS)
}
