//! How a replay run's totals (`keel_gateway::replay_totals`) are printed.

use comfy_table::CellAlignment;
use keel_core::money::Nanos;
pub(super) use keel_gateway::replay_totals::{totals, SideTotals, Totals};

use super::render::table;

pub(super) fn totals_text(t: &Totals) -> String {
    let mut out = format!(
        "Totals: {} case{}, {} candidate failure{}, {} of {} outputs identical",
        t.cases,
        if t.cases == 1 { "" } else { "s" },
        t.failures,
        if t.failures == 1 { "" } else { "s" },
        t.identical_outputs,
        t.cases
    );
    if t.skipped > 0 {
        out.push_str(&format!(
            "\n  {} trace{} had no captured input (capture = \"none\") and {} skipped",
            t.skipped,
            if t.skipped == 1 { "" } else { "s" },
            if t.skipped == 1 { "was" } else { "were" }
        ));
    }
    let mut tab = table();
    tab.set_header(["", "recorded", "candidate", "change"]);
    let (o, n) = (&t.recorded, &t.candidate);
    tab.add_row([
        "total cost".to_string(),
        side_cost(o),
        side_cost(n),
        String::new(),
    ]);
    tab.add_row([
        "mean cost".to_string(),
        o.mean_cost_nanos.map_or("-".into(), mean_dollars),
        n.mean_cost_nanos.map_or("-".into(), mean_dollars),
        percent(t.mean_cost_change_pct),
    ]);
    tab.add_row([
        "mean latency".to_string(),
        o.mean_latency_ms
            .map_or("-".into(), |v| format!("{v:.0} ms")),
        n.mean_latency_ms
            .map_or("-".into(), |v| format!("{v:.0} ms")),
        percent(t.mean_latency_change_pct),
    ]);
    let toks = |s: &SideTotals| match (s.mean_input_tokens, s.mean_output_tokens) {
        (None, None) => "-".to_string(),
        (i, o) => format!("{} / {}", one_decimal(i), one_decimal(o)),
    };
    tab.add_row([
        "mean tokens in/out".to_string(),
        toks(o),
        toks(n),
        String::new(),
    ]);
    if let Some(col) = tab.column_mut(3) {
        col.set_cell_alignment(CellAlignment::Right);
    }
    out.push_str(&format!("\n{tab}"));
    if t.failures > 0 {
        out.push_str("\n  The candidate's means are over the cases it answered.");
    }
    out
}

/// The priced total and how many calls are unpriced (never $0).
fn side_cost(s: &SideTotals) -> String {
    match (s.priced_calls, s.unpriced_calls) {
        (0, 0) => "-".into(),
        (0, u) => format!("unpriced ({u})"),
        (_, 0) => Nanos(s.cost_nanos).to_string(),
        (_, u) => format!("{} + {u} unpriced", Nanos(s.cost_nanos)),
    }
}

fn mean_dollars(nanos: f64) -> String {
    Nanos(nanos.round() as i64).to_string()
}

fn one_decimal(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(String::new, |p| format!("{p:+.1}%"))
}
