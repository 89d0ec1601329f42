//! Comparing two groups' rates and intervals of a mean from its sums — what online
//! quality needs to say whether two variants differ, honestly, on unpaired live calls.
//!
//! Why it exists: the paired tests in [`crate::intervals`] need the same cases on both
//! sides (an eval suite); an A/B split or a canary sees different calls on each side, so
//! their pass rates are compared as two independent proportions. And a report over
//! millions of scores should not hold every value for a bootstrap: [`normal_mean`] takes
//! the count, sum and sum of squares that SQL adds up.
//!
//! What it owns:
//! - [`two_proportion_z`] — the pooled two-proportion z-test, two-sided;
//! - [`normal_mean`] — the normal (t-free) interval of a mean from its sums.

use serde::{Deserialize, Serialize};

use crate::intervals::{normal_cdf, normal_quantile, Interval};

/// The result of a two-proportion z-test of `a` against `b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TwoProportions {
    /// `successes_a / n_a` (0 when `n_a` is 0).
    pub rate_a: f64,
    pub rate_b: f64,
    /// `rate_b - rate_a`.
    pub difference: f64,
    /// The z statistic (0 when it is undefined: an empty side, or both sides all
    /// successes or all failures).
    pub z: f64,
    /// Two-sided p-value; 1 when `z` is undefined.
    pub p_value: f64,
}

/// Pooled two-proportion z-test: are `successes_a / n_a` and `successes_b / n_b` the same
/// rate? `z = (p_b - p_a) / sqrt(p(1-p)(1/n_a + 1/n_b))` with the pooled rate `p`, and a
/// two-sided normal p-value. Successes above `n` are clamped to `n`.
///
/// Example: 60/100 against 40/100 → z = -2.8284, p = 0.004678. The normal approximation
/// wants roughly five successes and five failures on each side; callers say so when a
/// side has fewer.
pub fn two_proportion_z(successes_a: u64, n_a: u64, successes_b: u64, n_b: u64) -> TwoProportions {
    let rate = |s: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            s.min(n) as f64 / n as f64
        }
    };
    let (rate_a, rate_b) = (rate(successes_a, n_a), rate(successes_b, n_b));
    let undefined = TwoProportions {
        rate_a,
        rate_b,
        difference: rate_b - rate_a,
        z: 0.0,
        p_value: 1.0,
    };
    if n_a == 0 || n_b == 0 {
        return undefined;
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let pooled = (successes_a.min(n_a) + successes_b.min(n_b)) as f64 / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return undefined;
    }
    let z = (rate_b - rate_a) / se;
    TwoProportions {
        z,
        p_value: (2.0 * normal_cdf(-z.abs())).min(1.0),
        ..undefined
    }
}

/// The normal interval of a mean at `level`, from `n` values' `sum` and `sum_squares`:
/// `mean ± z·s/√n` with the sample standard deviation `s` (n - 1), clamped to
/// `[lower, upper]` (a score's range). `n = 0` gives 0 in `[lower, upper]`; `n = 1` gives
/// the value in `[lower, upper]` (one value says nothing about spread).
///
/// Example: 1, 2, 3, 4 (n 4, sum 10, squares 30) at 0.95 → 2.5 in [1.2348, 3.7652].
pub fn normal_mean(
    n: u64,
    sum: f64,
    sum_squares: f64,
    level: f64,
    lower: f64,
    upper: f64,
) -> Interval {
    let level = if level.is_finite() {
        level.clamp(1e-6, 1.0 - 1e-9)
    } else {
        0.95
    };
    if n == 0 {
        return Interval {
            estimate: 0.0,
            low: lower,
            high: upper,
            level,
        };
    }
    let nf = n as f64;
    let mean = (sum / nf).clamp(lower, upper);
    if n == 1 {
        return Interval {
            estimate: mean,
            low: lower,
            high: upper,
            level,
        };
    }
    // Rounding can push a zero variance a hair below 0.
    let variance = ((sum_squares - sum * sum / nf) / (nf - 1.0)).max(0.0);
    let half = normal_quantile(1.0 - (1.0 - level) / 2.0) * (variance / nf).sqrt();
    Interval {
        estimate: mean,
        low: (mean - half).clamp(lower, mean),
        high: (mean + half).clamp(mean, upper),
        level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "expected {expected}, got {actual}"
        );
    }

    #[test]
    fn two_proportions_match_reference_values() {
        // Computed independently: pooled p 0.5, se sqrt(0.25 · 0.02) = 0.0707107.
        let t = two_proportion_z(60, 100, 40, 100);
        close(t.z, -2.828_427_124_746_19, 1e-9);
        close(t.p_value, 0.004_677_734_981_047_3, 1e-7);
        close(t.difference, -0.2, 1e-12);
        // Unequal sizes: 45/120 vs 30/118 (Python, `statistics.NormalDist`).
        let t = two_proportion_z(45, 120, 30, 118);
        close(t.z, -2.005_065_333_545_363, 1e-9);
        close(t.p_value, 0.044_956_062_935_414_88, 1e-7);
        assert!(t.z < 0.0);
        // Symmetric in the sides, up to the sign.
        let u = two_proportion_z(30, 118, 45, 120);
        close(u.z, -t.z, 1e-12);
        close(u.p_value, t.p_value, 1e-12);
        // The same rate: no evidence at all.
        let same = two_proportion_z(50, 100, 25, 50);
        close(same.z, 0.0, 1e-12);
        close(same.p_value, 1.0, 1e-7);
    }

    #[test]
    fn two_proportions_without_a_defined_statistic_say_p_is_one() {
        for t in [
            two_proportion_z(0, 0, 5, 10),
            two_proportion_z(5, 10, 0, 0),
            two_proportion_z(10, 10, 20, 20),
            two_proportion_z(0, 10, 0, 20),
        ] {
            assert_eq!((t.z, t.p_value), (0.0, 1.0), "{t:?}");
        }
        // More successes than calls are clamped.
        assert_eq!(two_proportion_z(15, 10, 0, 0).rate_a, 1.0);
    }

    #[test]
    fn normal_mean_matches_reference_values() {
        // 1, 2, 3, 4: mean 2.5, s = 1.290994, se = 0.645497, z = 1.959964.
        let i = normal_mean(4, 10.0, 30.0, 0.95, f64::NEG_INFINITY, f64::INFINITY);
        close(i.estimate, 2.5, 1e-12);
        close(i.low, 1.234_848_688, 1e-6);
        close(i.high, 3.765_151_312, 1e-6);
        // Scores 0..1: clamped into the range.
        let i = normal_mean(3, 2.9, 2.81, 0.95, 0.0, 1.0);
        close(i.estimate, 2.9 / 3.0, 1e-12);
        assert!(i.high <= 1.0 && i.low < i.estimate);
        // All the same value: no spread.
        let i = normal_mean(5, 4.0, 3.2, 0.95, 0.0, 1.0);
        close(i.low, 0.8, 1e-9);
        close(i.high, 0.8, 1e-9);
        // Nothing known.
        let i = normal_mean(0, 0.0, 0.0, 0.95, 0.0, 1.0);
        assert_eq!((i.estimate, i.low, i.high), (0.0, 0.0, 1.0));
        let i = normal_mean(1, 0.7, 0.49, 0.95, 0.0, 1.0);
        assert_eq!((i.estimate, i.low, i.high), (0.7, 0.0, 1.0));
    }
}
