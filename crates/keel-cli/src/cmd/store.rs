//! `keel store copy`: move a SQLite store into PostgreSQL (see `keel_store::store_copy`
//! for how, and why it can be run again after an interruption). `keel store detach`:
//! take whole days of traces out of a PostgreSQL store (`store_detach.rs`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_store::store_copy::{copy_store, CopyReport};
use keel_store::Store;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Copy a SQLite store into an empty PostgreSQL database: every table, ids and
    /// hashes as they were, with progress and a count of every table at the end. Run
    /// it again to go on after an interruption.
    Copy(CopyArgs),
    /// Detach the days of traces before a date from a PostgreSQL store, whole: they
    /// leave every figure Keel shows and stay in the database as
    /// traces_archived_dYYYYMMDD tables, to dump or drop.
    Detach(super::store_detach::DetachArgs),
}

#[derive(Args)]
pub struct CopyArgs {
    /// The SQLite store (e.g. keel.db). Stop `keel serve` first, or copy a backup.
    #[arg(long)]
    pub from: String,
    /// The PostgreSQL store: postgres://user[:password]@host[:port]/database
    /// (`KEEL_STORE_COPY_TO` keeps the password off the command line).
    #[arg(long, env = "KEEL_STORE_COPY_TO")]
    pub to: String,
    /// Print the counts as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: StoreCommand) -> Result<ExitCode> {
    match command {
        StoreCommand::Copy(a) => copy(&a),
        StoreCommand::Detach(a) => super::store_detach::run(a),
    }
}

fn copy(a: &CopyArgs) -> Result<ExitCode> {
    if keel_store::sql::is_postgres_url(&a.from) {
        anyhow::bail!("--from must be a SQLite store file (e.g. keel.db), not a PostgreSQL URL");
    }
    if !std::path::Path::new(&a.from).is_file() {
        anyhow::bail!(
            "--from {}: no such file — give the path of the SQLite store ([gateway] store in keel.toml)",
            a.from
        );
    }
    let from = Store::open(&a.from).with_context(|| format!("opening {}", a.from))?;
    let to = Store::open(&a.to).context("opening the PostgreSQL store (--to)")?;
    let bar = progress(a.json);
    let report = copy_store(&from, &to, |p| {
        bar.set_message(p.table.to_string());
        bar.set_length(p.total);
        bar.set_position(p.copied);
    })?;
    bar.finish_and_clear();
    let bad = report.mismatches().len();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, to.path());
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn progress(json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>22} {bar:30.cyan/blue} {pos}/{len} rows · {elapsed}")
    {
        bar.set_style(style);
    }
    bar
}

fn print_report(report: &CopyReport, to: &str) {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(vec!["table", "source rows", "copied rows", ""]);
    for t in &report.tables {
        let check = if t.source == t.target {
            "ok"
        } else {
            "MISMATCH"
        };
        table.add_row(vec![
            t.table.clone(),
            t.source.to_string(),
            t.target.to_string(),
            check.to_string(),
        ]);
    }
    println!("{table}");
    let resumed = if report.resumed {
        " (went on from an interrupted copy)"
    } else {
        ""
    };
    match report.mismatches().len() {
        0 => println!(
            "copied into {to}{resumed}; every table counted the same on both sides; rollups rebuilt from {} traces.\nSet [gateway] store (or KEEL_STORE) to the PostgreSQL URL and restart keel.",
            report.rollup_traces
        ),
        n => println!(
            "{n} table(s) differ: was the SQLite store written to during the copy? Stop keel serve and run the same command again to finish."
        ),
    }
}
