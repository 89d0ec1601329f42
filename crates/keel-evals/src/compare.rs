//! One run's summary, and a candidate run compared with a baseline run case by case.
//!
//! Why it exists: the gate and the reporters need the same numbers — pass rate, scores,
//! cost and latency, each with its uncertainty — and a comparison that is paired on case
//! ids, so a candidate is judged on exactly the inputs the baseline saw.
//!
//! What it owns: [`CaseRecord`] (what the runner hands over per case), [`summarize`] into
//! [`RunStats`], and [`compare`] into [`Comparison`].
//!
//! With `--repeat N` the runner passes one record per case holding the mean over the
//! repeats: `score`, every metric, cost and latency are means, and `pass` is whether the
//! case passed in a majority of the repeats (the runner documents its exact rule).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::stats::{
    bootstrap_mean, mcnemar_exact, paired_scores, percentile, wilson, Interval, DEFAULT_RESAMPLES,
};

/// The metric name under which [`CaseRecord::score`] is looked up by [`RunStats::metric`]
/// when no metric of that name exists.
pub const SCORE_METRIC: &str = "score";

/// One case's result, as the runner hands it over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub case_id: String,
    pub pass: bool,
    /// The case's overall score in [0, 1] (mean of its assertions' scores).
    pub score: f64,
    /// Named metrics (e.g. `accuracy`); a case may lack a metric that does not apply to it.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Cost in nano-dollars; `None` when unpriced — never counted as $0.
    #[serde(default)]
    pub cost_nanos: Option<i64>,
    pub latency_ms: u64,
}

/// Cost of a run; only priced cases enter the mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostSummary {
    pub priced_cases: usize,
    pub unpriced_cases: usize,
    /// Sum over priced cases (saturating), nano-dollars.
    pub total_nanos: i64,
    /// Mean over priced cases; `None` when no case is priced.
    pub mean_per_case_nanos: Option<f64>,
}

/// Summary of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    pub cases: usize,
    pub passed: u64,
    /// Wilson interval of the pass rate.
    pub pass_rate: Interval,
    /// Bootstrap interval of the mean score.
    pub score: Interval,
    /// Bootstrap interval of each metric's mean, over the cases that report it.
    pub metrics: BTreeMap<String, Interval>,
    pub cost: CostSummary,
    /// Nearest-rank percentiles; `None` for an empty run.
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
}

impl RunStats {
    /// A named metric; `score` falls back to the overall score when no metric is so named.
    pub fn metric(&self, name: &str) -> Option<&Interval> {
        self.metrics
            .get(name)
            .or_else(|| (name == SCORE_METRIC).then_some(&self.score))
    }
}

/// Derive a per-statistic seed so that metrics do not share one random stream (FNV-1a).
fn derive_seed(seed: u64, label: &str) -> u64 {
    label
        .bytes()
        .fold(seed ^ 0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn latency_percentile(latencies: &[u64], p: f64) -> Option<u64> {
    let values: Vec<f64> = latencies.iter().map(|&l| l as f64).collect();
    percentile(&values, p).map(|v| v as u64)
}

/// Summarize a run at confidence `level` (0.95 = 95%), deterministically for `seed`.
pub fn summarize(records: &[CaseRecord], level: f64, seed: u64) -> RunStats {
    let passed = records.iter().filter(|r| r.pass).count() as u64;
    let scores: Vec<f64> = records.iter().map(|r| r.score).collect();
    let names: BTreeSet<&String> = records.iter().flat_map(|r| r.metrics.keys()).collect();
    let metrics = names
        .into_iter()
        .map(|name| {
            let values: Vec<f64> = records
                .iter()
                .filter_map(|r| r.metrics.get(name).copied())
                .collect();
            let ci = bootstrap_mean(&values, level, DEFAULT_RESAMPLES, derive_seed(seed, name));
            (name.clone(), ci)
        })
        .collect();
    let priced: Vec<i64> = records.iter().filter_map(|r| r.cost_nanos).collect();
    let total: i128 = priced.iter().map(|&c| i128::from(c)).sum();
    let cost = CostSummary {
        priced_cases: priced.len(),
        unpriced_cases: records.len() - priced.len(),
        total_nanos: total.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
        mean_per_case_nanos: (!priced.is_empty()).then(|| total as f64 / priced.len() as f64),
    };
    let latencies: Vec<u64> = records.iter().map(|r| r.latency_ms).collect();
    RunStats {
        cases: records.len(),
        passed,
        pass_rate: wilson(passed, records.len() as u64, level),
        score: bootstrap_mean(
            &scores,
            level,
            DEFAULT_RESAMPLES,
            derive_seed(seed, SCORE_METRIC),
        ),
        metrics,
        cost,
        latency_p50_ms: latency_percentile(&latencies, 50.0),
        latency_p95_ms: latency_percentile(&latencies, 95.0),
    }
}

/// Pass rates of both runs on the paired cases, with the exact McNemar test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedRate {
    pub baseline: Interval,
    pub candidate: Interval,
    /// `candidate.estimate - baseline.estimate` (negative = worse).
    pub delta: f64,
    /// Cases the baseline passed and the candidate failed.
    pub b: u64,
    /// Cases the baseline failed and the candidate passed.
    pub c: u64,
    pub p_value: f64,
    /// `p_value < alpha` (never with no discordant pair).
    pub significant: bool,
}

/// A score or metric on the paired cases that report it in both runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    /// Pairs in which both runs report the metric.
    pub n: usize,
    pub baseline: Interval,
    pub candidate: Interval,
    /// Mean of candidate − baseline (negative = worse).
    pub delta: f64,
    /// Bootstrap interval of `delta`.
    pub delta_ci: Interval,
    /// Wilcoxon signed-rank p-value (see [`crate::stats::wilcoxon_signed_rank`]).
    pub p_value: f64,
    pub significant: bool,
}

/// A before/after number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub baseline: f64,
    pub candidate: f64,
    /// `candidate - baseline`.
    pub delta: f64,
    /// `delta / baseline · 100`; `None` when the baseline is 0.
    pub change_pct: Option<f64>,
}

impl Delta {
    fn new(baseline: f64, candidate: f64) -> Self {
        let delta = candidate - baseline;
        let change_pct = (baseline != 0.0).then(|| delta / baseline * 100.0);
        Delta {
            baseline,
            candidate,
            delta,
            change_pct,
        }
    }
}

/// A candidate run compared with a baseline run, case by case on the same case ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Significance level used: `significant` means `p_value < alpha`; intervals are at
    /// `1 - alpha`.
    pub alpha: f64,
    pub paired_cases: usize,
    /// Case ids present in only one run (or repeated within one run), sorted; ignored.
    pub unpaired: Vec<String>,
    pub pass_rate: PairedRate,
    /// The overall score.
    pub score: MetricDelta,
    pub metrics: BTreeMap<String, MetricDelta>,
    /// Mean cost per case over pairs priced in both runs; `None` when there is none.
    pub cost_per_case: Option<Delta>,
    /// Pairs priced in both runs (the basis of `cost_per_case`).
    pub cost_cases: usize,
    /// Nearest-rank p95 latency (ms) of each run over the paired cases.
    pub latency_p95: Delta,
    /// Case ids the baseline passed and the candidate fails, sorted.
    pub regressions: Vec<String>,
    /// Case ids the baseline failed and the candidate passes, sorted.
    pub improvements: Vec<String>,
}

impl Comparison {
    /// The parity verdict of a comparison (what decides a model cut-over): **regressed**
    /// when the pass rate, the score or any metric dropped significantly, else **parity
    /// or better**. Each reason names the measure, the drop and its p-value.
    pub fn verdict(&self) -> Verdict {
        let mut reasons = Vec::new();
        if self.pass_rate.significant && self.pass_rate.delta < 0.0 {
            reasons.push(format!(
                "pass rate {:+.1} points (p={:.4})",
                self.pass_rate.delta * 100.0,
                self.pass_rate.p_value
            ));
        }
        let measures = std::iter::once(("score", &self.score))
            .chain(self.metrics.iter().map(|(k, v)| (k.as_str(), v)));
        for (name, m) in measures {
            if m.significant && m.delta < 0.0 {
                reasons.push(format!("{name} {:+.3} (p={:.4})", m.delta, m.p_value));
            }
        }
        Verdict {
            regressed: !reasons.is_empty(),
            reasons,
        }
    }
}

/// Parity or better, or regressed — and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub regressed: bool,
    pub reasons: Vec<String>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.regressed {
            write!(f, "regressed: {}", self.reasons.join("; "))
        } else {
            f.write_str("parity or better")
        }
    }
}

fn index<'a>(
    records: &'a [CaseRecord],
    duplicates: &mut BTreeSet<String>,
) -> BTreeMap<String, &'a CaseRecord> {
    let mut by_id = BTreeMap::new();
    for record in records {
        if by_id.insert(record.case_id.clone(), record).is_some() {
            duplicates.insert(record.case_id.clone());
        }
    }
    by_id
}

fn metric_delta(pairs: &[(f64, f64)], alpha: f64, seed: u64) -> MetricDelta {
    let level = 1.0 - alpha;
    let (baseline, candidate): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    let paired = paired_scores(&baseline, &candidate, level, seed);
    MetricDelta {
        n: pairs.len(),
        baseline: bootstrap_mean(&baseline, level, DEFAULT_RESAMPLES, seed.wrapping_add(1)),
        candidate: bootstrap_mean(&candidate, level, DEFAULT_RESAMPLES, seed.wrapping_add(2)),
        delta: paired.mean_difference,
        delta_ci: paired.difference_ci,
        p_value: paired.p_value,
        significant: paired.wilcoxon.nonzero > 0 && paired.p_value < alpha,
    }
}

/// Compare `candidate` with `baseline` on the case ids both contain.
///
/// `alpha` is the significance level (0.05 typical; a value outside (0, 1) is read as
/// 0.05). Pass rates use the exact McNemar test, scores and metrics the Wilcoxon
/// signed-rank test, each on the paired cases only. A case id repeated within one run is
/// a runner bug: it is listed in `unpaired` and dropped from both sides. Deterministic for
/// a given `seed`.
pub fn compare(
    baseline: &[CaseRecord],
    candidate: &[CaseRecord],
    alpha: f64,
    seed: u64,
) -> Comparison {
    let alpha = if alpha > 0.0 && alpha < 1.0 {
        alpha
    } else {
        0.05
    };
    let level = 1.0 - alpha;
    let mut unpaired = BTreeSet::new();
    let base = index(baseline, &mut unpaired);
    let cand = index(candidate, &mut unpaired);
    for id in base.keys().filter(|id| !cand.contains_key(*id)) {
        unpaired.insert(id.clone());
    }
    for id in cand.keys().filter(|id| !base.contains_key(*id)) {
        unpaired.insert(id.clone());
    }
    let pairs: Vec<(&CaseRecord, &CaseRecord)> = base
        .iter()
        .filter(|(id, _)| !unpaired.contains(*id))
        .filter_map(|(id, b)| cand.get(id).map(|c| (*b, *c)))
        .collect();

    let n = pairs.len() as u64;
    let ids = |keep: fn(bool, bool) -> bool| -> Vec<String> {
        pairs
            .iter()
            .filter(|(b, c)| keep(b.pass, c.pass))
            .map(|(b, _)| b.case_id.clone())
            .collect()
    };
    let regressions = ids(|b, c| b && !c);
    let improvements = ids(|b, c| !b && c);
    let (b, c) = (regressions.len() as u64, improvements.len() as u64);
    let base_rate = wilson(
        pairs.iter().filter(|(b, _)| b.pass).count() as u64,
        n,
        level,
    );
    let cand_rate = wilson(
        pairs.iter().filter(|(_, c)| c.pass).count() as u64,
        n,
        level,
    );
    let p_value = mcnemar_exact(b, c);
    let pass_rate = PairedRate {
        baseline: base_rate,
        candidate: cand_rate,
        delta: cand_rate.estimate - base_rate.estimate,
        b,
        c,
        p_value,
        significant: b + c > 0 && p_value < alpha,
    };

    let scores: Vec<(f64, f64)> = pairs.iter().map(|(b, c)| (b.score, c.score)).collect();
    let score = metric_delta(&scores, alpha, derive_seed(seed, SCORE_METRIC));
    let names: BTreeSet<&String> = pairs.iter().flat_map(|(b, _)| b.metrics.keys()).collect();
    let metrics = names
        .into_iter()
        .filter_map(|name| {
            let values: Vec<(f64, f64)> = pairs
                .iter()
                .filter_map(|(b, c)| Some((*b.metrics.get(name)?, *c.metrics.get(name)?)))
                .collect();
            (!values.is_empty()).then(|| {
                (
                    name.clone(),
                    metric_delta(&values, alpha, derive_seed(seed, name)),
                )
            })
        })
        .collect();

    let costs: Vec<(i64, i64)> = pairs
        .iter()
        .filter_map(|(b, c)| Some((b.cost_nanos?, c.cost_nanos?)))
        .collect();
    let mean_cost = |side: fn(&(i64, i64)) -> i64| {
        costs
            .iter()
            .map(|pair| i128::from(side(pair)))
            .sum::<i128>() as f64
            / costs.len() as f64
    };
    let cost_per_case =
        (!costs.is_empty()).then(|| Delta::new(mean_cost(|p| p.0), mean_cost(|p| p.1)));

    let p95 = |side: fn(&(&CaseRecord, &CaseRecord)) -> u64| {
        let latencies: Vec<u64> = pairs.iter().map(side).collect();
        latency_percentile(&latencies, 95.0).unwrap_or(0) as f64
    };
    Comparison {
        alpha,
        paired_cases: pairs.len(),
        unpaired: unpaired.into_iter().collect(),
        pass_rate,
        score,
        metrics,
        cost_per_case,
        cost_cases: costs.len(),
        latency_p95: Delta::new(p95(|p| p.0.latency_ms), p95(|p| p.1.latency_ms)),
        regressions,
        improvements,
    }
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
