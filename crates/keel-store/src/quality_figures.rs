//! Online quality as people read it: pass rates with Wilson 95 % intervals, each
//! metric's mean with a normal 95 % interval, feedback's positive rate, and whether two
//! variants of a function differ — one implementation for `keel report`, `keel
//! releases` and the dashboard, so they never disagree.
//!
//! Definitions (the README states them too):
//! - pass rate = judged calls that passed / judged calls, Wilson interval;
//! - a metric's mean over its values (0..1) with the normal interval `mean ± 1.96·s/√n`
//!   (sample standard deviation), clamped to 0..1 — computed from SQL sums, so a report
//!   over millions of scores holds no values;
//! - feedback is positive when its number is above 0 (thumbs 1, `true`), negative at or
//!   below 0 (thumbs 0 or -1, `false`); categories are counted but are neither, and are
//!   left out of the positive rate (positive / (positive + negative));
//! - two variants differ when a pooled two-proportion z-test (two-sided) gives
//!   p < 0.05; the verdict says which passes more often, or that there is no significant
//!   difference, with p and both sides' counts.

use crate::sql::Db;
use keel_stats::intervals::wilson;
use keel_stats::proportions::{normal_mean, two_proportion_z};
use serde::Serialize;

use crate::error::StoreError;
use crate::quality::{quality_sums, FeedbackCounts, QualityGrouping, QualitySums};
use crate::report::VARIANT_SEP;

/// The confidence level of every interval here.
pub const LEVEL: f64 = 0.95;
/// Below this p-value two variants are said to differ.
pub const ALPHA: f64 = 0.05;
/// Fewer passes or failures than this on a side: the z-test's normal approximation is
/// rough, and the verdict says so.
const FEW: u64 = 5;

/// A rate with its Wilson interval; all `None` when there is nothing to count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rate {
    pub rate: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Rate {
    pub fn of(successes: u64, n: u64) -> Rate {
        if n == 0 {
            return Rate::default();
        }
        let i = wilson(successes, n, LEVEL);
        Rate {
            rate: Some(i.estimate),
            low: Some(i.low),
            high: Some(i.high),
        }
    }
}

/// One eval's judged calls in a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalFigures {
    pub eval: String,
    pub judged: u64,
    pub passed: u64,
    pub pass_rate: Option<f64>,
    pub pass_rate_low: Option<f64>,
    pub pass_rate_high: Option<f64>,
}

/// One metric's mean in a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricFigures {
    pub eval: String,
    pub metric: String,
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    pub n: u64,
}

/// Feedback in a group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FeedbackFigures {
    /// Every feedback value, categories included.
    pub count: u64,
    pub positive: u64,
    pub negative: u64,
    pub category: u64,
    /// positive / (positive + negative); `None` without either.
    pub positive_rate: Option<f64>,
    pub positive_rate_low: Option<f64>,
    pub positive_rate_high: Option<f64>,
}

/// One group's online quality (`quality.by_*[]` in `keel report --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityRow {
    pub name: String,
    /// Calls judged by any online eval, and those where every assertion passed.
    pub judged: u64,
    pub passed: u64,
    pub pass_rate: Option<f64>,
    pub pass_rate_low: Option<f64>,
    pub pass_rate_high: Option<f64>,
    pub evals: Vec<EvalFigures>,
    pub metrics: Vec<MetricFigures>,
    pub feedback: FeedbackFigures,
    /// Calls reviewers gave a clear verdict, the good ones, and the good rate with its
    /// interval: people's figure beside the judges' pass rate.
    pub human_reviewed: u64,
    pub human_good: u64,
    pub human_good_rate: Option<f64>,
    pub human_good_rate_low: Option<f64>,
    pub human_good_rate_high: Option<f64>,
}

impl QualityRow {
    pub fn from_sums(s: &QualitySums) -> QualityRow {
        let pass = Rate::of(s.passed, s.judged);
        let human = Rate::of(s.human_good, s.human_reviewed);
        QualityRow {
            human_reviewed: s.human_reviewed,
            human_good: s.human_good,
            human_good_rate: human.rate,
            human_good_rate_low: human.low,
            human_good_rate_high: human.high,
            name: s.name.clone(),
            judged: s.judged,
            passed: s.passed,
            pass_rate: pass.rate,
            pass_rate_low: pass.low,
            pass_rate_high: pass.high,
            evals: s
                .evals
                .iter()
                .map(|e| {
                    let r = Rate::of(e.passed, e.judged);
                    EvalFigures {
                        eval: e.eval.clone(),
                        judged: e.judged,
                        passed: e.passed,
                        pass_rate: r.rate,
                        pass_rate_low: r.low,
                        pass_rate_high: r.high,
                    }
                })
                .collect(),
            metrics: s
                .metrics
                .iter()
                .map(|m| {
                    let i = normal_mean(m.n, m.sum, m.sum_squares, LEVEL, 0.0, 1.0);
                    MetricFigures {
                        eval: m.eval.clone(),
                        metric: m.metric.clone(),
                        mean: i.estimate,
                        low: i.low,
                        high: i.high,
                        n: m.n,
                    }
                })
                .collect(),
            feedback: feedback_figures(s.feedback),
        }
    }

    /// The pass rate with its interval.
    pub fn pass(&self) -> Rate {
        Rate {
            rate: self.pass_rate,
            low: self.pass_rate_low,
            high: self.pass_rate_high,
        }
    }
}

fn feedback_figures(f: FeedbackCounts) -> FeedbackFigures {
    let r = Rate::of(f.positive, f.positive + f.negative);
    FeedbackFigures {
        count: f.count,
        positive: f.positive,
        negative: f.negative,
        category: f.category,
        positive_rate: r.rate,
        positive_rate_low: r.low,
        positive_rate_high: r.high,
    }
}

/// The quality rows of one grouping over `[since_ms, until_ms)`.
pub fn quality_rows<'c>(
    conn: impl Into<Db<'c>>,
    since_ms: i64,
    until_ms: i64,
    grouping: QualityGrouping,
) -> Result<Vec<QualityRow>, StoreError> {
    Ok(quality_sums(conn, since_ms, until_ms, grouping)?
        .iter()
        .map(QualityRow::from_sums)
        .collect())
}

/// Two rates compared: the counts, the test and the verdict in plain words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateComparison {
    pub baseline_n: u64,
    pub baseline_successes: u64,
    pub variant_n: u64,
    pub variant_successes: u64,
    /// Two-sided p of the pooled two-proportion z-test; `None` when a side has no data.
    pub p_value: Option<f64>,
    /// `p_value < 0.05`.
    pub significant: bool,
    pub verdict: String,
}

/// A variant of a function against the function's baseline variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantComparison {
    pub function: String,
    /// The variant with the most judged calls (then feedback, then the first by name).
    pub baseline: String,
    pub variant: String,
    /// Judged calls passing.
    pub pass_rate: RateComparison,
    /// Positive feedback among positive and negative.
    pub feedback: RateComparison,
}

/// `p = 0.003`, `p = 0.41`, `p < 0.001`.
pub fn format_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else if p < 0.1 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

/// A rate with its interval for people: `75.0% [30.1–95.4%]`, or `—` when there is
/// nothing to count (the report, `keel releases` and the dashboard all write it so).
pub fn format_rate(rate: Option<f64>, low: Option<f64>, high: Option<f64>) -> String {
    match (rate, low, high) {
        (Some(r), Some(l), Some(h)) => {
            format!("{} [{:.1}–{:.1}%]", percent(r), l * 100.0, h * 100.0)
        }
        _ => "—".to_string(),
    }
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// Compare `variant`'s `successes` of `n` with `baseline`'s; `more` says what a higher
/// rate means ("passes more often").
fn compare_rates(
    (baseline, bs, bn): (&str, u64, u64),
    (variant, vs, vn): (&str, u64, u64),
    more: &str,
) -> RateComparison {
    let mut out = RateComparison {
        baseline_n: bn,
        baseline_successes: bs,
        variant_n: vn,
        variant_successes: vs,
        p_value: None,
        significant: false,
        verdict: String::new(),
    };
    if bn == 0 || vn == 0 {
        let empty = if bn == 0 { baseline } else { variant };
        out.verdict = format!("not compared: {empty} has none");
        return out;
    }
    let t = two_proportion_z(bs, bn, vs, vn);
    out.p_value = Some(t.p_value);
    out.significant = t.p_value < ALPHA;
    out.verdict = if out.significant {
        let (hi, lo, hr, lr) = if t.rate_b > t.rate_a {
            (variant, baseline, t.rate_b, t.rate_a)
        } else {
            (baseline, variant, t.rate_a, t.rate_b)
        };
        format!(
            "{hi} {more} than {lo} ({} vs {}, {})",
            percent(hr),
            percent(lr),
            format_p(t.p_value)
        )
    } else {
        format!(
            "no significant difference ({}, n = {bn} vs {vn})",
            format_p(t.p_value)
        )
    };
    let few = |s: u64, n: u64| s.min(n - s.min(n)) < FEW;
    if few(bs, bn) || few(vs, vn) {
        out.verdict.push_str("; few calls, read with care");
    }
    out
}

/// `variant` against `baseline`, both of `function`.
pub fn compare_variants(
    function: &str,
    (baseline, b): (&str, &QualityRow),
    (variant, v): (&str, &QualityRow),
) -> VariantComparison {
    VariantComparison {
        function: function.to_string(),
        baseline: baseline.to_string(),
        variant: variant.to_string(),
        pass_rate: compare_rates(
            (baseline, b.passed, b.judged),
            (variant, v.passed, v.judged),
            "passes more often",
        ),
        feedback: compare_rates(
            (
                baseline,
                b.feedback.positive,
                b.feedback.positive + b.feedback.negative,
            ),
            (
                variant,
                v.feedback.positive,
                v.feedback.positive + v.feedback.negative,
            ),
            "gets positive feedback more often",
        ),
    }
}

/// Every variant of each function against that function's baseline (the variant with
/// the most judged calls, then the most feedback, then the first by name), from rows
/// grouped by [`QualityGrouping::Variant`]. Functions with one variant, and calls of a
/// bare model, have nothing to compare.
pub fn variant_comparisons(rows: &[QualityRow]) -> Vec<VariantComparison> {
    let mut by_function: std::collections::BTreeMap<&str, Vec<(&str, &QualityRow)>> =
        std::collections::BTreeMap::new();
    for r in rows {
        if let Some((f, v)) = r.name.split_once(VARIANT_SEP) {
            if !f.is_empty() {
                by_function.entry(f).or_default().push((v, r));
            }
        }
    }
    let mut out = Vec::new();
    for (function, mut variants) in by_function {
        if variants.len() < 2 {
            continue;
        }
        variants.sort_by(|(an, a), (bn, b)| {
            b.judged
                .cmp(&a.judged)
                .then(b.feedback.count.cmp(&a.feedback.count))
                .then_with(|| an.cmp(bn))
        });
        let (base, others) = variants.split_at(1);
        if let Some(&baseline) = base.first() {
            for &other in others {
                out.push(compare_variants(function, baseline, other));
            }
        }
    }
    out
}

/// Online quality in `keel report --json` (`quality`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Quality {
    pub by_function: Vec<QualityRow>,
    /// Named `function/variant`.
    pub by_variant: Vec<QualityRow>,
    /// Named `prompt vN`.
    pub by_prompt_version: Vec<QualityRow>,
    pub by_model: Vec<QualityRow>,
    /// Each function's variants against its baseline.
    pub comparisons: Vec<VariantComparison>,
}

impl Quality {
    /// True when no call in the window was judged or got feedback.
    pub fn is_empty(&self) -> bool {
        self.by_function.is_empty()
    }
}

/// The report's quality over `[since_ms, until_ms)`.
pub fn report_quality<'c>(
    conn: impl Into<Db<'c>>,
    since_ms: i64,
    until_ms: i64,
) -> Result<Quality, StoreError> {
    let conn = conn.into();
    let rows = |g| quality_rows(conn, since_ms, until_ms, g);
    let mut by_variant = rows(QualityGrouping::Variant)?;
    let comparisons = variant_comparisons(&by_variant);
    for r in &mut by_variant {
        r.name = match r.name.split_once(VARIANT_SEP) {
            Some(("", _)) | None => "(none)".to_string(),
            Some((f, v)) => format!("{f}/{v}"),
        };
    }
    Ok(Quality {
        by_function: rows(QualityGrouping::Function)?,
        by_variant,
        by_prompt_version: rows(QualityGrouping::PromptVersion)?,
        by_model: rows(QualityGrouping::Model)?,
        comparisons,
    })
}
