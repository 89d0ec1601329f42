//! `keel dataset …`: eval datasets that grow from production. `add --from-traces` turns
//! recorded calls (picked by the trace filters: failed evals, low scores, negative
//! feedback, a reviewer's verdict) into cases; `pull` writes the cases proposed on the
//! dashboard; `history` lists the locked versions; `sample --fresh` writes a suite of
//! recent production inputs. The conversion, dedupe and sampling are `keel_evals`
//! (`from_traces`, `fresh`); the versions and drafts `keel_store::datasets`.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use keel_core::config::review::parse_score_below;
use keel_core::trace::{Origin, TraceStatus};
use keel_evals::case::Case;
use keel_evals::from_traces::{append_cases, case_from_trace, redaction_kinds, Appended};
use keel_evals::suite::{Suite, Target};
use keel_store::TraceFilter;
use serde_json::json;

use crate::since::{format_ms, now_ms, parse_since};
use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum DatasetCommand {
    /// Append recorded calls to a suite's dataset as cases (its lock then fails until
    /// `keel eval lock SUITE --reason …`).
    Add(Box<AddArgs>),
    /// Append the cases proposed on the dashboard ("add to dataset") to the suite's file.
    Pull(PullArgs),
    /// The suite's locked dataset versions: hash, cases, ids added and removed, who, why.
    History(HistoryArgs),
    /// A stratified random sample of recent production inputs as the suite SUITE-fresh.
    Sample(SampleArgs),
}

#[derive(clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The suite: a name in the evals folder, or a path to its .toml.
    suite: String,
    /// Take the cases from recorded calls (live, successful), picked by the filters below.
    #[arg(long)]
    from_traces: bool,
    /// Calls of this function (default: the suite's target function).
    #[arg(long)]
    function: Option<String>,
    /// How far back: a duration (24h, 7d) or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    since: String,
    /// Calls this online eval judged and failed.
    #[arg(long)]
    failed_eval: Option<String>,
    /// Calls with a score below a value: METRIC=VALUE (e.g. helpful=0.5).
    #[arg(long)]
    score_below: Option<String>,
    /// `negative`: calls with a thumbs-down (a feedback value <= 0 or false).
    #[arg(long, value_name = "negative")]
    feedback: Option<String>,
    /// Calls a reviewer gave this verdict (bad, good, unsure).
    #[arg(long)]
    review_verdict: Option<String>,
    /// Most calls taken (newest first).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// A reviewer's corrected output becomes the case's `expected`.
    #[arg(long)]
    with_corrections: bool,
    /// Say what would be added without writing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct PullArgs {
    #[command(flatten)]
    config: ConfigArg,
    suite: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    config: ConfigArg,
    suite: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct SampleArgs {
    #[command(flatten)]
    config: ConfigArg,
    suite: String,
    /// How many inputs to take.
    #[arg(long, value_name = "N")]
    fresh: usize,
    /// How far back: a duration (24h, 7d) or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    since: String,
    /// The random seed (printed; the same seed repeats the draw on the same traces).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    json: bool,
}

pub fn run(c: DatasetCommand) -> Result<ExitCode> {
    match c {
        DatasetCommand::Add(a) => add(*a),
        DatasetCommand::Pull(a) => pull(a),
        DatasetCommand::History(a) => history(a),
        DatasetCommand::Sample(a) => sample(a),
    }
}

use super::eval::load;

fn target_function(suite: &Suite) -> Option<String> {
    match &suite.target {
        Target::Function { function, .. } => Some(function.clone()),
        _ => None,
    }
}

/// What an add or pull did, printed: `added 3 cases to evals/support.jsonl (2 duplicates
/// skipped, 1 without captured input); the suite's lock now fails until …`.
fn report(suite: &Suite, done: &Appended, no_input: &[String], dry_run: bool) {
    let path = suite.dataset_path.display();
    let verb = if dry_run { "would add" } else { "added" };
    let mut notes = Vec::new();
    if !done.duplicates.is_empty() {
        notes.push(format!(
            "{} duplicate{} skipped",
            done.duplicates.len(),
            if done.duplicates.len() == 1 { "" } else { "s" }
        ));
    }
    if !no_input.is_empty() {
        notes.push(format!("{} without captured input", no_input.len()));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    let lock = if !done.added.is_empty() && !dry_run && suite.dataset_hash.is_some() {
        format!(
            "; the suite's lock now fails until `keel eval lock {} --reason \"...\"`",
            suite.name
        )
    } else {
        String::new()
    };
    println!(
        "{verb} {} case{} to {path}{notes}{lock}",
        done.added.len(),
        if done.added.len() == 1 { "" } else { "s" }
    );
    for id in &done.added {
        println!("  + {id}");
    }
}

fn add(a: AddArgs) -> Result<ExitCode> {
    if !a.from_traces {
        bail!("say where the cases come from: `--from-traces` (recorded calls, picked by the filters)");
    }
    let (config, suite) = load(&a.config, &a.suite)?;
    let function = a.function.clone().or_else(|| target_function(&suite));
    if let Some(f) = &function {
        if !config.functions.contains_key(f) {
            bail!("no function `{f}` in {}", config.source.display());
        }
    }
    let negative_feedback = match a.feedback.as_deref() {
        None => false,
        Some("negative") => true,
        Some(other) => {
            bail!("--feedback `{other}`: only `negative` is known (calls with a thumbs-down)")
        }
    };
    if let Some(v) = a.review_verdict.as_deref() {
        if !["good", "bad", "unsure"].contains(&v) {
            bail!("--review-verdict `{v}` is not a verdict; use good, bad or unsure");
        }
    }
    let score_below = match a.score_below.as_deref() {
        None => None,
        Some(s) => Some(parse_score_below(s).ok_or_else(|| {
            anyhow!("--score-below `{s}` is not METRIC=VALUE; e.g. --score-below helpful=0.5")
        })?),
    };
    let filter = TraceFilter {
        since_ms: Some(parse_since(&a.since)?),
        function: function.clone(),
        origin: Some(Origin::Live),
        status: Some(TraceStatus::Ok),
        failed_eval: a.failed_eval.clone(),
        score_below,
        negative_feedback,
        review_verdict: a.review_verdict.clone(),
        limit: a.limit,
        ..TraceFilter::default()
    };
    let added_from = describe(&a, function.as_deref());
    let (store, _) = super::open_store(&config)?;
    let conn = store.conn()?;
    let traces = keel_store::list_traces(&conn, &filter)?;
    let now = now_ms();
    let mut cases: Vec<Case> = Vec::new();
    let mut no_input = Vec::new();
    for t in traces.iter().rev() {
        let correction = if a.with_corrections {
            keel_store::review::labels_for_trace(&conn, &t.id)?
                .into_iter()
                .rev()
                .find_map(|l| l.correction)
        } else {
            None
        };
        let kinds = redaction_kinds(&config, t.function.as_deref());
        match case_from_trace(t, correction.as_deref(), &kinds, &added_from, now) {
            Ok(c) => cases.push(c),
            Err(_) => no_input.push(t.id.clone()),
        }
    }
    let done = if a.dry_run {
        keel_evals::from_traces::would_append(&suite.dataset_path, cases)
            .map_err(|e| anyhow!("{e}"))?
    } else {
        append_cases(&suite.dataset_path, cases).map_err(|e| anyhow!("{e}"))?
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "suite": suite.name,
                "dataset": suite.dataset_path,
                "matched": traces.len(),
                "added": done.added,
                "duplicates": done.duplicates,
                "no_input": no_input,
                "dry_run": a.dry_run,
                "lock_fails_until_relocked": !done.added.is_empty() && !a.dry_run && suite.dataset_hash.is_some(),
            }))?
        );
    } else if traces.is_empty() {
        println!("no traces matched ({added_from}); nothing added");
    } else {
        report(&suite, &done, &no_input, a.dry_run);
    }
    Ok(ExitCode::SUCCESS)
}

/// How the calls were picked, kept in each case's metadata.
fn describe(a: &AddArgs, function: Option<&str>) -> String {
    let mut parts = vec![format!("since={}", a.since)];
    if let Some(f) = function {
        parts.push(format!("function={f}"));
    }
    for (k, v) in [
        ("failed-eval", &a.failed_eval),
        ("score-below", &a.score_below),
        ("feedback", &a.feedback),
        ("review-verdict", &a.review_verdict),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    parts.join(" ")
}

fn pull(a: PullArgs) -> Result<ExitCode> {
    let (config, suite) = load(&a.config, &a.suite)?;
    let (store, _) = super::open_store(&config)?;
    let conn = store.conn()?;
    let drafts = keel_store::datasets::pending_drafts(&conn, &suite.name)?;
    let mut cases = Vec::new();
    for d in &drafts {
        let c: Case = serde_json::from_str(&d.case_json)
            .map_err(|e| anyhow!("the draft of trace {} is not a case: {e}", d.trace_id))?;
        cases.push(c);
    }
    let done = append_cases(&suite.dataset_path, cases).map_err(|e| anyhow!("{e}"))?;
    let ids: Vec<i64> = drafts.iter().map(|d| d.id).collect();
    keel_store::datasets::mark_pulled(&conn, &ids, now_ms())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"suite": suite.name, "added": done.added, "duplicates": done.duplicates})
            )?
        );
    } else if drafts.is_empty() {
        println!("no cases proposed for {} (the dashboard's trace and review pages have \"add to dataset\")", suite.name);
    } else {
        report(&suite, &done, &[], false);
    }
    Ok(ExitCode::SUCCESS)
}

fn history(a: HistoryArgs) -> Result<ExitCode> {
    let (config, suite) = load(&a.config, &a.suite)?;
    let (_store, conn) = super::open_store(&config)?;
    let versions = keel_store::datasets::versions(&conn, &suite.name)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if versions.is_empty() {
        println!(
            "no locked versions of {} recorded yet (`keel eval lock {} --reason ...` records one)",
            suite.name, suite.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let list = |ids: &[String]| match ids.len() {
        0 => "—".to_string(),
        n if n <= 4 => ids.join(", "),
        n => format!("{}, … ({n})", ids[..3].join(", ")),
    };
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "version", "locked", "hash", "cases", "added", "removed", "by", "reason",
    ]);
    for v in &versions {
        t.add_row([
            format!("v{}", v.version),
            format_ms(v.at_ms),
            v.hash.chars().take(19).collect::<String>(),
            v.cases.to_string(),
            list(&v.added),
            list(&v.removed),
            v.actor.clone(),
            v.reason.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

fn sample(a: SampleArgs) -> Result<ExitCode> {
    if a.fresh == 0 {
        bail!("--fresh N: how many inputs to take (at least 1)");
    }
    let (config, suite) = load(&a.config, &a.suite)?;
    let function = target_function(&suite);
    let (_store, conn) = super::open_store(&config)?;
    let filter = TraceFilter {
        since_ms: Some(parse_since(&a.since)?),
        function: function.clone(),
        origin: Some(Origin::Live),
        status: Some(TraceStatus::Ok),
        limit: 20_000,
        ..TraceFilter::default()
    };
    let traces: Vec<_> = keel_store::list_traces(&conn, &filter)?
        .into_iter()
        .filter(|t| t.input.is_some())
        .collect();
    let seed = a.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let picked = keel_evals::fresh::stratified(
        traces,
        a.fresh,
        |t| (t.function.clone(), t.feature.clone()),
        &mut rng,
    );
    let now = now_ms();
    let mut lines = Vec::new();
    let mut strata: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &picked {
        let kinds = redaction_kinds(&config, t.function.as_deref());
        if let Ok(c) = case_from_trace(
            t,
            None,
            &kinds,
            &format!("fresh sample since={}", a.since),
            now,
        ) {
            *strata
                .entry(format!(
                    "{}/{}",
                    t.function.as_deref().unwrap_or("-"),
                    t.feature.as_deref().unwrap_or("-")
                ))
                .or_default() += 1;
            lines.push(serde_json::to_string(&c)?);
        }
    }
    if lines.is_empty() && a.json {
        println!("{}", json!({"suite": suite.name, "cases": 0, "seed": seed}));
        return Ok(ExitCode::SUCCESS);
    }
    if lines.is_empty() {
        println!(
            "no traces matched (live, ok, with captured input, {} since {}); nothing written",
            function.as_deref().unwrap_or("any function"),
            a.since
        );
        return Ok(ExitCode::SUCCESS);
    }
    let replaced = suite
        .file
        .with_file_name(format!(
            "{}.jsonl",
            keel_evals::fresh::fresh_name(&suite.name)
        ))
        .exists();
    let (toml, data) = keel_evals::fresh::write_fresh_suite(&suite.file, &suite.name, &lines)
        .map_err(|e| anyhow!(e))?;
    let name = keel_evals::fresh::fresh_name(&suite.name);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"suite": name, "file": toml, "dataset": data, "cases": lines.len(), "seed": seed, "strata": strata, "replaced": replaced})
            )?
        );
    } else {
        let what = if replaced {
            format!(
                "replaced {} with {} fresh cases",
                data.display(),
                lines.len()
            )
        } else {
            format!("wrote {} fresh cases to {}", lines.len(), data.display())
        };
        println!(
            "{what} (seed {seed}; by function/feature: {})",
            strata
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("suite {} ({}) is unlocked: review it, `keel eval lock {name} --reason \"...\"`, then `keel eval run {name}`", name, toml.display());
    }
    Ok(ExitCode::SUCCESS)
}
