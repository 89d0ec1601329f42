//! Confidence intervals and paired significance tests.
//!
//! Why it exists: "80% pass" on 10 cases and on 1,000 cases are different claims, and a
//! candidate that looks 3 points worse than the baseline may just be noise. Every number the
//! eval runner reports carries an interval, and every comparison with a baseline is a paired
//! test on the same case ids.
//!
//! What it owns:
//! - [`wilson`] — Wilson score interval for a pass rate;
//! - [`bootstrap_mean`] — percentile bootstrap interval for a mean score, seeded;
//! - [`mcnemar_exact`] — exact McNemar test on discordant pass/fail pairs;
//! - [`wilcoxon_signed_rank`] and [`paired_scores`] — paired test on scores;
//! - [`percentile`] — nearest-rank percentile (p50/p95 latency).
//!
//! No statistics crate is used (none builds offline here). The normal CDF goes through
//! [`erfc`], the Chebyshev approximation of Numerical Recipes (`erfcc`, fractional error
//! below 1.2e-7 everywhere); the normal quantile is Acklam's rational approximation
//! (relative error below 1.15e-9); binomial tails are summed exactly in log space.
//!
//! Confidence levels must lie in (0, 1). A non-finite level is read as 0.95 and a level
//! outside the range is clamped into [1e-6, 1 - 1e-9]; the interval reports the level used.

use serde::{Deserialize, Serialize};

/// Bootstrap resamples used when a caller passes 0 (and what the runner should pass).
pub const DEFAULT_RESAMPLES: u32 = 2000;

/// Above this many non-zero differences the Wilcoxon test uses the normal approximation;
/// at or below it the exact distribution (as R's `wilcox.test`, which switches at 50).
pub const WILCOXON_EXACT_MAX: usize = 50;

/// Two values closer than this, relative to `max(1, |a|, |b|)`, are the same value for the
/// Wilcoxon test (zero differences and tied ranks): float noise such as
/// `0.3 - 0.2 != 0.2 - 0.1` must not break a tie.
pub const TIE_TOLERANCE: f64 = 1e-9;

/// A point estimate with a two-sided confidence interval at `level` (0.95 = 95%).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub level: f64,
}

impl Interval {
    /// Whether `x` lies inside the interval (bounds included).
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// Complementary error function, Numerical Recipes `erfcc` (fractional error < 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * (-z * z + poly).exp();
    if x >= 0.0 {
        ans
    } else {
        2.0 - ans
    }
}

/// Standard normal CDF, Φ(x) = erfc(-x/√2)/2.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal quantile Φ⁻¹(p) by Acklam's algorithm; ±∞ at p = 0 or 1, NaN outside.
pub fn normal_quantile(p: f64) -> f64 {
    #[rustfmt::skip]
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1, 2.209_460_984_245_205e2, -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2, -3.066_479_806_614_716e1, 2.506_628_277_459_239,
    ];
    #[rustfmt::skip]
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1, 1.615_858_368_580_409e2, -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1, -1.328_068_155_288_572e1,
    ];
    #[rustfmt::skip]
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3, -3.223_964_580_411_365e-1, -2.400_758_277_161_838,
        -2.549_732_539_343_734, 4.374_664_141_464_968, 2.938_163_982_698_783,
    ];
    #[rustfmt::skip]
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.024_25;
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

fn sanitize_level(level: f64) -> f64 {
    if level.is_finite() {
        level.clamp(1e-6, 1.0 - 1e-9)
    } else {
        0.95
    }
}

/// The two-sided critical value for `level`: 1.959964 at 0.95.
fn z_for(level: f64) -> f64 {
    normal_quantile(1.0 - (1.0 - level) / 2.0)
}

/// Wilson score interval for `successes` out of `n` at `level`.
///
/// `n = 0` gives estimate 0 and the whole range [0, 1] (nothing is known). `successes`
/// above `n` is clamped to `n`. Example: 8/10 at 0.95 → 0.8 in [0.4902, 0.9433].
pub fn wilson(successes: u64, n: u64, level: f64) -> Interval {
    let level = sanitize_level(level);
    if n == 0 {
        return Interval {
            estimate: 0.0,
            low: 0.0,
            high: 1.0,
            level,
        };
    }
    let nf = n as f64;
    let p = successes.min(n) as f64 / nf;
    let z = z_for(level);
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let center = (p + z2 / (2.0 * nf)) / denom;
    let half = z / denom * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    // The interval always holds p; clamping to it only absorbs rounding (10/10 → high 1).
    Interval {
        estimate: p,
        low: (center - half).clamp(0.0, p),
        high: (center + half).clamp(p, 1.0),
        level,
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Percentile bootstrap interval of the mean of `values`.
///
/// Draws `resamples` resamples of the same size with replacement (0 means
/// [`DEFAULT_RESAMPLES`]), takes each one's mean, and reports the `(1-level)/2` and
/// `(1+level)/2` quantiles of those means (lower index `⌊q·B⌋`, upper `⌈q·B⌉ - 1`, sorted).
/// Deterministic for a given `seed` (`fastrand::Rng::with_seed`). The estimate is the plain
/// mean. An empty input gives the degenerate interval 0 in [0, 0]; non-finite values
/// propagate (callers pass finite scores).
pub fn bootstrap_mean(values: &[f64], level: f64, resamples: u32, seed: u64) -> Interval {
    let level = sanitize_level(level);
    let n = values.len();
    let estimate = mean(values);
    if n == 0 {
        return Interval {
            estimate,
            low: estimate,
            high: estimate,
            level,
        };
    }
    let draws = if resamples == 0 {
        DEFAULT_RESAMPLES
    } else {
        resamples
    } as usize;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut means: Vec<f64> = (0..draws)
        .map(|_| (0..n).map(|_| values[rng.usize(..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let half_alpha = (1.0 - level) / 2.0;
    let low_index = ((half_alpha * draws as f64).floor() as usize).min(draws - 1);
    let high_index = (((1.0 - half_alpha) * draws as f64).ceil() as usize).clamp(1, draws) - 1;
    Interval {
        estimate,
        low: means[low_index],
        high: means[high_index],
        level,
    }
}

/// Two-sided exact McNemar test: the binomial(b + c, ½) p-value of the discordant pairs.
///
/// `b` = cases the baseline passed and the candidate failed, `c` = the reverse. Returns
/// `min(1, 2·P(X ≤ min(b, c)))`; no discordant pairs gives 1. Example: b = 1, c = 9 →
/// 22/1024 = 0.021484375.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b.saturating_add(c);
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // log P(X = i) grows with i up to n/2 ≥ k, so the last term is the largest.
    let log_terms = || {
        (0..=k).scan(-(n as f64) * std::f64::consts::LN_2, move |log_term, i| {
            let current = *log_term;
            *log_term += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
            Some(current)
        })
    };
    let largest = log_terms().fold(f64::NEG_INFINITY, f64::max);
    let scaled: f64 = log_terms().map(|l| (l - largest).exp()).sum();
    (2.0 * (largest + scaled.ln()).exp()).min(1.0)
}

/// Result of a Wilcoxon signed-rank test on paired differences.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wilcoxon {
    /// Differences left after dropping zeros (the test's n).
    pub nonzero: usize,
    /// Sum of the ranks of positive differences (ties get their average rank).
    pub w_plus: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether the p-value comes from the exact distribution (else the normal approximation).
    pub exact: bool,
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= TIE_TOLERANCE * 1f64.max(a.abs()).max(b.abs())
}

/// Wilcoxon signed-rank test of "the differences are symmetric around 0", two-sided.
///
/// Zeros (|d| ≤ [`TIE_TOLERANCE`]) are dropped (Wilcoxon's original zero handling, as R's
/// `wilcox.test`; not Pratt's). Tied |d| get average ranks. With at most
/// [`WILCOXON_EXACT_MAX`] non-zero differences the p-value is exact: the permutation
/// distribution of W+ over all 2ⁿ sign patterns of the observed ranks (so it stays exact
/// with ties), `p = min(1, 2·min(P(W+ ≤ w), P(W+ ≥ w)))`. Above that, the normal
/// approximation with tie-corrected variance `n(n+1)(2n+1)/24 - Σ(t³-t)/48` and a 0.5
/// continuity correction. No non-zero difference gives p = 1.
pub fn wilcoxon_signed_rank(differences: &[f64]) -> Wilcoxon {
    let mut nonzero: Vec<f64> = differences
        .iter()
        .copied()
        .filter(|d| !same(*d, 0.0))
        .collect();
    nonzero.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    let n = nonzero.len();
    if n == 0 {
        return Wilcoxon {
            nonzero: 0,
            w_plus: 0.0,
            p_value: 1.0,
            exact: true,
        };
    }
    // Doubled ranks are integers even with ties (average of i+1..=j+1, times 2 = i+j+2).
    let mut doubled_ranks = vec![0usize; n];
    let mut tie_correction = 0.0;
    let mut start = 0;
    while start < n {
        let mut end = start;
        while end + 1 < n && same(nonzero[end + 1].abs(), nonzero[start].abs()) {
            end += 1;
        }
        doubled_ranks[start..=end].fill(start + end + 2);
        let t = (end - start + 1) as f64;
        tie_correction += t * t * t - t;
        start = end + 1;
    }
    let doubled_w_plus: usize = nonzero
        .iter()
        .zip(&doubled_ranks)
        .filter(|(d, _)| **d > 0.0)
        .map(|(_, r)| *r)
        .sum();
    let w_plus = doubled_w_plus as f64 / 2.0;
    let p_value = if n <= WILCOXON_EXACT_MAX {
        exact_signed_rank_p(&doubled_ranks, doubled_w_plus)
    } else {
        let nf = n as f64;
        let expected = nf * (nf + 1.0) / 4.0;
        let variance = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_correction / 48.0;
        let distance = ((w_plus - expected).abs() - 0.5).max(0.0);
        if variance > 0.0 {
            erfc(distance / variance.sqrt() / std::f64::consts::SQRT_2).min(1.0)
        } else {
            1.0
        }
    };
    Wilcoxon {
        nonzero: n,
        w_plus,
        p_value,
        exact: n <= WILCOXON_EXACT_MAX,
    }
}

/// Exact two-sided p-value of the doubled signed-rank sum: each rank is positive with
/// probability ½, independently (dynamic programming over the sums).
fn exact_signed_rank_p(doubled_ranks: &[usize], observed: usize) -> f64 {
    let total: usize = doubled_ranks.iter().sum();
    let mut probability = vec![0.0f64; total + 1];
    probability[0] = 1.0;
    let mut reach = 0;
    for &rank in doubled_ranks {
        reach += rank;
        for sum in (0..=reach).rev() {
            let with = if sum >= rank {
                probability[sum - rank]
            } else {
                0.0
            };
            probability[sum] = 0.5 * probability[sum] + 0.5 * with;
        }
    }
    let lower: f64 = probability[..=observed].iter().sum();
    let upper: f64 = probability[observed..].iter().sum();
    (2.0 * lower.min(upper)).min(1.0)
}

/// A paired comparison of scores: candidate minus baseline, case by case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedScores {
    /// Number of pairs.
    pub n: usize,
    /// Mean of `candidate[i] - baseline[i]` (positive = candidate better).
    pub mean_difference: f64,
    /// Bootstrap interval of the mean difference ([`DEFAULT_RESAMPLES`] resamples).
    pub difference_ci: Interval,
    /// The Wilcoxon signed-rank test on the differences.
    pub wilcoxon: Wilcoxon,
    /// Shortcut for `wilcoxon.p_value`.
    pub p_value: f64,
}

/// Paired test of candidate against baseline scores on the same cases, index by index.
///
/// The slices are paired by position; if their lengths differ the extra tail of the longer
/// one is ignored (`keel_evals::compare::compare` always pairs by case id first).
pub fn paired_scores(baseline: &[f64], candidate: &[f64], level: f64, seed: u64) -> PairedScores {
    let differences: Vec<f64> = baseline.iter().zip(candidate).map(|(b, c)| c - b).collect();
    let difference_ci = bootstrap_mean(&differences, level, DEFAULT_RESAMPLES, seed);
    let wilcoxon = wilcoxon_signed_rank(&differences);
    PairedScores {
        n: differences.len(),
        mean_difference: difference_ci.estimate,
        difference_ci,
        wilcoxon,
        p_value: wilcoxon.p_value,
    }
}

/// Nearest-rank percentile: the smallest value with at least `p`% of the values at or
/// below it, i.e. the `⌈p/100 · n⌉`-th smallest (the first for p = 0). Always one of the
/// inputs, never interpolated. `p` is in percent (95 for p95); `None` for an empty slice or
/// `p` outside [0, 100].
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    // p·n/100 rather than (p/100)·n: 95·20/100 is exactly 19, 0.95·20 is not.
    let rank = ((p * n as f64 / 100.0) - 1e-9).ceil().max(1.0) as usize;
    sorted.get(rank.min(n) - 1).copied()
}

#[cfg(test)]
#[path = "intervals_tests.rs"]
mod tests;
