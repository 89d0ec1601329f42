//! A replay run's totals (what `keel replay` prints and stores as JSON), recorded vs candidate: cases, failures, identical outputs, and
//! per side the cost (priced calls only; unpriced ones counted, never $0), mean cost,
//! latency and tokens, with the change of the means.

use keel_store::{CallSide, ReplayRunDetail};
use serde::Serialize;

/// One side's aggregate over a run.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct SideTotals {
    /// Sum over this side's priced calls only.
    pub cost_nanos: i64,
    pub priced_calls: u64,
    /// Calls with no known price: left out of the cost, not counted as $0.
    pub unpriced_calls: u64,
    pub mean_cost_nanos: Option<f64>,
    pub mean_latency_ms: Option<f64>,
    pub mean_input_tokens: Option<f64>,
    pub mean_output_tokens: Option<f64>,
}

/// The run's totals, recorded vs candidate.
#[derive(Debug, Serialize, PartialEq)]
pub struct Totals {
    pub cases: u64,
    pub failures: u64,
    pub skipped: u64,
    /// Cases where the candidate answered exactly what was recorded.
    pub identical_outputs: u64,
    pub recorded: SideTotals,
    pub candidate: SideTotals,
    /// Change of the mean cost per priced call, in percent.
    pub mean_cost_change_pct: Option<f64>,
    pub mean_latency_change_pct: Option<f64>,
}

pub fn totals(d: &ReplayRunDetail) -> Totals {
    let cases = &d.results;
    let recorded = side_totals(cases.iter().map(|c| &c.recorded));
    let candidate = side_totals(cases.iter().filter(|c| c.error.is_none()).map(|c| &c.new));
    let identical = cases
        .iter()
        .filter(|c| {
            c.error.is_none() && c.new.output.is_some() && c.new.output == c.recorded.output
        })
        .count() as u64;
    Totals {
        cases: cases.len() as u64,
        failures: cases.iter().filter(|c| c.error.is_some()).count() as u64,
        skipped: d.run.skipped,
        identical_outputs: identical,
        mean_cost_change_pct: pct(recorded.mean_cost_nanos, candidate.mean_cost_nanos),
        mean_latency_change_pct: pct(recorded.mean_latency_ms, candidate.mean_latency_ms),
        recorded,
        candidate,
    }
}

fn side_totals<'a>(sides: impl Iterator<Item = &'a CallSide>) -> SideTotals {
    let sides: Vec<&CallSide> = sides.collect();
    let mean = |values: Vec<f64>| {
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let priced: Vec<i64> = sides
        .iter()
        .filter(|s| !s.unpriced)
        .filter_map(|s| s.cost_nanos.map(|c| c.0))
        .collect();
    SideTotals {
        cost_nanos: priced.iter().fold(0i64, |a, c| a.saturating_add(*c)),
        priced_calls: priced.len() as u64,
        unpriced_calls: sides.iter().filter(|s| s.unpriced).count() as u64,
        mean_cost_nanos: mean(priced.iter().map(|c| *c as f64).collect()),
        mean_latency_ms: mean(sides.iter().map(|s| s.latency_ms as f64).collect()),
        mean_input_tokens: mean(
            sides
                .iter()
                .filter_map(|s| s.input_tokens)
                .map(|n| n as f64)
                .collect(),
        ),
        mean_output_tokens: mean(
            sides
                .iter()
                .filter_map(|s| s.output_tokens)
                .map(|n| n as f64)
                .collect(),
        ),
    }
}

fn pct(old: Option<f64>, new: Option<f64>) -> Option<f64> {
    match (old, new) {
        (Some(o), Some(n)) if o > 0.0 => Some((n - o) / o * 100.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::money::Nanos;
    use keel_store::{ReplayCase, ReplayRun};

    fn side(cost: Option<i64>, unpriced: bool, latency: u64, out: &str) -> CallSide {
        CallSide {
            variant: Some("control".into()),
            prompt_version: Some(1),
            model: Some("mock-1".into()),
            output: Some(out.into()),
            input_tokens: Some(10),
            output_tokens: Some(4),
            cost_nanos: cost.map(Nanos),
            unpriced,
            latency_ms: latency,
        }
    }

    fn case(idx: u64, recorded: CallSide, new: CallSide, error: Option<&str>) -> ReplayCase {
        ReplayCase {
            idx,
            trace_id: format!("t{idx}"),
            recorded,
            new,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn unpriced_calls_are_left_out_of_cost_totals_and_counted() {
        let d = ReplayRunDetail {
            run: ReplayRun {
                id: "rpl_x".into(),
                created_at_ms: 0,
                finished_at_ms: Some(1),
                actor: "a".into(),
                function: "f".into(),
                candidate_kind: "model".into(),
                candidate_value: "m".into(),
                filters: serde_json::json!({}),
                cases: 3,
                failures: 1,
                skipped: 0,
            },
            results: vec![
                case(
                    0,
                    side(Some(2_000), false, 40, "a"),
                    side(Some(1_000), false, 20, "a"),
                    None,
                ),
                case(
                    1,
                    side(Some(4_000), false, 60, "b"),
                    side(None, true, 20, "c"),
                    None,
                ),
                case(
                    2,
                    side(None, true, 50, "d"),
                    side(None, false, 5, ""),
                    Some("upstream: boom"),
                ),
            ],
        };
        let t = totals(&d);
        assert_eq!((t.cases, t.failures, t.identical_outputs), (3, 1, 1));
        let r = &t.recorded;
        assert_eq!(
            (r.cost_nanos, r.priced_calls, r.unpriced_calls),
            (6_000, 2, 1)
        );
        let c = &t.candidate;
        assert_eq!(
            (c.cost_nanos, c.priced_calls, c.unpriced_calls),
            (1_000, 1, 1)
        );
        assert_eq!(t.mean_cost_change_pct, Some(-(2.0 / 3.0) * 100.0));
        assert_eq!(c.mean_latency_ms, Some(20.0), "failures are left out");
    }
}
