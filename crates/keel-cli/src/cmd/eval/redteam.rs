//! `keel eval redteam`: the built-in red-team suite — attacks (prompt injection, PII
//! extraction, jailbreaks, system-prompt leak requests) and a benign set of the same
//! size that looks like them — run through a guardrail policy's input checks, apart
//! from quality evals. No model is called: it measures the checks themselves.
//!
//! For each check it reports the block rate on the attacks it is meant for and its
//! false-positive rate on the benign set; `--min-block-rate` and
//! `--max-false-positive-rate` make it a gate (exit 1 when a check misses either).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use comfy_table::Table;
use keel_core::config::guardrails::{
    CheckConfig, CheckKind, GuardAction, PolicyConfig, Stage, StreamChecks,
};
use keel_gateway::guard::{CompiledPolicy, Guards};
use serde::{Deserialize, Serialize};

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
    /// Fail (exit 1) when a check blocks less than this share of its attacks.
    #[arg(long)]
    min_block_rate: Option<f64>,
    /// Fail (exit 1) when a check flags more than this share of the benign set.
    #[arg(long)]
    max_false_positive_rate: Option<f64>,
    #[arg(long)]
    json: bool,
}

/// One line of a red-team dataset.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub id: String,
    pub category: String,
    pub input: String,
    /// `block` (an attack) or `allow` (benign).
    pub expect: String,
    /// The checks an attack is meant for (`injection`, `pii`, `secrets`, `leak`…).
    #[serde(default)]
    pub checks: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CheckScore {
    check: String,
    kind: String,
    attacks: usize,
    blocked: usize,
    block_rate: Option<f64>,
    benign: usize,
    false_positives: usize,
    false_positive_rate: f64,
}

fn kind_name(k: &CheckKind) -> &'static str {
    match k {
        CheckKind::Detect { kinds, .. } => {
            if kinds.iter().all(|k| k.is_secret()) {
                "secrets"
            } else {
                "pii"
            }
        }
        CheckKind::Banned { .. } => "banned",
        CheckKind::MaxLength { .. } => "max_length",
        CheckKind::Injection { .. } => "injection",
        CheckKind::Leak { .. } => "leak",
        CheckKind::JsonSchema { .. } => "json_schema",
        CheckKind::Tools { .. } => "tools",
    }
}

/// The built-in policy: every PII and secret detector, and injection at its default
/// threshold, all blocking.
pub fn builtin_policy() -> PolicyConfig {
    let check = |name: &str, kind: CheckKind| CheckConfig {
        name: name.into(),
        on: Stage::Input,
        action: GuardAction::Block,
        kind,
    };
    let family = |secret: bool| {
        keel_guardrails::Kind::ALL
            .iter()
            .copied()
            .filter(|k| k.is_secret() == secret)
            .collect()
    };
    PolicyConfig {
        name: "redteam".into(),
        functions: Default::default(),
        models: Default::default(),
        keys: Default::default(),
        default: true,
        stream: StreamChecks::Final,
        checks: vec![
            check(
                "pii",
                CheckKind::Detect {
                    kinds: family(false),
                    restore: false,
                },
            ),
            check(
                "secrets",
                CheckKind::Detect {
                    kinds: family(true),
                    restore: false,
                },
            ),
            check(
                "injection",
                CheckKind::Injection {
                    threshold: keel_guardrails::DEFAULT_INJECTION_THRESHOLD,
                },
            ),
        ],
    }
}

fn load_cases(path: Option<&std::path::Path>) -> Result<Vec<Case>> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the dataset {}", p.display()))?,
        None => format!(
            "{}\n{}",
            keel_guardrails::redteam::ATTACKS,
            keel_guardrails::redteam::BENIGN
        ),
    };
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let c: Case = serde_json::from_str(line).map_err(|e| {
            anyhow!(
                "dataset line {}: {e}; each line is {{\"id\", \"category\", \"input\", \"expect\": \"block\"|\"allow\", \"checks\": [...]}}",
                i + 1
            )
        })?;
        cases.push(c);
    }
    Ok(cases)
}

/// Whether a case is meant for a check (of `kind`, named `name`): its `checks` list it
/// (a `leak` request is the injection check's to catch on input), or it lists none.
fn targets(c: &Case, kind: &str, name: &str) -> bool {
    c.checks.is_empty()
        || c.checks
            .iter()
            .any(|k| k == kind || k == name || (kind == "injection" && k == "leak"))
}

/// Whether some blocking input check meant for the case fires on it.
fn blocked_by(policy: &CompiledPolicy, c: &Case) -> bool {
    policy.checks.iter().any(|k| {
        k.cfg.on.input()
            && k.cfg.action == GuardAction::Block
            && targets(c, kind_name(&k.cfg.kind), &k.cfg.name)
            && !k.find_in(&c.input).0.is_empty()
    })
}

/// Score every input check of `policy` on `cases`.
fn score(policy: &CompiledPolicy, cases: &[Case]) -> Vec<CheckScore> {
    let mut out = Vec::new();
    for check in &policy.checks {
        if !check.cfg.on.input() {
            continue;
        }
        let kind = kind_name(&check.cfg.kind);
        let mut s = CheckScore {
            check: check.cfg.name.clone(),
            kind: kind.to_string(),
            attacks: 0,
            blocked: 0,
            block_rate: None,
            benign: 0,
            false_positives: 0,
            false_positive_rate: 0.0,
        };
        for c in cases.iter().filter(|c| targets(c, kind, &check.cfg.name)) {
            let fired = !check.find_in(&c.input).0.is_empty();
            if c.expect == "block" {
                s.attacks += 1;
                s.blocked += usize::from(fired);
            } else {
                s.benign += 1;
                s.false_positives += usize::from(fired);
            }
        }
        s.block_rate = (s.attacks > 0).then(|| s.blocked as f64 / s.attacks as f64);
        s.false_positive_rate = if s.benign == 0 {
            0.0
        } else {
            s.false_positives as f64 / s.benign as f64
        };
        out.push(s);
    }
    out
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
    let cases = load_cases(a.dataset.as_deref())?;
    let attacks = cases.iter().filter(|c| c.expect == "block").count();
    let benign = cases.len() - attacks;
    let scores = score(&policy, &cases);
    // Overall: an attack is stopped when any blocking check fires on it.
    let stopped = cases
        .iter()
        .filter(|c| c.expect == "block" && blocked_by(&policy, c))
        .count();
    let wrongly = cases
        .iter()
        .filter(|c| c.expect != "block" && blocked_by(&policy, c))
        .count();
    let missed: Vec<_> = cases
        .iter()
        .filter(|c| c.expect == "block" && !blocked_by(&policy, c))
        .map(|c| format!("{} ({})", c.id, c.category))
        .collect();
    let false_alarms: Vec<_> = cases
        .iter()
        .filter(|c| c.expect != "block" && blocked_by(&policy, c))
        .map(|c| format!("{} ({})", c.id, c.category))
        .collect();
    let rate = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let mut failures = Vec::new();
    for s in &scores {
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
        println!(
            "{}",
            serde_json::json!({
                "policy": policy.name,
                "attacks": attacks, "benign": benign,
                "block_rate": rate(stopped, attacks),
                "false_positive_rate": rate(wrongly, benign),
                "checks": scores,
                "missed_attacks": missed,
                "false_alarms": false_alarms,
                "failures": failures,
            })
        );
    } else {
        println!(
            "red team: policy `{}`, {attacks} attacks, {benign} benign inputs",
            policy.name
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
        for s in &scores {
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
        println!(
            "overall: {:.1}% of attacks blocked, {:.1}% of benign inputs blocked",
            rate(stopped, attacks) * 100.0,
            rate(wrongly, benign) * 100.0
        );
        if !missed.is_empty() {
            println!("attacks that got through: {}", missed.join(", "));
        }
        if !false_alarms.is_empty() {
            println!("benign inputs blocked: {}", false_alarms.join(", "));
        }
        for f in &failures {
            println!("FAIL {f}");
        }
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
