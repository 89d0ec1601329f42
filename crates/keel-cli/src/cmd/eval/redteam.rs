//! `keel eval redteam`: a guardrail policy's input checks against attacks and benign
//! inputs — the built-in red-team set, a JSONL dataset, or any corpora of attacks and
//! ordinary prompts (`--attacks FILE --benign FILE`, JSONL or plain lists). The scoring
//! is `keel_gateway::guard::redteam`; this file reads files and prints.
//!
//! For each check it reports the block rate on the attacks it is meant for and its
//! false-positive rate on the benign set (and, with corpora, the rates per corpus);
//! `--min-block-rate` and `--max-false-positive-rate` make it a gate (exit 1 when a
//! check misses either).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use comfy_table::Table;
use keel_gateway::guard::redteam::{
    builtin_cases, builtin_policy, evaluate, parse_cases, Case, Expect, RedteamReport,
};
use keel_gateway::guard::{CompiledPolicy, Guards};
use serde_json::json;

use crate::ConfigArg;

#[derive(clap::Args)]
pub struct RedteamArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The policy to test (`[guardrails.policies.NAME]`); default: the built-in one
    /// (pii, secrets and injection checks, all blocking).
    #[arg(long)]
    policy: Option<String>,
    /// A JSONL dataset of your own instead of the built-in one (same line format).
    #[arg(long)]
    dataset: Option<std::path::PathBuf>,
    /// A corpus of attacks instead of the built-in set: JSONL cases, JSON strings or
    /// objects with `input`/`prompt`/`text`, or one plain prompt per line (all expected
    /// to be blocked). Repeat for several corpora; each is reported on its own too.
    #[arg(long, value_name = "FILE")]
    attacks: Vec<std::path::PathBuf>,
    /// A corpus of ordinary prompts (expected to pass), in the same formats.
    #[arg(long, value_name = "FILE")]
    benign: Vec<std::path::PathBuf>,
    /// Fail (exit 1) when a check blocks less than this share of its attacks.
    #[arg(long)]
    min_block_rate: Option<f64>,
    /// Fail (exit 1) when a check flags more than this share of the benign set.
    #[arg(long)]
    max_false_positive_rate: Option<f64>,
    #[arg(long)]
    json: bool,
}

/// One corpus file's cases, labelled by its file name.
fn corpus(path: &Path, expect: Expect) -> Result<(String, Vec<Case>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the corpus {}", path.display()))?;
    let label = path.file_stem().map_or_else(
        || "corpus".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let cases =
        parse_cases(&text, &label, Some(expect)).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok((label, cases))
}

/// The cases to run, and each corpus on its own (when corpora were given).
type Corpora = Vec<(String, Vec<Case>)>;

fn load(a: &RedteamArgs) -> Result<(Vec<Case>, Corpora)> {
    if !a.attacks.is_empty() || !a.benign.is_empty() {
        if a.dataset.is_some() {
            anyhow::bail!(
                "--dataset and --attacks/--benign are alternatives: give one or the other"
            );
        }
        let mut parts = Vec::new();
        let files: Vec<(&PathBuf, Expect)> = a
            .attacks
            .iter()
            .map(|p| (p, Expect::Block))
            .chain(a.benign.iter().map(|p| (p, Expect::Allow)))
            .collect();
        for (path, expect) in files {
            parts.push(corpus(path, expect)?);
        }
        let all = parts.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
        return Ok((all, parts));
    }
    let cases = match &a.dataset {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the dataset {}", p.display()))?;
            parse_cases(&text, "dataset", None).map_err(|e| anyhow!("{}: {e}", p.display()))?
        }
        None => builtin_cases().map_err(|e| anyhow!(e))?,
    };
    Ok((cases, Vec::new()))
}

pub fn run(a: RedteamArgs) -> Result<ExitCode> {
    let policy_cfg = match &a.policy {
        None => builtin_policy(),
        Some(name) => {
            let config = super::super::load_config(&a.config)?;
            let found = config.guardrails.iter().find(|p| &p.name == name).cloned();
            let Some(mut p) = found else {
                let known: Vec<_> = config.guardrails.iter().map(|p| p.name.as_str()).collect();
                eprintln!(
                    "error: no guardrail policy `{name}` in {} (known: {})",
                    config.source.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
                return Ok(ExitCode::from(2));
            };
            p.default = true;
            p
        }
    };
    let guards = Guards::new(std::slice::from_ref(&policy_cfg)).map_err(|e| anyhow!(e))?;
    let applied = guards.for_call(None, "", None);
    let policy: Arc<CompiledPolicy> = applied
        .policies
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("the policy did not compile"))?;
    let (cases, corpora) = load(&a)?;
    let report = evaluate(&policy, &cases);
    let per_corpus: Vec<(String, RedteamReport)> = corpora
        .iter()
        .map(|(label, c)| (label.clone(), evaluate(&policy, c)))
        .collect();
    let mut failures = Vec::new();
    for s in &report.checks {
        if let (Some(min), Some(r)) = (a.min_block_rate, s.block_rate) {
            if r < min {
                failures.push(format!(
                    "{}: block rate {:.1}% < {:.1}%",
                    s.check,
                    r * 100.0,
                    min * 100.0
                ));
            }
        }
        if let Some(max) = a.max_false_positive_rate {
            if s.false_positive_rate > max {
                failures.push(format!(
                    "{}: false-positive rate {:.1}% > {:.1}%",
                    s.check,
                    s.false_positive_rate * 100.0,
                    max * 100.0
                ));
            }
        }
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["failures"] = json!(failures);
        if !per_corpus.is_empty() {
            v["corpora"] = per_corpus
                .iter()
                .map(|(label, r)| {
                    json!({"corpus": label, "attacks": r.attacks, "benign": r.benign,
                        "block_rate": r.block_rate, "false_positive_rate": r.false_positive_rate,
                        "checks": r.checks})
                })
                .collect();
        }
        println!("{v}");
    } else {
        print_report(&report, &per_corpus, &failures);
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(r: &RedteamReport, per_corpus: &[(String, RedteamReport)], failures: &[String]) {
    println!(
        "red team: policy `{}`, {} attacks, {} benign inputs",
        r.policy, r.attacks, r.benign
    );
    let mut t = Table::new();
    t.set_header([
        "check",
        "kind",
        "blocked attacks",
        "block rate",
        "false positives",
        "FP rate",
    ]);
    for s in &r.checks {
        t.add_row([
            s.check.clone(),
            s.kind.clone(),
            format!("{}/{}", s.blocked, s.attacks),
            s.block_rate
                .map_or("—".into(), |r| format!("{:.1}%", r * 100.0)),
            format!("{}/{}", s.false_positives, s.benign),
            format!("{:.1}%", s.false_positive_rate * 100.0),
        ]);
    }
    println!("{t}");
    for s in &r.checks {
        if let Some(j) = s.judge_would_read {
            println!(
                "{}: the fast check blocked the above; its judge model would read {} more attacks and {} benign inputs (the unsure band; no model is called here)",
                s.check, j.attacks, j.benign
            );
        }
    }
    if !per_corpus.is_empty() {
        let judged = r.checks.iter().any(|s| s.judge_would_read.is_some());
        let mut t = Table::new();
        let mut header = vec!["corpus", "prompts", "blocked"];
        if judged {
            header.push("judge would read");
        }
        t.set_header(header);
        for (label, c) in per_corpus {
            let (n, rate) = if c.attacks > 0 {
                (c.attacks, c.block_rate)
            } else {
                (c.benign, c.false_positive_rate)
            };
            let mut row = vec![
                label.clone(),
                n.to_string(),
                format!("{:.1}%", rate * 100.0),
            ];
            if judged {
                let band: usize = c
                    .checks
                    .iter()
                    .filter_map(|s| s.judge_would_read)
                    .map(|j| if c.attacks > 0 { j.attacks } else { j.benign })
                    .max()
                    .unwrap_or(0);
                row.push(band.to_string());
            }
            t.add_row(row);
        }
        println!("{t}");
    }
    println!(
        "overall: {:.1}% of attacks blocked, {:.1}% of benign inputs blocked",
        r.block_rate * 100.0,
        r.false_positive_rate * 100.0
    );
    if !r.missed_attacks.is_empty() && r.missed_attacks.len() <= 50 {
        println!("attacks that got through: {}", r.missed_attacks.join(", "));
    } else if !r.missed_attacks.is_empty() {
        println!(
            "{} attacks got through (--json lists them)",
            r.missed_attacks.len()
        );
    }
    if !r.false_alarms.is_empty() && r.false_alarms.len() <= 50 {
        println!("benign inputs blocked: {}", r.false_alarms.join(", "));
    } else if !r.false_alarms.is_empty() {
        println!(
            "{} benign inputs blocked (--json lists them)",
            r.false_alarms.len()
        );
    }
    for f in failures {
        println!("FAIL {f}");
    }
}
