//! The suite's gate: the `[gate]` table of a suite file, checked against a run and,
//! when there is one, its comparison with a baseline.
//!
//! Why it exists: CI needs one yes/no with a reason. `keel eval run` exits 0 when every rule
//! holds, 1 when one fails (each failure names the rule, the bar, the actual value and the
//! distance), 2 on error ([`ExitStatus`]).
//!
//! ```toml
//! [gate]
//! min_pass_rate = 0.8                 # fraction of cases passing (point estimate)
//! min_metric = { accuracy = 0.8 }     # mean of each named metric (point estimate)
//! max_regression = 0.05               # largest allowed *significant* drop vs baseline
//! max_cost_increase_pct = 10          # mean cost per case vs baseline, percent
//! max_p95_latency_ms = 2000           # nearest-rank p95 of the run
//! allow_unpriced = false              # let max_cost_increase_pct pass on cases without a price
//! ```
//!
//! A rule that cannot be checked for want of prices fails with that reason: a candidate
//! on a model without a price would otherwise pass `max_cost_increase_pct` unseen. A
//! suite that accepts unpriced cases says `allow_unpriced = true` (the rule then judges
//! the pairs priced in both runs, and is not checked when there are none).
//!
//! Decision: `min_pass_rate` and `min_metric` compare the **point estimate**, not the low
//! end of the interval. The gate asks "did this run meet the bar"; the interval is reported
//! beside it. Gating on the low end would fail small suites by construction (8/10 has a 95%
//! low end of 0.49) and make the bar's meaning depend on the suite's size. Regressions, where
//! noise matters, are judged by the paired tests instead: only a significant drop counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, MetricDelta, RunStats};

/// Slack for float comparisons at the bar (8/10 meets 0.8).
const EPSILON: f64 = 1e-9;

/// The `[gate]` table of a suite file. Every rule is optional; an empty gate always passes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateRules {
    /// Minimum pass rate, a fraction in [0, 1].
    pub min_pass_rate: Option<f64>,
    /// Minimum mean per metric; `score` names the overall score unless a metric is so named.
    pub min_metric: BTreeMap<String, f64>,
    /// Largest allowed significant drop in pass rate, score or any metric vs the baseline,
    /// absolute (0.05 = 5 points).
    pub max_regression: Option<f64>,
    /// Largest allowed increase of mean cost per case vs the baseline, in percent.
    pub max_cost_increase_pct: Option<f64>,
    /// Largest allowed p95 latency of the run, milliseconds.
    pub max_p95_latency_ms: Option<u64>,
    /// Whether `max_cost_increase_pct` may pass when cases are unpriced.
    pub allow_unpriced: bool,
}

impl GateRules {
    /// Check ranges; the error names the key (`gate.…`), the value and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(rate) = self.min_pass_rate.filter(|r| !(0.0..=1.0).contains(r)) {
            let hint = match rate {
                r if (1.0..=100.0).contains(&r) => format!(" (did you mean {}?)", r / 100.0),
                _ => String::new(),
            };
            return Err(format!(
                "gate.min_pass_rate must be a fraction between 0 and 1 (0.8 = 80%), got {rate}{hint}"
            ));
        }
        let bad_metric = |(name, min): &(&String, &f64)| name.trim().is_empty() || !min.is_finite();
        if let Some((name, min)) = self.min_metric.iter().find(bad_metric) {
            return Err(format!(
                "gate.min_metric.{name} must name a metric and be a finite number, got {min}"
            ));
        }
        non_negative(
            "max_regression",
            self.max_regression,
            "an absolute drop (0.05 = 5 points)",
        )?;
        non_negative(
            "max_cost_increase_pct",
            self.max_cost_increase_pct,
            "a percentage (10 = 10%)",
        )?;
        if self.max_p95_latency_ms == Some(0) {
            return Err(
                "gate.max_p95_latency_ms must be above 0 ms (remove it to not gate on latency)"
                    .into(),
            );
        }
        Ok(())
    }
}

fn non_negative(key: &str, value: Option<f64>, what: &str) -> Result<(), String> {
    match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => {
            Err(format!("gate.{key} must be {what} ≥ 0, got {v}"))
        }
        _ => Ok(()),
    }
}

/// One broken rule, with enough to print a line and to render a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateFailure {
    /// The rule's key, e.g. `min_pass_rate` or `min_metric.accuracy`.
    pub rule: String,
    /// The bar, e.g. `≥ 80.0%`.
    pub expected: String,
    /// What the run did, e.g. `72.0%`.
    pub actual: String,
    /// The distance to the bar, e.g. `8.0 points`.
    pub by: String,
    /// One sentence: "pass rate 72.0% is below min_pass_rate 80.0% (by 8.0 points)".
    pub message: String,
}

/// The gate's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateVerdict {
    pub passed: bool,
    pub failures: Vec<GateFailure>,
    /// One line per rule looked at, including "not checked (no baseline)".
    pub checked: Vec<String>,
}

impl GateVerdict {
    /// [`ExitStatus::Pass`] or [`ExitStatus::Fail`].
    pub fn exit_status(&self) -> ExitStatus {
        if self.passed {
            ExitStatus::Pass
        } else {
            ExitStatus::Fail
        }
    }
}

/// How `keel eval run` ends; the CLI maps it to the process exit code ([`ExitStatus::code`]):
/// 0 the gate holds, 1 the gate fails, 2 the run could not be done (config, dataset,
/// provider or I/O error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ExitStatus {
    Pass = 0,
    Fail = 1,
    Error = 2,
}

impl ExitStatus {
    pub fn code(&self) -> u8 {
        *self as u8
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn points(fraction: f64) -> String {
    format!("{:.1} points", fraction * 100.0)
}

/// A fraction through `as_fraction` (percent or points), anything else with 3 decimals.
fn shown(x: f64, fraction: bool, as_fraction: fn(f64) -> String) -> String {
    if fraction {
        as_fraction(x)
    } else {
        format!("{x:.3}")
    }
}

fn dollars(nanos: f64) -> String {
    format!("${:.6}", nanos / 1e9)
}

#[derive(Default)]
struct Checker {
    failures: Vec<GateFailure>,
    checked: Vec<String>,
}

impl Checker {
    fn fail(
        &mut self,
        rule: String,
        expected: String,
        actual: String,
        by: String,
        message: String,
    ) {
        self.checked.push(format!("{rule}: FAILED — {message}"));
        self.failures.push(GateFailure {
            rule,
            expected,
            actual,
            by,
            message,
        });
    }

    fn ok(&mut self, line: String) {
        self.checked.push(line);
    }

    /// `max_regression` for one quantity; `fraction` formats it as a percentage.
    fn regression(&mut self, what: &str, change: Change, max: f64, fraction: bool) {
        let show = |x: f64| shown(x, fraction, percent);
        let amount = |x: f64| shown(x, fraction, points);
        let drop = change.baseline - change.candidate;
        let rule = format!("max_regression ({what})");
        let (from, to, p) = (
            show(change.baseline),
            show(change.candidate),
            change.p_value,
        );
        if drop > max + EPSILON && change.significant {
            let (bar, by) = (format!("drop ≤ {}", amount(max)), amount(drop - max));
            let message = format!(
                "{what} dropped {} vs baseline ({from} → {to}, p={p:.4}), more than max_regression {} (by {by})",
                amount(drop),
                amount(max),
            );
            self.fail(rule, bar, amount(drop), by, message);
        } else if drop > EPSILON && !change.significant {
            let line = format!(
                "{rule}: ok — dropped {} but not significant (p={p:.4})",
                amount(drop)
            );
            self.ok(line);
        } else {
            let line = format!(
                "{rule}: ok — {from} → {to} (p={p:.4}), allowed drop {}",
                amount(max)
            );
            self.ok(line);
        }
    }

    fn min_pass_rate(&mut self, min: f64, stats: &RunStats) {
        let rate = stats.pass_rate.estimate;
        if rate + EPSILON < min {
            let by = points(min - rate);
            let message = format!(
                "pass rate {} is below min_pass_rate {} (by {by})",
                percent(rate),
                percent(min)
            );
            let expected = format!("≥ {}", percent(min));
            self.fail("min_pass_rate".into(), expected, percent(rate), by, message);
        } else {
            self.ok(format!(
                "min_pass_rate: ok — pass rate {} ≥ {}",
                percent(rate),
                percent(min)
            ));
        }
    }

    fn min_metric(&mut self, name: &str, min: f64, stats: &RunStats) {
        let (rule, bar) = (format!("min_metric.{name}"), format!("≥ {min:.3}"));
        match stats.metric(name) {
            None => {
                let message = format!(
                    "metric {name} was not reported by this run, so {rule} {min:.3} cannot hold"
                );
                self.fail(rule, bar, "missing".into(), "n/a".into(), message);
            }
            Some(ci) if ci.estimate + EPSILON < min => {
                let (value, by) = (ci.estimate, min - ci.estimate);
                let message =
                    format!("metric {name} {value:.3} is below {rule} {min:.3} (by {by:.3})");
                self.fail(
                    rule,
                    bar,
                    format!("{value:.3}"),
                    format!("{by:.3}"),
                    message,
                );
            }
            Some(ci) => self.ok(format!("{rule}: ok — {:.3} ≥ {min:.3}", ci.estimate)),
        }
    }

    fn max_regression(&mut self, max: f64, comparison: Option<&Comparison>) {
        let Some(cmp) = comparison else {
            return self.ok("max_regression: not checked (no baseline)".into());
        };
        let rate = &cmp.pass_rate;
        let change = Change {
            baseline: rate.baseline.estimate,
            candidate: rate.candidate.estimate,
            p_value: rate.p_value,
            significant: rate.significant,
        };
        self.regression("pass rate", change, max, true);
        self.regression("score", Change::of(&cmp.score), max, false);
        for (name, delta) in &cmp.metrics {
            self.regression(&format!("metric {name}"), Change::of(delta), max, false);
        }
    }

    fn max_cost_increase(
        &mut self,
        max: f64,
        comparison: Option<&Comparison>,
        allow_unpriced: bool,
    ) {
        const RULE: &str = "max_cost_increase_pct";
        let Some(cmp) = comparison else {
            return self.ok(format!("{RULE}: not checked (no baseline)"));
        };
        let unpriced = cmp.paired_cases.saturating_sub(cmp.cost_cases);
        if unpriced > 0 && !allow_unpriced {
            let message = format!(
                "{RULE} cannot be checked: {unpriced} of {} paired cases have no price in the candidate or the baseline run; give the model a price ([models.NAME] input_price_per_mtok / output_price_per_mtok) or set allow_unpriced = true in [gate]",
                cmp.paired_cases
            );
            let (bar, actual) = (format!("≤ +{max:.1}%"), "unpriced".to_string());
            return self.fail(
                RULE.into(),
                bar,
                actual,
                format!("{unpriced} unpriced cases"),
                message,
            );
        }
        let Some(cost) = cmp.cost_per_case else {
            return self.ok(format!(
                "{RULE}: not checked (no case priced in both runs; allow_unpriced)"
            ));
        };
        let Some(pct) = cost.change_pct else {
            if cost.candidate > 0.0 {
                let message = format!(
                    "cost per case rose from $0 in the baseline to {}: {RULE} {max:.1}% cannot hold",
                    dollars(cost.candidate)
                );
                let (bar, actual) = (format!("≤ +{max:.1}%"), "from $0".to_string());
                return self.fail(RULE.into(), bar, actual, dollars(cost.candidate), message);
            }
            return self.ok(format!("{RULE}: ok — $0 in both runs"));
        };
        if pct > max + EPSILON {
            let by = format!("{:.1} percentage points", pct - max);
            let message = format!(
                "cost per case rose {pct:.1}% vs baseline ({} → {}), more than {RULE} {max:.1}% (by {by})",
                dollars(cost.baseline),
                dollars(cost.candidate),
            );
            let (bar, actual) = (format!("≤ +{max:.1}%"), format!("{pct:+.1}%"));
            self.fail(RULE.into(), bar, actual, by, message);
        } else {
            self.ok(format!("{RULE}: ok — {pct:+.1}% ≤ +{max:.1}%"));
        }
    }

    fn max_p95_latency(&mut self, max: u64, stats: &RunStats) {
        const RULE: &str = "max_p95_latency_ms";
        match stats.latency_p95_ms {
            None => self.ok(format!("{RULE}: not checked (no cases)")),
            Some(p95) if p95 > max => {
                let by = format!("{} ms", p95 - max);
                let message = format!("p95 latency {p95} ms is above {RULE} {max} ms (by {by})");
                let (bar, actual) = (format!("≤ {max} ms"), format!("{p95} ms"));
                self.fail(RULE.into(), bar, actual, by, message);
            }
            Some(p95) => self.ok(format!("{RULE}: ok — {p95} ms ≤ {max} ms")),
        }
    }
}

/// A before/after pair judged by `max_regression`.
#[derive(Clone, Copy)]
struct Change {
    baseline: f64,
    candidate: f64,
    p_value: f64,
    significant: bool,
}

impl Change {
    fn of(delta: &MetricDelta) -> Self {
        Change {
            baseline: delta.baseline.estimate,
            candidate: delta.candidate.estimate,
            p_value: delta.p_value,
            significant: delta.significant,
        }
    }
}

/// Check `rules` against a run's `stats` and, when a baseline ran, its `comparison`.
///
/// Rules needing a baseline (`max_regression`, `max_cost_increase_pct`) are listed in
/// `checked` as "not checked (no baseline)" without one. A cost rule that cannot be checked
/// because cases are unpriced fails, unless `allow_unpriced`. A metric named in
/// `min_metric` that the run did not report fails.
pub fn check(rules: &GateRules, stats: &RunStats, comparison: Option<&Comparison>) -> GateVerdict {
    let mut gate = Checker::default();
    if let Some(min) = rules.min_pass_rate {
        gate.min_pass_rate(min, stats);
    }
    for (name, &min) in &rules.min_metric {
        gate.min_metric(name, min, stats);
    }
    if let Some(max) = rules.max_regression {
        gate.max_regression(max, comparison);
    }
    if let Some(max) = rules.max_cost_increase_pct {
        gate.max_cost_increase(max, comparison, rules.allow_unpriced);
    }
    if let Some(max) = rules.max_p95_latency_ms {
        gate.max_p95_latency(max, stats);
    }
    GateVerdict {
        passed: gate.failures.is_empty(),
        failures: gate.failures,
        checked: gate.checked,
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
