//! What every reporter shows, computed once: the metric rows (with or without a
//! baseline), the failing cases with their reasons and outputs, and the small formatters
//! (percent, interval, dollars, latency, previews).

use std::collections::{BTreeMap, BTreeSet};

use keel_core::money::Nanos;
use keel_store::evals::EvalResult;

use crate::assert::AssertionResult;
use crate::compare::{CostSummary, MetricDelta};
use crate::runner::{ArmRun, RunOutcome};
use crate::stats::Interval;

/// One line of the metrics table. `baseline`, `delta`, `p_value` and `verdict` are `None`
/// without a baseline (and `p_value`/`verdict` for rows without a test: cost, latency).
pub(crate) struct MetricRow {
    pub name: String,
    pub baseline: Option<String>,
    pub candidate: String,
    pub delta: Option<String>,
    pub p_value: Option<String>,
    pub verdict: Option<&'static str>,
}

/// The table's header: with a baseline, the comparison columns.
pub(crate) fn metric_header(o: &RunOutcome) -> Vec<String> {
    let level = format!("{:.0}% CI", o.candidate.stats.pass_rate.level * 100.0);
    if o.baseline.is_some() {
        [
            "metric",
            "baseline",
            "candidate",
            "delta",
            "p-value",
            "significance",
        ]
        .map(String::from)
        .to_vec()
    } else {
        vec!["metric".into(), format!("value [{level}]")]
    }
}

/// A row's cells in header order.
pub(crate) fn metric_cells(row: &MetricRow, with_baseline: bool) -> Vec<String> {
    let dash = || "—".to_string();
    if !with_baseline {
        return vec![row.name.clone(), row.candidate.clone()];
    }
    vec![
        row.name.clone(),
        row.baseline.clone().unwrap_or_else(dash),
        row.candidate.clone(),
        row.delta.clone().unwrap_or_else(dash),
        row.p_value.clone().unwrap_or_else(dash),
        row.verdict.map(String::from).unwrap_or_else(dash),
    ]
}

pub(crate) fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

pub(crate) fn pct_ci(i: &Interval) -> String {
    format!(
        "{} [{:.1}–{:.1}]",
        percent(i.estimate),
        i.low * 100.0,
        i.high * 100.0
    )
}

pub(crate) fn num_ci(i: &Interval) -> String {
    format!("{:.3} [{:.3}–{:.3}]", i.estimate, i.low, i.high)
}

pub(crate) fn p_value(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

fn verdict(significant: bool) -> &'static str {
    if significant {
        "significant"
    } else {
        "n.s."
    }
}

/// Nano-dollars (a mean, so fractional) as exact dollars of the rounded amount.
pub(crate) fn dollars(nanos: f64) -> String {
    Nanos(nanos.round() as i64).to_string()
}

fn signed_dollars(nanos: f64) -> String {
    let sign = if nanos < 0.0 { "-" } else { "+" };
    format!("{sign}{}", dollars(nanos.abs()))
}

/// Mean cost per case; `unpriced (n cases)` when no case is priced, never `$0`.
pub(crate) fn cost_cell(cost: &CostSummary) -> String {
    match cost.mean_per_case_nanos {
        None if cost.unpriced_cases == 0 => "—".into(),
        None => format!("unpriced ({} cases)", cost.unpriced_cases),
        Some(mean) if cost.unpriced_cases == 0 => dollars(mean),
        Some(mean) => format!("{} ({} unpriced)", dollars(mean), cost.unpriced_cases),
    }
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v} ms"))
}

fn ms_delta(b: Option<u64>, c: Option<u64>) -> Option<String> {
    let (b, c) = (i128::from(b?), i128::from(c?));
    Some(format!("{:+} ms", c - b))
}

fn delta_row(name: String, d: &MetricDelta) -> MetricRow {
    MetricRow {
        name,
        baseline: Some(num_ci(&d.baseline)),
        candidate: num_ci(&d.candidate),
        delta: Some(format!(
            "{:+.3} [{:+.3}, {:+.3}]",
            d.delta, d.delta_ci.low, d.delta_ci.high
        )),
        p_value: Some(p_value(d.p_value)),
        verdict: Some(verdict(d.significant)),
    }
}

fn plain(name: String, baseline: Option<String>, candidate: String) -> MetricRow {
    MetricRow {
        name,
        baseline,
        candidate,
        delta: None,
        p_value: None,
        verdict: None,
    }
}

/// Pass rate, score, each metric, cost per case and latency, compared with the baseline
/// on the paired cases when there is one.
pub(crate) fn metric_rows(o: &RunOutcome) -> Vec<MetricRow> {
    let cand = &o.candidate.stats;
    let base = o.baseline.as_ref().map(|b| &b.stats);
    let cmp = o.comparison.as_ref();
    let mut rows = Vec::new();
    match cmp {
        Some(c) => {
            let r = &c.pass_rate;
            rows.push(MetricRow {
                name: "pass rate".into(),
                baseline: Some(pct_ci(&r.baseline)),
                candidate: pct_ci(&r.candidate),
                delta: Some(format!("{:+.1} pts", r.delta * 100.0)),
                p_value: Some(p_value(r.p_value)),
                verdict: Some(verdict(r.significant)),
            });
            rows.push(delta_row("score".into(), &c.score));
        }
        None => {
            rows.push(plain(
                "pass rate".into(),
                base.map(|b| pct_ci(&b.pass_rate)),
                pct_ci(&cand.pass_rate),
            ));
            rows.push(plain(
                "score".into(),
                base.map(|b| num_ci(&b.score)),
                num_ci(&cand.score),
            ));
        }
    }
    let names: BTreeSet<&String> = cand
        .metrics
        .keys()
        .chain(cmp.into_iter().flat_map(|c| c.metrics.keys()))
        .collect();
    for name in names {
        match (
            cmp.and_then(|c| c.metrics.get(name)),
            cand.metrics.get(name),
        ) {
            (Some(d), _) => rows.push(delta_row(name.clone(), d)),
            (None, Some(ci)) => rows.push(plain(
                name.clone(),
                base.and_then(|b| b.metrics.get(name)).map(num_ci),
                num_ci(ci),
            )),
            (None, None) => {}
        }
    }
    match cmp.and_then(|c| c.cost_per_case.map(|d| (c, d))) {
        Some((c, d)) => {
            let name = if c.cost_cases < c.paired_cases {
                format!(
                    "cost/case ({} of {} pairs priced)",
                    c.cost_cases, c.paired_cases
                )
            } else {
                "cost/case".into()
            };
            let pct = d
                .change_pct
                .map(|p| format!(" ({p:+.1}%)"))
                .unwrap_or_default();
            rows.push(MetricRow {
                delta: Some(format!("{}{pct}", signed_dollars(d.delta))),
                ..plain(name, Some(dollars(d.baseline)), dollars(d.candidate))
            });
        }
        None => rows.push(plain(
            "cost/case".into(),
            base.map(|b| cost_cell(&b.cost)),
            cost_cell(&cand.cost),
        )),
    }
    let latency = [
        (
            "latency p50",
            base.and_then(|b| b.latency_p50_ms),
            cand.latency_p50_ms,
        ),
        (
            "latency p95",
            base.and_then(|b| b.latency_p95_ms),
            cand.latency_p95_ms,
        ),
    ];
    for (name, b, c) in latency {
        rows.push(MetricRow {
            delta: ms_delta(b, c),
            ..plain(name.into(), base.map(|_| ms(b)), ms(c))
        });
    }
    rows
}

/// What an arm is: `label (release …, prompt vN, upstream …)`.
pub(crate) fn arm_line(arm: &ArmRun) -> String {
    let mut parts = Vec::new();
    if let Some(release) = &arm.release_id {
        parts.push(format!("release {release}"));
    }
    if let Some(v) = arm.prompt_version {
        parts.push(format!("prompt v{v}"));
    }
    if let Some(upstream) = &arm.upstream_model {
        parts.push(format!("upstream {upstream}"));
    }
    if parts.is_empty() {
        arm.label.clone()
    } else {
        format!("{} ({})", arm.label, parts.join(", "))
    }
}

/// `sha256:1a2b3c4d5e6f` from a full content hash.
pub(crate) fn short_hash(hash: &str) -> String {
    let (prefix, hex) = hash.split_once(':').unwrap_or(("", hash));
    let short: String = hex.chars().take(12).collect();
    if prefix.is_empty() {
        short
    } else {
        format!("{prefix}:{short}")
    }
}

/// At most `max` characters, with `…` when cut; surrounding whitespace trimmed.
pub(crate) fn preview(text: &str, max: usize) -> String {
    let text = text.trim();
    let mut out: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// One case that failed in the candidate (by the runner's rule across repeats).
pub(crate) struct FailingCase<'a> {
    pub case_id: &'a str,
    /// Passed in the baseline, fails now.
    pub regression: bool,
    pub failed_repeats: usize,
    pub repeats: usize,
    /// `name: reason` of every failing assertion, deduplicated, in order.
    pub reasons: Vec<String>,
    /// The call's error, when the call failed.
    pub error: Option<&'a str>,
    /// The first failing repeat's output.
    pub output: Option<&'a str>,
    /// For a regression, the baseline's output for the same case.
    pub baseline_output: Option<&'a str>,
}

/// The failing assertions of one result as `name: reason` lines.
pub(crate) fn failing_reasons(result: &EvalResult) -> Vec<String> {
    match serde_json::from_str::<Vec<AssertionResult>>(&result.assertions_json) {
        Ok(list) => list
            .iter()
            .filter(|a| !a.pass)
            .map(|a| format!("{}: {}", a.name, a.reason))
            .collect(),
        Err(e) => vec![format!("(the assertion results could not be read: {e})")],
    }
}

/// The candidate's failing cases: regressions first, then by case id. A case fails as the
/// runner decided (its record); without a record, when most of its repeats failed.
pub(crate) fn failing_cases<'a>(
    o: &'a RunOutcome,
    candidate: &'a [EvalResult],
    baseline: &'a [EvalResult],
) -> Vec<FailingCase<'a>> {
    let mut rows: BTreeMap<&str, Vec<&EvalResult>> = BTreeMap::new();
    for r in candidate {
        rows.entry(r.case_id.as_str()).or_default().push(r);
    }
    for record in &o.candidate.records {
        rows.entry(record.case_id.as_str()).or_default();
    }
    let regressions: BTreeSet<&str> = o
        .comparison
        .iter()
        .flat_map(|c| c.regressions.iter().map(String::as_str))
        .collect();
    let mut cases: Vec<FailingCase<'a>> = rows
        .into_iter()
        .filter_map(|(id, rows)| {
            let failed: Vec<&EvalResult> = rows.iter().copied().filter(|r| !r.pass).collect();
            let record = o.candidate.records.iter().find(|r| r.case_id == id);
            let fails = match record {
                Some(r) => !r.pass,
                None => failed.len() * 2 > rows.len(),
            };
            if !fails {
                return None;
            }
            let mut reasons: Vec<String> = Vec::new();
            for reason in failed.iter().flat_map(|r| failing_reasons(r)) {
                if !reasons.contains(&reason) {
                    reasons.push(reason);
                }
            }
            let first = failed.first().copied();
            let regression = regressions.contains(id);
            let baseline_output = regression
                .then(|| {
                    let same = |b: &&EvalResult| b.case_id == id;
                    let repeat = first.map_or(0, |f| f.repeat_idx);
                    baseline
                        .iter()
                        .filter(same)
                        .find(|b| b.repeat_idx == repeat)
                        .or_else(|| baseline.iter().find(same))
                        .and_then(|b| b.output.as_deref())
                })
                .flatten();
            Some(FailingCase {
                case_id: id,
                regression,
                failed_repeats: failed.len(),
                repeats: rows.len(),
                reasons,
                error: rows.iter().find_map(|r| r.error.as_deref()),
                output: first.and_then(|f| f.output.as_deref()),
                baseline_output,
            })
        })
        .collect();
    cases.sort_by_key(|c| !c.regression);
    cases
}

/// `1 rule` / `2 rules`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
