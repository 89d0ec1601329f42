//! Change points: where a metric's level shifted, found on five-minute buckets.
//!
//! **Method** (binary segmentation with a two-sample statistic). For a series
//! `x_1 … x_n` (missing buckets dropped), every split `k` leaving at least
//! [`MIN_SEGMENT`] buckets on each side is scored by
//! `t_k = |mean(x_k+1..n) − mean(x_1..k)| / (s · √(1/k + 1/(n−k)))`, `s` the pooled
//! within-segment standard deviation. The best split is a change point when `t_k` exceeds
//! the Student-t quantile at `1 − α/(2m)` (`m` candidate splits: a Bonferroni correction
//! over the splits, so a stationary series yields a false alarm with probability at most
//! about `α`, [`DEFAULT_ALPHA`] = 1 %) **and** the shift is material: at least
//! [`MIN_RELATIVE`] of the level before (or of the level after, when the level before is
//! 0) and at least the metric's own floor. The search then repeats on each side of the
//! split (up to [`MAX_POINTS`]). A constant segment pair with different levels (s = 0)
//! is a change when the shift is material.

use serde::Serialize;

/// Fewest buckets on each side of a split.
pub const MIN_SEGMENT: usize = 3;
/// The false-alarm rate on a stationary series.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// A shift smaller than this share of the level before is not reported.
pub const MIN_RELATIVE: f64 = 0.10;
/// Most change points reported per series.
pub const MAX_POINTS: usize = 3;

/// One change point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangePoint {
    /// The index (into the series given) of the first bucket after the change.
    pub index: usize,
    /// The first bucket's start, Unix ms.
    pub at_ms: i64,
    pub before: f64,
    pub after: f64,
    /// The statistic `t_k`, and the threshold it beat.
    pub statistic: f64,
    pub threshold: f64,
}

/// Find the change points of `series` (bucket start, value), oldest first; `floor` is the
/// smallest absolute shift worth reporting for this metric.
pub fn detect(series: &[(i64, f64)], alpha: f64, floor: f64) -> Vec<ChangePoint> {
    let mut out = Vec::new();
    segment(series, 0, alpha, floor, &mut out);
    out.sort_by_key(|c| c.index);
    out
}

fn segment(
    series: &[(i64, f64)],
    offset: usize,
    alpha: f64,
    floor: f64,
    out: &mut Vec<ChangePoint>,
) {
    if out.len() >= MAX_POINTS {
        return;
    }
    let Some(found) = best_split(series, alpha, floor) else {
        return;
    };
    let k = found.index;
    out.push(ChangePoint {
        index: offset + k,
        ..found
    });
    segment(&series[..k], offset, alpha, floor, out);
    segment(&series[k..], offset + k, alpha, floor, out);
}

/// The most significant material split of `xs`, if it beats the threshold.
fn best_split(xs: &[(i64, f64)], alpha: f64, floor: f64) -> Option<ChangePoint> {
    let n = xs.len();
    if n < 2 * MIN_SEGMENT {
        return None;
    }
    let splits = n - 2 * MIN_SEGMENT + 1;
    let df = (n - 2) as f64;
    let threshold = student_t_quantile(1.0 - alpha / (2.0 * splits as f64), df);
    // Prefix sums of x and x² make every split O(1).
    let mut sum = vec![0.0; n + 1];
    let mut sq = vec![0.0; n + 1];
    for (i, (_, x)) in xs.iter().enumerate() {
        sum[i + 1] = sum[i] + x;
        sq[i + 1] = sq[i] + x * x;
    }
    let mut best: Option<ChangePoint> = None;
    for k in MIN_SEGMENT..=(n - MIN_SEGMENT) {
        let (a, b) = (k as f64, (n - k) as f64);
        let m1 = sum[k] / a;
        let m2 = (sum[n] - sum[k]) / b;
        let ss1 = (sq[k] - a * m1 * m1).max(0.0);
        let ss2 = ((sq[n] - sq[k]) - b * m2 * m2).max(0.0);
        let s = ((ss1 + ss2) / df).sqrt();
        let shift = (m2 - m1).abs();
        let base = if m1.abs() > f64::EPSILON {
            m1.abs()
        } else {
            m2.abs()
        };
        if shift < floor || shift < MIN_RELATIVE * base {
            continue;
        }
        let t = if s > 0.0 {
            shift / (s * (1.0 / a + 1.0 / b).sqrt())
        } else {
            f64::INFINITY
        };
        if t > threshold && best.as_ref().is_none_or(|c| t > c.statistic) {
            best = Some(ChangePoint {
                index: k,
                at_ms: xs[k].0,
                before: m1,
                after: m2,
                statistic: t,
                threshold,
            });
        }
    }
    best
}

/// Student's t quantile by the Cornish–Fisher expansion around the normal quantile
/// (accurate to a few thousandths for the degrees of freedom used here, ≥ 4).
fn student_t_quantile(p: f64, df: f64) -> f64 {
    let z = keel_stats::intervals::normal_quantile(p);
    let z3 = z.powi(3);
    let z5 = z.powi(5);
    let z7 = z.powi(7);
    z + (z3 + z) / (4.0 * df)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * df * df)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * df.powi(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random normal (Box–Muller over a xorshift).
    struct Noise(u64);
    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    fn series(values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 300_000, *v))
            .collect()
    }

    #[test]
    fn a_step_is_found_within_one_bucket() {
        let mut noise = Noise(7);
        for (step_at, n) in [(24, 48), (10, 36), (30, 40)] {
            let xs: Vec<f64> = (0..n)
                .map(|i| if i < step_at { 100.0 } else { 300.0 } + 10.0 * noise.normal())
                .collect();
            let found = detect(&series(&xs), DEFAULT_ALPHA, 1.0);
            assert_eq!(found.len(), 1, "{found:?}");
            let c = &found[0];
            assert!(
                c.index.abs_diff(step_at) <= 1,
                "step at {step_at}, found {}",
                c.index
            );
            assert!(
                (c.before - 100.0).abs() < 10.0 && (c.after - 300.0).abs() < 10.0,
                "{c:?}"
            );
        }
    }

    #[test]
    fn stationary_noise_yields_none_at_the_documented_rate() {
        let mut noise = Noise(42);
        let runs = 1000;
        let mut alarms = 0;
        for _ in 0..runs {
            let xs: Vec<f64> = (0..48).map(|_| 100.0 + 10.0 * noise.normal()).collect();
            if !detect(&series(&xs), DEFAULT_ALPHA, 0.0).is_empty() {
                alarms += 1;
            }
        }
        let rate = alarms as f64 / runs as f64;
        assert!(
            rate <= DEFAULT_ALPHA * 2.0,
            "false alarms {rate} on stationary noise"
        );
    }

    #[test]
    fn a_small_or_immaterial_shift_is_not_reported() {
        // Significant (no noise) but 5 % of the level: below MIN_RELATIVE.
        let xs: Vec<f64> = (0..20)
            .map(|i| if i < 10 { 100.0 } else { 105.0 })
            .collect();
        assert!(detect(&series(&xs), DEFAULT_ALPHA, 0.0).is_empty());
        // Above the floor and 100 %: reported even with zero variance.
        let xs: Vec<f64> = (0..20).map(|i| if i < 10 { 0.0 } else { 0.4 }).collect();
        let found = detect(&series(&xs), DEFAULT_ALPHA, 0.02);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].index, 10);
        // Too short to tell.
        assert!(detect(&series(&[1.0, 9.0, 9.0, 9.0]), DEFAULT_ALPHA, 0.0).is_empty());
    }

    #[test]
    fn two_steps_are_both_found() {
        let mut noise = Noise(3);
        let xs: Vec<f64> = (0..60)
            .map(|i| match i {
                0..20 => 10.0,
                20..40 => 30.0,
                _ => 60.0,
            } + noise.normal())
            .collect();
        let found = detect(&series(&xs), DEFAULT_ALPHA, 0.5);
        let at: Vec<_> = found.iter().map(|c| c.index).collect();
        assert_eq!(at.len(), 2, "{found:?}");
        assert!(at[0].abs_diff(20) <= 1 && at[1].abs_diff(40) <= 1, "{at:?}");
    }
}
