//! `keel eval …`: run a suite as a CI gate, compare two models, lock a dataset, and read
//! a suite's history.
//!
//! Exit codes of `run` and `compare`: 0 the gate holds, 1 it fails (each broken rule is
//! printed with the amount), 2 on error (bad suite, changed dataset, unknown variant…).

pub(crate) mod progress;
pub mod redteam;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use keel_core::config::Config;
use keel_evals::runner::plan::RunOptions;
use keel_evals::runner::{run_suite, RunOutcome, RunSettings};
use keel_evals::suite::{load_suite, suite_path, Suite};
use keel_store::audit::{record_audit, NewAuditEvent};

use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum EvalCommand {
    /// Run a suite against its target (or --variant) and check its gate; exit 0 pass, 1 fail, 2 error.
    Run(Box<RunArgs>),
    /// Run a suite's target on two models and report parity (a model upgrade's evidence).
    Compare(Box<CompareArgs>),
    /// Record the dataset's current hash in the suite (an audited act with a reason).
    Lock(LockArgs),
    /// Runs of a suite over time: prompt version, model, release, pass rate, gate.
    History(HistoryArgs),
    /// The built-in red-team suite through a guardrail policy: block rate and
    /// false-positive rate per check (exit 1 when a --min/--max gate is missed).
    Redteam(redteam::RedteamArgs),
}

#[derive(clap::Args)]
pub struct Outputs {
    /// Print the whole outcome as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write a Markdown report (a PR comment) here.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Bypass the response cache (every case calls the provider).
    #[arg(long)]
    no_cache: bool,
    /// Run each case N times (overrides [run] repeat).
    #[arg(long)]
    repeat: Option<u32>,
    /// Calls in flight (overrides [run] concurrency).
    #[arg(long)]
    concurrency: Option<usize>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The suite: a name in the evals folder, or a path to its .toml.
    suite: String,
    /// The function variant to test (default: the suite's [target] variant).
    #[arg(long)]
    variant: Option<String>,
    /// Compare with: a variant of the function, a prompt label (production), or vN.
    #[arg(long)]
    baseline: Option<String>,
    /// Use the variant's stored prompt (its label or version), not the prompts folder.
    #[arg(long)]
    from_store: bool,
    #[command(flatten)]
    out: Outputs,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    config: ConfigArg,
    suite: String,
    /// The new model (a configured [models.*] name).
    #[arg(long)]
    model: String,
    /// The pinned model in use now.
    #[arg(long)]
    baseline_model: String,
    #[arg(long)]
    variant: Option<String>,
    #[command(flatten)]
    out: Outputs,
}

#[derive(clap::Args)]
pub struct LockArgs {
    #[command(flatten)]
    config: ConfigArg,
    suite: String,
    /// Why the dataset changed (kept in the audit log).
    #[arg(long)]
    reason: String,
    #[arg(long)]
    actor: Option<String>,
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    config: ConfigArg,
    suite: String,
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: EvalCommand) -> Result<ExitCode> {
    match cmd {
        EvalCommand::Run(a) => {
            let a = *a;
            let opts = RunOptions {
                variant: a.variant,
                baseline: a.baseline,
                from_store: a.from_store,
                ..RunOptions::default()
            };
            execute(&a.config, &a.suite, opts, &a.out)
        }
        EvalCommand::Compare(a) => {
            let a = *a;
            let opts = RunOptions {
                variant: a.variant,
                model: Some(a.model),
                baseline_model: Some(a.baseline_model),
                ..RunOptions::default()
            };
            execute(&a.config, &a.suite, opts, &a.out)
        }
        EvalCommand::Lock(a) => lock(a),
        EvalCommand::History(a) => history(a),
        EvalCommand::Redteam(a) => redteam::run(a),
    }
}

pub(crate) fn load(config: &ConfigArg, suite: &str) -> Result<(Config, Suite)> {
    let config = super::load_config(config)?;
    let path = suite_path(&config.evals_dir, suite);
    let suite = load_suite(&path).map_err(|e| anyhow!("{e}"))?;
    Ok((config, suite))
}

fn execute(
    config: &ConfigArg,
    suite: &str,
    options: RunOptions,
    out: &Outputs,
) -> Result<ExitCode> {
    let (config, suite) = load(config, suite)?;
    let (store, _) = super::open_store(&config)?;
    let settings = RunSettings {
        options,
        use_cache: !out.no_cache,
        actor: super::prompt::default_actor(),
        concurrency: out.concurrency,
        repeat: out.repeat,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let total = suite_cases(&suite)
        * u64::from(out.repeat.unwrap_or(suite.repeat))
        * if settings.options.baseline.is_some() || settings.options.baseline_model.is_some() {
            2
        } else {
            1
        };
    let bar = progress::Bar::new(total, !out.json);
    let outcome = rt.block_on(run_suite(&config, &store, &suite, &settings, &bar));
    bar.finish();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    report(&store, &outcome, out)?;
    Ok(ExitCode::from(outcome.gate.exit_status().code()))
}

/// Cases in the dataset, for the progress bar (0 when unreadable: the run reports it).
pub(crate) fn suite_cases(suite: &Suite) -> u64 {
    use std::io::BufRead;
    std::fs::File::open(&suite.dataset_path)
        .map(|f| {
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter(|l| !l.trim().is_empty())
                .count() as u64
        })
        .unwrap_or(0)
}

/// Reports read back from the store only what they list: the terminal and the PR
/// comment the failing cases (and the baseline's rows for them), JUnit every result (one
/// testcase per result is what the format is), `--json` nothing — so a large run's
/// passing outputs are never loaded for a summary.
fn report(store: &keel_store::Store, o: &RunOutcome, out: &Outputs) -> Result<()> {
    let conn = store.conn()?;
    let failing = |run: &str| {
        keel_store::evals::eval_results_of_failing_cases(&conn, run, &o.candidate.run_id)
    };
    let needs_failing = !out.json || out.markdown.is_some();
    let (cand, base) = if needs_failing {
        let cand = failing(&o.candidate.run_id)?;
        let base = match &o.baseline {
            Some(b) => failing(&b.run_id)?,
            None => Vec::new(),
        };
        (cand, base)
    } else {
        (Vec::new(), Vec::new())
    };
    if out.json {
        println!("{}", keel_evals::report::render_json(o));
    } else {
        println!("{}", keel_evals::report::render_terminal(o, &cand, &base));
    }
    if let Some(path) = &out.junit {
        write_junit(conn.db(), o, path)?;
    }
    if let Some(path) = &out.markdown {
        std::fs::write(path, keel_evals::report::render_markdown(o, &cand, &base))
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `--junit FILE`, streamed from the store to the file (one result in memory at a time).
fn write_junit(
    conn: keel_store::sql::Db<'_>,
    o: &RunOutcome,
    path: &std::path::Path,
) -> Result<()> {
    use std::io::Write;
    let cannot = |e: &dyn std::fmt::Display| anyhow!("cannot write {}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(|e| cannot(&e))?;
    let mut w = std::io::BufWriter::new(file);
    let mut failed: Option<std::io::Error> = None;
    let run = o.candidate.run_id.as_str();
    keel_evals::report::write_junit(
        o,
        |f| keel_store::evals::each_eval_result(conn, run, f),
        &mut |s: &str| {
            if failed.is_none() {
                failed = w.write_all(s.as_bytes()).err();
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(cannot(&e));
    }
    w.flush().map_err(|e| cannot(&e))
}

fn lock(a: LockArgs) -> Result<ExitCode> {
    let (config, suite) = load(&a.config, &a.suite)?;
    let data = keel_evals::dataset::load_dataset(&suite.dataset_path, &suite.name, None, false)
        .map_err(|e| anyhow!("{e}"))?;
    let (store, _) = super::open_store(&config)?;
    let conn = store.conn()?;
    let actor = a.actor.unwrap_or_else(super::prompt::default_actor);
    let now = keel_store::prompts::now_ms();
    let ids: Vec<String> = data.cases.iter().map(|c| c.id.clone()).collect();
    if suite.dataset_hash.as_deref() == Some(data.hash.as_str()) {
        // Recorded as a version too when it was locked before versions were kept.
        let v = keel_store::datasets::record_version(
            &conn,
            &suite.name,
            &data.hash,
            &ids,
            &actor,
            Some(&a.reason),
            now,
        )?;
        println!(
            "{}: already locked at {} ({} cases, dataset v{v})",
            suite.name,
            data.hash,
            data.cases.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let previous = keel_evals::dataset::write_lock(&suite.file, &data.hash)
        .map_err(|e| anyhow!("cannot update {}: {e}", suite.file.display()))?;
    let version = keel_store::datasets::record_version(
        &conn,
        &suite.name,
        &data.hash,
        &ids,
        &actor,
        Some(&a.reason),
        now,
    )?;
    record_audit(
        &conn,
        now,
        &NewAuditEvent {
            actor: &actor,
            action: "eval.lock",
            target: &suite.name,
            from_value: previous.clone(),
            to_value: Some(data.hash.clone()),
            reason: Some(&a.reason),
            details: Some(
                serde_json::json!({"dataset": suite.dataset_path, "cases": data.cases.len(), "version": version}),
            ),
        },
    )?;
    println!(
        "{}: locked {} ({} cases, dataset v{version}){}",
        suite.name,
        data.hash,
        data.cases.len(),
        previous.map(|p| format!(", was {p}")).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn history(a: HistoryArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let name = suite_path(&config.evals_dir, &a.suite)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or(a.suite.clone());
    let (_store, conn) = super::open_store(&config)?;
    let runs = keel_store::evals::list_eval_runs(&conn, Some(&name), a.limit)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else if runs.is_empty() {
        println!("No runs of `{name}` yet — run `keel eval run {name}`.");
    } else {
        // Oldest first, so a hash locked again later (a revert) shows its newest version.
        let versions = keel_store::datasets::versions(&conn, &name)?
            .into_iter()
            .rev()
            .map(|v| (v.hash, v.version))
            .collect();
        println!("{}", keel_evals::report::render_history(&runs, &versions));
    }
    Ok(ExitCode::SUCCESS)
}
