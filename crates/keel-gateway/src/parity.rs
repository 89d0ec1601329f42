//! Shadow parity: how a function's shadow variant compares with the live calls it
//! mirrored, and whether it is at parity — one definition, used by `keel shadow report`
//! and the dashboard's Experiments page, so both say the same thing.
//!
//! Agreement is judged on pairs where both calls succeeded: exact agreement (trimmed text
//! equal) and ROUGE-L similarity with a bootstrap interval. Errors are compared as rates
//! over all pairs; cost over pairs priced on both sides.

use keel_stats::intervals::{bootstrap_mean, percentile, Interval};
use keel_stats::text::rouge_l_f1;
use keel_store::shadow::{ShadowPair, ShadowSide};
use serde::Serialize;

/// The similarity a shadow must reach by default (`keel shadow report --threshold`).
pub const DEFAULT_THRESHOLD: f64 = 0.8;

/// One side of the pairs (live or shadow).
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub requests: usize,
    pub error_rate: f64,
    pub mean_cost_nanos: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
}

/// How a function's shadow compares with the live calls it mirrored.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowParity {
    pub function: String,
    pub pairs: usize,
    /// Pairs where both calls succeeded: the basis of agreement.
    pub compared: usize,
    pub exact_agreement: Option<f64>,
    pub similarity: Option<Interval>,
    pub live: Side,
    pub shadow: Side,
    /// Over pairs priced on both sides.
    pub cost_change_pct: Option<f64>,
    /// With --judge: the judge's agreement score (factuality of the shadow's answer
    /// against the live one).
    pub judge: Option<Interval>,
    pub at_parity: bool,
    pub reasons: Vec<String>,
}

fn side(pairs: &[&ShadowPair], pick: fn(&ShadowPair) -> &ShadowSide) -> Side {
    let n = pairs.len();
    let errors = pairs.iter().filter(|p| pick(p).status != "ok").count();
    let latencies: Vec<f64> = pairs.iter().map(|p| pick(p).latency_ms as f64).collect();
    let costs: Vec<f64> = pairs
        .iter()
        .filter_map(|p| pick(p).cost_nanos)
        .map(|c| c as f64)
        .collect();
    Side {
        requests: n,
        error_rate: if n == 0 {
            0.0
        } else {
            errors as f64 / n as f64
        },
        mean_cost_nanos: (!costs.is_empty())
            .then(|| costs.iter().sum::<f64>() / costs.len() as f64),
        latency_p50_ms: percentile(&latencies, 50.0),
        latency_p95_ms: percentile(&latencies, 95.0),
    }
}

/// The parity of `function`'s shadow over `pairs`: the shadow is at parity when its mean
/// ROUGE-L similarity to the live answer (over pairs where both calls succeeded) reaches
/// `threshold` and its error rate is at most 2 points above live's.
pub fn shadow_parity(function: &str, pairs: &[ShadowPair], threshold: f64) -> ShadowParity {
    let all: Vec<&ShadowPair> = pairs.iter().collect();
    let ok: Vec<&ShadowPair> = pairs
        .iter()
        .filter(|p| p.live.status == "ok" && p.shadow.status == "ok")
        .collect();
    let text = |o: &Option<String>| o.as_deref().unwrap_or("").trim().to_string();
    let sims: Vec<f64> = ok
        .iter()
        .map(|p| rouge_l_f1(&text(&p.shadow.output), &text(&p.live.output)))
        .collect();
    let exact = ok
        .iter()
        .filter(|p| text(&p.live.output) == text(&p.shadow.output))
        .count();
    let similarity = (!sims.is_empty()).then(|| bootstrap_mean(&sims, 0.95, 2000, 7));
    let live = side(&all, |p| &p.live);
    let shadow = side(&all, |p| &p.shadow);
    let both_priced: Vec<(i64, i64)> = pairs
        .iter()
        .filter_map(|p| Some((p.live.cost_nanos?, p.shadow.cost_nanos?)))
        .collect();
    let cost_change_pct = {
        let (l, s) = both_priced.iter().fold((0i64, 0i64), |(a, b), (l, s)| {
            (a.saturating_add(*l), b.saturating_add(*s))
        });
        (l > 0).then(|| (s - l) as f64 * 100.0 / l as f64)
    };
    let mut reasons = Vec::new();
    match &similarity {
        None => reasons.push("no pair where both calls succeeded".to_string()),
        Some(iv) if iv.estimate < threshold => reasons.push(format!(
            "similarity {:.3} [{:.3}–{:.3}] is below {threshold:.2}",
            iv.estimate, iv.low, iv.high
        )),
        Some(_) => {}
    }
    if shadow.error_rate > live.error_rate + 0.02 {
        reasons.push(format!(
            "shadow error rate {:.1}% vs live {:.1}%",
            shadow.error_rate * 100.0,
            live.error_rate * 100.0
        ));
    }
    ShadowParity {
        function: function.to_string(),
        pairs: pairs.len(),
        compared: ok.len(),
        exact_agreement: (!ok.is_empty()).then(|| exact as f64 / ok.len() as f64),
        similarity,
        live,
        shadow,
        cost_change_pct,
        judge: None,
        at_parity: reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(variant: &str, status: &str, out: &str, cost: Option<i64>, ms: u64) -> ShadowSide {
        ShadowSide {
            variant: Some(variant.into()),
            upstream_model: None,
            prompt_version: Some(1),
            status: status.into(),
            error_class: None,
            output: Some(out.into()),
            cost_nanos: cost,
            latency_ms: ms,
        }
    }

    fn pair(live: &str, shadow: &str, shadow_status: &str) -> ShadowPair {
        ShadowPair {
            live_id: "x".into(),
            started_at_ms: 1,
            live: side("control", "ok", live, Some(100), 10),
            shadow: side("candidate", shadow_status, shadow, Some(150), 20),
        }
    }

    #[test]
    fn identical_answers_are_at_parity_with_the_cost_delta() {
        let pairs: Vec<_> = (0..20)
            .map(|_| pair("refunds take 30 days", "refunds take 30 days", "ok"))
            .collect();
        let r = shadow_parity("f", &pairs, 0.8);
        assert!(r.at_parity, "{:?}", r.reasons);
        assert_eq!(r.exact_agreement, Some(1.0));
        assert_eq!(r.cost_change_pct.map(|c| c.round()), Some(50.0));
    }

    #[test]
    fn different_answers_or_more_errors_are_not_at_parity() {
        let pairs: Vec<_> = (0..20)
            .map(|_| pair("refunds take 30 days", "please contact support", "ok"))
            .collect();
        let r = shadow_parity("f", &pairs, 0.8);
        assert!(!r.at_parity);
        assert!(r.reasons[0].contains("similarity"), "{:?}", r.reasons);
        let mut pairs: Vec<_> = (0..20).map(|_| pair("a b c", "a b c", "ok")).collect();
        for p in pairs.iter_mut().take(5) {
            p.shadow.status = "error".into();
        }
        let r = shadow_parity("f", &pairs, 0.8);
        assert!(
            r.reasons.iter().any(|m| m.contains("error rate")),
            "{:?}",
            r.reasons
        );
    }

    #[test]
    fn agreement_is_judged_on_pairs_where_both_calls_answered() {
        // The dashboard once said 81.8% identical where the CLI said 100%: it counted
        // failed calls as disagreement. One definition now: failures are error rates.
        let mut pairs: Vec<_> = (0..11)
            .map(|_| pair("same answer", "same answer", "ok"))
            .collect();
        for p in pairs.iter_mut().take(2) {
            p.shadow.status = "error".into();
            p.shadow.output = None;
        }
        let r = shadow_parity("f", &pairs, DEFAULT_THRESHOLD);
        assert_eq!((r.pairs, r.compared), (11, 9));
        assert_eq!(r.exact_agreement, Some(1.0));
        assert!((r.shadow.error_rate - 2.0 / 11.0).abs() < 1e-9);
    }
}
