//! `keel dev …` (hidden): tools for developing Keel itself, not for running it.
//! `gen-traces` fills a store with synthetic traffic for the dashboard's scale benchmark
//! (`bench/dashboard_scale.sh`); see `keel_store::synth` for what the traffic looks like.
//! `rebuild-rollups` recomputes the dashboard's rollups from the traces, as migration
//! 0015 does once (timed by the benchmark).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use keel_store::synth::{generate, SynthOptions};

#[derive(Subcommand)]
pub enum DevCommand {
    /// Write synthetic traces (with their rollups) straight into a store (a SQLite file
    /// or a postgres:// URL).
    GenTraces(GenArgs),
    /// Recompute every rollup from the traces (what migration 0015 did; a repair).
    RebuildRollups {
        /// The store (a SQLite file or a postgres:// URL).
        #[arg(long)]
        store: String,
    },
}

#[derive(clap::Args)]
pub struct GenArgs {
    /// The store to fill: a SQLite file (created when missing) or a postgres:// URL;
    /// traces are added to what it holds.
    #[arg(long)]
    store: String,
    /// How many traces.
    #[arg(long, default_value_t = 10_000_000)]
    count: u64,
    /// Spread evenly over this many days up to now.
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Traces per transaction.
    #[arg(long, default_value_t = 20_000)]
    batch: usize,
}

pub fn run(command: DevCommand) -> Result<ExitCode> {
    match command {
        DevCommand::GenTraces(a) => gen_traces(a),
        DevCommand::RebuildRollups { store } => rebuild(&store),
    }
}

fn rebuild(path: &str) -> Result<ExitCode> {
    let store = keel_store::Store::open(path)?;
    let conn = store.conn()?;
    let started = Instant::now();
    let traces = conn
        .db()
        .transaction(|tx| keel_store::rollup::rebuild_all(tx))?;
    println!(
        "rebuilt the rollups of {traces} traces in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn gen_traces(a: GenArgs) -> Result<ExitCode> {
    let path = a.store;
    let store = keel_store::Store::open(&path)?;
    let conn = store
        .conn()
        .with_context(|| format!("opening {path} for writing"))?;
    let opts = SynthOptions {
        count: a.count,
        days: a.days,
        now_ms: keel_store::prompts::now_ms(),
        seed: a.seed,
        batch: a.batch,
    };
    let started = Instant::now();
    let mut last_report = Instant::now();
    let written = generate(conn.db(), &opts, |n| {
        // A line every few seconds: the 10M run takes minutes.
        if last_report.elapsed().as_secs() >= 5 || n == a.count {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{n} traces in {secs:.0} s ({:.0}/s)",
                n as f64 / secs.max(0.001)
            );
            let _ = std::io::stderr().flush();
        }
    })?;
    println!(
        "wrote {written} traces to {path} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
