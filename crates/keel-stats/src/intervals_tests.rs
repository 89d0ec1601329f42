//! Known inputs → known outputs. Expected values were computed independently in Python
//! from first principles (closed-form Wilson, `math.comb` binomial sums, brute-force
//! enumeration of all 2ⁿ sign patterns for Wilcoxon, `math.erfc`, `statistics.NormalDist`).

use super::*;

fn close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "expected {expected}, got {actual} (tolerance {tolerance})"
    );
}

fn interval(actual: Interval, estimate: f64, low: f64, high: f64) {
    close(actual.estimate, estimate, 1e-9);
    close(actual.low, low, 1e-6);
    close(actual.high, high, 1e-6);
}

#[test]
fn erfc_and_normal_match_reference_values() {
    close(erfc(1.0), 0.157_299_207_050_285_13, 1.2e-7 * 0.16);
    close(erfc(0.5), 0.479_500_122_186_953_5, 1.2e-7 * 0.48);
    close(erfc(-1.0), 1.842_700_792_949_715, 1.2e-7 * 1.85);
    close(erfc(3.0), 2.209_049_699_858_543_8e-5, 1.2e-7 * 2.3e-5);
    close(normal_cdf(1.0), 0.841_344_746_068_542_9, 1e-7);
    close(normal_quantile(0.975), 1.959_963_984_540_053_6, 1e-8);
    close(normal_quantile(0.01), -2.326_347_874_040_840_8, 1e-8);
    close(normal_quantile(0.995), 2.575_829_303_548_9, 1e-8);
    assert!(normal_quantile(1.5).is_nan());
}

#[test]
fn wilson_known_intervals() {
    interval(wilson(8, 10, 0.95), 0.8, 0.490_162_471_5, 0.943_317_848_5);
    interval(wilson(0, 10, 0.95), 0.0, 0.0, 0.277_532_799_9);
    interval(wilson(10, 10, 0.95), 1.0, 0.722_467_200_1, 1.0);
    interval(
        wilson(72, 100, 0.95),
        0.72,
        0.625_119_712_9,
        0.798_603_147_9,
    );
    interval(wilson(1, 2, 0.90), 0.5, 0.120_866_319_4, 0.879_133_680_6);
    interval(wilson(45, 50, 0.99), 0.9, 0.740_269_210_4, 0.966_009_116_2);
}

#[test]
fn wilson_edge_cases() {
    let empty = wilson(0, 0, 0.95);
    assert_eq!((empty.estimate, empty.low, empty.high), (0.0, 0.0, 1.0));
    // More successes than trials is clamped, not a panic or a rate above 1.
    assert_eq!(wilson(12, 10, 0.95), wilson(10, 10, 0.95));
    // A NaN level is read as 95%.
    assert_eq!(wilson(8, 10, f64::NAN), wilson(8, 10, 0.95));
}

#[test]
fn bootstrap_is_deterministic_given_the_seed() {
    let values: Vec<f64> = (0..30).map(|i| f64::from(i % 7) / 6.0).collect();
    let a = bootstrap_mean(&values, 0.95, 500, 42);
    let b = bootstrap_mean(&values, 0.95, 500, 42);
    let c = bootstrap_mean(&values, 0.95, 500, 43);
    assert_eq!(a, b);
    assert_ne!((a.low, a.high), (c.low, c.high));
    assert!(a.low <= a.estimate && a.estimate <= a.high);
    // 0 resamples means the documented default.
    assert_eq!(
        bootstrap_mean(&values, 0.95, 0, 7),
        bootstrap_mean(&values, 0.95, DEFAULT_RESAMPLES, 7)
    );
}

#[test]
fn bootstrap_known_degenerate_cases() {
    let empty = bootstrap_mean(&[], 0.95, 100, 1);
    assert_eq!((empty.estimate, empty.low, empty.high), (0.0, 0.0, 0.0));
    let one = bootstrap_mean(&[0.7], 0.95, 100, 1);
    assert_eq!((one.estimate, one.low, one.high), (0.7, 0.7, 0.7));
    let constant = bootstrap_mean(&[0.25; 12], 0.95, 100, 1);
    assert_eq!((constant.low, constant.high), (0.25, 0.25));
    // Two values: resample means are 0, 0.5, 1 with probabilities ¼, ½, ¼, so with 2000
    // resamples the 2.5% and 97.5% quantiles are 0 and 1.
    let two = bootstrap_mean(&[0.0, 1.0], 0.95, 2000, 9);
    assert_eq!((two.estimate, two.low, two.high), (0.5, 0.0, 1.0));
}

#[test]
fn bootstrap_agrees_with_normal_theory_on_a_large_sample() {
    let mut rng = fastrand::Rng::with_seed(5);
    let values: Vec<f64> = (0..400).map(|_| rng.f64()).collect();
    let m = values.iter().sum::<f64>() / 400.0;
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 399.0;
    let half = 1.959_964 * (var / 400.0).sqrt();
    let ci = bootstrap_mean(&values, 0.95, 2000, 11);
    close(ci.high - ci.low, 2.0 * half, 0.1 * 2.0 * half);
    close((ci.high + ci.low) / 2.0, m, 0.2 * half);
}

#[test]
fn bootstrap_coverage_is_near_nominal() {
    // 200 samples of 40 uniform values: the 95% interval should hold the true mean (0.5)
    // about 95% of the time (the percentile bootstrap runs slightly under at this size).
    let mut rng = fastrand::Rng::with_seed(2024);
    let covered = (0..200)
        .filter(|trial| {
            let values: Vec<f64> = (0..40).map(|_| rng.f64()).collect();
            bootstrap_mean(&values, 0.95, 500, *trial).contains(0.5)
        })
        .count();
    assert!((176..=199).contains(&covered), "coverage {covered}/200");
}

#[test]
fn mcnemar_exact_known_p_values() {
    close(mcnemar_exact(1, 9), 0.021_484_375, 1e-12);
    close(mcnemar_exact(9, 1), 0.021_484_375, 1e-12);
    close(mcnemar_exact(0, 5), 0.0625, 1e-12);
    close(mcnemar_exact(2, 10), 0.038_574_218_75, 1e-12);
    close(mcnemar_exact(0, 10), 0.001_953_125, 1e-12);
    close(mcnemar_exact(25, 40), 0.081_681_533_941_5, 1e-10);
    close(mcnemar_exact(400, 500), 0.000_956_444_136_919, 1e-12);
    assert_eq!(mcnemar_exact(3, 3), 1.0);
    assert_eq!(mcnemar_exact(0, 0), 1.0);
}

#[test]
fn wilcoxon_hand_computed_exact_example() {
    // |d| ranks: 0.25→1 (negative), 0.5→2, 0.75→3, 1→4, 1.5→5, 2→6; W+ = 21 - 1 = 20.
    // Of the 64 sign patterns, 2 have W+ ≥ 20 (and 2 have W+ ≤ 1): p = 2·2/64 = 0.0625.
    let w = wilcoxon_signed_rank(&[0.5, 1.0, -0.25, 2.0, 1.5, 0.75]);
    assert_eq!((w.nonzero, w.w_plus, w.exact), (6, 20.0, true));
    close(w.p_value, 0.0625, 1e-12);
    // A zero difference is dropped (Wilcoxon's zero handling), so nothing changes.
    assert_eq!(
        wilcoxon_signed_rank(&[0.5, 1.0, -0.25, 0.0, 2.0, 1.5, 0.75]),
        w
    );
}

#[test]
fn wilcoxon_exact_with_ties() {
    // |d| = 1,1,2,2,3 → ranks 1.5,1.5,3.5,3.5,5; W+ = 13.5. Sign patterns with W+ ≥ 13.5:
    // those leaving out ranks summing to ≤ 1.5, i.e. none or one of the 1.5s: 3 of 32.
    let w = wilcoxon_signed_rank(&[1.0, -1.0, 2.0, 2.0, 3.0]);
    assert_eq!((w.nonzero, w.w_plus), (5, 13.5));
    close(w.p_value, 0.1875, 1e-12);
    // Brute-force enumeration of 2^12 sign patterns (ties and a zero; float noise such as
    // 0.3 - 0.2 must still tie with 0.1).
    let d = [
        0.1,
        -0.2,
        0.2,
        0.3,
        -0.1,
        0.4,
        0.5,
        0.2,
        -0.3,
        0.6,
        0.0,
        0.7,
        0.3 - 0.2,
    ];
    let w = wilcoxon_signed_rank(&d);
    assert_eq!((w.nonzero, w.w_plus), (12, 63.5));
    close(w.p_value, 0.057_617_187_5, 1e-12);
}

#[test]
fn wilcoxon_exact_at_n_20() {
    // d = -1..-19 and +20: W+ = 20; 371 of the 2^20 subsets of 1..20 sum to ≤ 20.
    let mut d: Vec<f64> = (1..20).map(|i| -f64::from(i)).collect();
    d.push(20.0);
    let w = wilcoxon_signed_rank(&d);
    assert_eq!((w.nonzero, w.w_plus, w.exact), (20, 20.0, true));
    close(w.p_value, 2.0 * 371.0 / 1_048_576.0, 1e-12);
}

#[test]
fn wilcoxon_normal_approximation_above_50() {
    // 60 differences ((7i mod 11) - 4), 5 zeros → n = 55, heavy ties; W+ = 1045,
    // tie-corrected variance, continuity 0.5: z = 2.309404907878545, p = 0.02092112294230832.
    let d: Vec<f64> = (0..60).map(|i| f64::from((i * 7) % 11) - 4.0).collect();
    let w = wilcoxon_signed_rank(&d);
    assert_eq!((w.nonzero, w.w_plus, w.exact), (55, 1045.0, false));
    close(w.p_value, 0.020_921_122_942_308_32, 1e-7);
}

#[test]
fn wilcoxon_without_differences() {
    let w = wilcoxon_signed_rank(&[0.0, 0.0]);
    assert_eq!((w.nonzero, w.p_value), (0, 1.0));
    assert_eq!(wilcoxon_signed_rank(&[]).p_value, 1.0);
}

#[test]
fn paired_scores_known_example() {
    let baseline = [0.5; 6];
    let candidate = [1.0, 1.5, 0.25, 2.5, 2.0, 1.25];
    let paired = paired_scores(&baseline, &candidate, 0.95, 3);
    assert_eq!(paired.n, 6);
    // Differences 0.5, 1, -0.25, 2, 1.5, 0.75: mean 5.5/6.
    close(paired.mean_difference, 5.5 / 6.0, 1e-12);
    close(paired.p_value, 0.0625, 1e-12);
    assert!(paired.difference_ci.low <= paired.mean_difference);
    assert!(paired.mean_difference <= paired.difference_ci.high);
    assert!(paired.difference_ci.low >= -0.25 && paired.difference_ci.high <= 2.0);
    assert_eq!(paired, paired_scores(&baseline, &candidate, 0.95, 3));
}

#[test]
fn percentile_is_nearest_rank() {
    let latencies: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(percentile(&latencies, 95.0), Some(19.0));
    assert_eq!(percentile(&latencies, 50.0), Some(10.0));
    assert_eq!(percentile(&latencies, 100.0), Some(20.0));
    assert_eq!(percentile(&latencies, 0.0), Some(1.0));
    // ⌈0.95 · 10⌉ = 10th smallest; order of input does not matter.
    let ten = [
        900.0, 100.0, 300.0, 200.0, 1000.0, 400.0, 500.0, 700.0, 600.0, 800.0,
    ];
    assert_eq!(percentile(&ten, 95.0), Some(1000.0));
    assert_eq!(percentile(&ten, 90.0), Some(900.0));
    assert_eq!(percentile(&[], 95.0), None);
    assert_eq!(percentile(&ten, 101.0), None);
    assert_eq!(percentile(&ten, f64::NAN), None);
}

#[test]
fn property_wilson_is_a_valid_interval_around_the_estimate() {
    for n in 0..=60u64 {
        for k in 0..=n {
            let ci = wilson(k, n, 0.95);
            assert!(0.0 <= ci.low && ci.low <= ci.estimate && ci.estimate <= ci.high);
            assert!(ci.high <= 1.0, "{k}/{n}: {ci:?}");
            // Symmetric: k successes mirror n - k failures.
            let mirror = wilson(n - k, n, 0.95);
            close(ci.low, 1.0 - mirror.high, 1e-12);
        }
    }
}

#[test]
fn property_mcnemar_is_symmetric_and_a_probability() {
    for b in 0..40u64 {
        for c in 0..40u64 {
            let p = mcnemar_exact(b, c);
            assert!(p > 0.0 && p <= 1.0);
            assert_eq!(p, mcnemar_exact(c, b));
            if b < c {
                // A more lopsided split is at least as significant.
                assert!(mcnemar_exact(b, c + 1) <= p + 1e-15);
            }
        }
    }
}

#[test]
fn property_exact_wilcoxon_matches_brute_force_enumeration() {
    let mut rng = fastrand::Rng::with_seed(77);
    for _ in 0..200 {
        let n = rng.usize(1..=10);
        // Small integer magnitudes so that ties and zeros are common.
        let d: Vec<f64> = (0..n).map(|_| f64::from(rng.i32(-4..=4))).collect();
        let w = wilcoxon_signed_rank(&d);
        let nonzero: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
        let rank = |x: f64| {
            let below = nonzero.iter().filter(|y| y.abs() < x.abs()).count() as f64;
            let tied = nonzero.iter().filter(|y| y.abs() == x.abs()).count() as f64;
            below + (tied + 1.0) / 2.0
        };
        let ranks: Vec<f64> = nonzero.iter().map(|x| rank(*x)).collect();
        let observed: f64 = nonzero
            .iter()
            .zip(&ranks)
            .filter(|(x, _)| **x > 0.0)
            .map(|(_, r)| r)
            .sum();
        assert_eq!(w.w_plus, observed);
        let m = nonzero.len();
        let sums: Vec<f64> = (0..1u32 << m)
            .map(|mask| {
                (0..m)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| ranks[i])
                    .sum()
            })
            .collect();
        let total = sums.len() as f64;
        let lower = sums.iter().filter(|s| **s <= observed).count() as f64 / total;
        let upper = sums.iter().filter(|s| **s >= observed).count() as f64 / total;
        let expected = if m == 0 {
            1.0
        } else {
            (2.0 * lower.min(upper)).min(1.0)
        };
        close(w.p_value, expected, 1e-12);
    }
}
