//! `keel replay`: try a change on real inputs before it ships. Recorded production calls
//! of a function are re-sent, in-process, through a candidate — another variant, a prompt
//! version, or a model — and stored as a run, case by case, beside what was recorded.
//!
//! `keel replay --function F --candidate V` is short for `keel replay run …`;
//! `keel replay show RUN_ID` and `keel replay list` read stored runs back.

mod render;
mod select;
mod totals;

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_core::trace::TraceRecord;
use keel_gateway::replay::{ReplayOutcome, Replayer};
use keel_store::{CallSide, NewReplayRun, ReplayCase};

use crate::ConfigArg;
use select::{candidate, describe_filters, filters_json, trace_filter};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReplayArgs {
    #[command(subcommand)]
    command: Option<ReplayCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
pub enum ReplayCommand {
    /// Replay recorded calls through a candidate (the default: `keel replay --function …`).
    Run(Box<RunArgs>),
    /// Show a stored run, case by case.
    Show(ShowArgs),
    /// List stored runs, newest first.
    List(ListArgs),
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The function whose recorded calls are replayed.
    #[arg(long, required = true)]
    function: Option<String>,
    #[command(flatten)]
    candidate: CandidateArgs,
    /// Replay calls recorded since (30m, 24h, 7d or an RFC 3339 time).
    #[arg(long, default_value = "7d")]
    since: String,
    /// Consider the newest N matching calls (0 = all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Narrow the recorded calls: tenant, feature, user, session, variant, model or
    /// status (default status=ok). Repeatable: --filter tenant=acme --filter user=u-1.
    #[arg(long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Cases in flight at once.
    #[arg(long, default_value = "4")]
    concurrency: NonZeroUsize,
    /// Print JSON (the stored run with every case, and the totals).
    #[arg(long)]
    json: bool,
}

/// Exactly one candidate.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct CandidateArgs {
    /// Another configured variant of the function.
    #[arg(long, value_name = "VARIANT")]
    candidate: Option<String>,
    /// Each recorded call's own variant, with this prompt version.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    prompt_version: Option<i64>,
    /// Each recorded call's own variant, on this configured model.
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The run id (rpl_…), as printed by `keel replay`.
    id: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only the runs of this function.
    #[arg(long)]
    function: Option<String>,
    /// Most runs to show (0 = all).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(a: ReplayArgs) -> Result<ExitCode> {
    match a.command {
        None => replay(a.run),
        Some(ReplayCommand::Run(r)) => replay(*r),
        Some(ReplayCommand::Show(s)) => show(s),
        Some(ReplayCommand::List(l)) => list(l),
    }
}

fn replay(a: RunArgs) -> Result<ExitCode> {
    let function = a
        .function
        .clone()
        .ok_or_else(|| anyhow!("--function is required"))?;
    let (cand, kind, value) = candidate(&a.candidate)?;
    let filter = trace_filter(&a, &function)?;
    let config = super::load_config(&a.config)?;
    let (store, reader) = super::open_store(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Setup errors (unknown function, variant or model; no such prompt version) name
    // what is configured and exit 2 before anything is stored.
    let replayer = rt
        .block_on(async { Replayer::new(&config, &store, &function, cand.clone()) })
        .map_err(|e| anyhow!("{e}"))?;

    let traces = keel_store::list_traces(&reader, &filter)?;
    let (traces, skipped): (Vec<TraceRecord>, Vec<TraceRecord>) =
        traces.into_iter().partition(|t| t.input.is_some());
    // The human output repeats this in its totals; JSON carries it as `skipped`.
    if !skipped.is_empty() && (a.json || traces.is_empty()) {
        eprintln!(
            "note: {} trace{} had no captured input (capture = \"none\") and {} skipped",
            skipped.len(),
            if skipped.len() == 1 { "" } else { "s" },
            if skipped.len() == 1 { "was" } else { "were" }
        );
    }
    if traces.is_empty() {
        eprintln!(
            "No recorded calls of `{function}` to replay since {} with {} — widen --since or --filter, or call the function first.",
            a.since,
            describe_filters(&a.filter)
        );
        return Ok(ExitCode::from(1));
    }

    let writer = store.conn()?;
    let actor = super::prompt::default_actor();
    let run_id = keel_store::create_run(
        &writer,
        &NewReplayRun {
            actor: &actor,
            function: &function,
            candidate_kind: kind,
            candidate_value: &value,
            filters: filters_json(&a),
            skipped: skipped.len() as u64,
        },
        crate::since::now_ms(),
    )?;
    eprintln!(
        "Replaying {} recorded call{} of {function} on {} (run {run_id})",
        traces.len(),
        if traces.len() == 1 { "" } else { "s" },
        cand.describe()
    );

    let bar = progress(traces.len() as u64, a.json);
    let done = rt.block_on(async {
        let mut results = stream::iter(traces.iter().enumerate())
            .map(|(idx, t)| {
                let replayer = &replayer;
                async move {
                    let input = t.input.as_deref().unwrap_or_default();
                    let outcome = replayer.replay(input, t.variant.as_deref()).await;
                    case(idx as u64, t, outcome)
                }
            })
            .buffer_unordered(a.concurrency.get());
        let mut done = 0usize;
        while let Some(c) = results.next().await {
            keel_store::record_case(&writer, &run_id, &c)
                .with_context(|| format!("storing case {} of run {run_id}", c.idx))?;
            bar.inc(1);
            done += 1;
        }
        anyhow::Ok(done)
    })?;
    bar.finish_and_clear();
    keel_store::finish_run(&writer, &run_id, crate::since::now_ms())?;
    drop(replayer);
    let detail = keel_store::get_run(&writer, &run_id)?
        .ok_or_else(|| anyhow!("run {run_id} vanished from the store after {done} cases"))?;
    render::print_run(&detail, a.json)?;
    Ok(ExitCode::SUCCESS)
}

fn progress(len: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} cases · {elapsed} · ETA {eta}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn case(idx: u64, t: &TraceRecord, o: ReplayOutcome) -> ReplayCase {
    ReplayCase {
        idx,
        trace_id: t.id.clone(),
        recorded: CallSide {
            variant: t.variant.clone(),
            prompt_version: t.prompt_version,
            model: t.model_requested.clone(),
            output: t.output.clone(),
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cost_nanos: t.cost,
            unpriced: t.unpriced,
            latency_ms: t.latency_ms,
        },
        new: CallSide {
            variant: o.variant,
            prompt_version: o.prompt_version,
            model: o.model,
            output: o.output,
            input_tokens: o.input_tokens,
            output_tokens: o.output_tokens,
            cost_nanos: o.cost,
            unpriced: o.unpriced,
            latency_ms: o.latency_ms,
        },
        error: o.error,
    }
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (_store, conn) = super::open_store(&config)?;
    match keel_store::get_run(&conn, &a.id)? {
        Some(detail) => {
            render::print_run(&detail, a.json)?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "No replay run `{}`; `keel replay list` shows the stored runs.",
                a.id
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (_store, conn) = super::open_store(&config)?;
    let runs = keel_store::list_runs(&conn, a.function.as_deref(), a.limit)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else if runs.is_empty() {
        println!("No replay runs yet — `keel replay --function F --candidate VARIANT` starts one.");
    } else {
        println!("{}", render::runs_table(&runs));
    }
    Ok(ExitCode::SUCCESS)
}
