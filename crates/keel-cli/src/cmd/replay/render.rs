//! How a replay run reads: each case as a side-by-side block (recorded | candidate, with
//! deltas), then the totals; and the list of stored runs. `--json` prints the stored run
//! with the same totals. An unpriced call is shown as "unpriced", never as $0.

use anyhow::Result;
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, ContentArrangement, Table};
use keel_core::money::Nanos;
use keel_store::{CallSide, ReplayCase, ReplayRun, ReplayRunDetail};

use super::totals::{totals, totals_text};
use crate::since::format_ms;

/// The most characters of an output shown in a case block.
const OUTPUT_CHARS: usize = 280;
/// Table width when stdout is not a terminal.
const WIDTH: u16 = 120;

/// Print a run: JSON (run, cases and totals), or case blocks then totals.
pub fn print_run(d: &ReplayRunDetail, json: bool) -> Result<()> {
    let t = totals(d);
    if json {
        let mut v = serde_json::to_value(d)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("totals".into(), serde_json::to_value(&t)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let r = &d.run;
    println!(
        "Replay {} · function {} · candidate {} {} · by {} at {}{}",
        r.id,
        r.function,
        r.candidate_kind.replace('_', " "),
        r.candidate_value,
        r.actor,
        format_ms(r.created_at_ms),
        if r.finished_at_ms.is_none() {
            " · interrupted (partial)"
        } else {
            ""
        }
    );
    for c in &d.results {
        println!("\ncase {} · trace {}", c.idx + 1, c.trace_id);
        println!("{}", case_table(c));
    }
    println!("\n{}", totals_text(&t));
    Ok(())
}

fn case_table(c: &ReplayCase) -> Table {
    let (old, new) = (&c.recorded, &c.new);
    let mut t = table();
    t.set_header(["", "recorded", "candidate", "delta"]);
    t.add_row([
        "variant".to_string(),
        served(old),
        served(new),
        String::new(),
    ]);
    let same = c.error.is_none() && new.output.is_some() && new.output == old.output;
    t.add_row([
        "output".to_string(),
        clip(old.output.as_deref()),
        match &c.error {
            Some(e) => format!("error: {e}"),
            None => clip(new.output.as_deref()),
        },
        if same { "identical" } else { "changed" }.to_string(),
    ]);
    t.add_row([
        "tokens in/out".to_string(),
        tokens(old),
        tokens(new),
        format!(
            "{} / {}",
            delta_count(old.input_tokens, new.input_tokens),
            delta_count(old.output_tokens, new.output_tokens)
        ),
    ]);
    t.add_row([
        "cost".to_string(),
        cost(old),
        cost(new),
        match (priced(old), priced(new)) {
            (Some(o), Some(n)) => signed_dollars(n.0.saturating_sub(o.0)),
            _ => "-".to_string(),
        },
    ]);
    t.add_row([
        "latency".to_string(),
        format!("{} ms", old.latency_ms),
        format!("{} ms", new.latency_ms),
        format!("{:+} ms", new.latency_ms as i64 - old.latency_ms as i64),
    ]);
    if let Some(col) = t.column_mut(3) {
        col.set_cell_alignment(CellAlignment::Right);
    }
    t
}

pub(super) fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_content_arrangement(ContentArrangement::Dynamic);
    if !t.is_tty() {
        t.set_width(WIDTH);
    }
    t
}

/// `control v1 (mock-1)`.
fn served(s: &CallSide) -> String {
    let mut out = s.variant.clone().unwrap_or_else(|| "-".into());
    if let Some(v) = s.prompt_version {
        out.push_str(&format!(" v{v}"));
    }
    if let Some(m) = &s.model {
        out.push_str(&format!(" ({m})"));
    }
    out
}

fn clip(text: Option<&str>) -> String {
    let Some(text) = text else {
        return "(none)".into();
    };
    let mut out: String = text.chars().take(OUTPUT_CHARS).collect();
    if text.chars().count() > OUTPUT_CHARS {
        out.push('…');
    }
    out
}

fn tokens(s: &CallSide) -> String {
    let n = |v: Option<u64>| v.map_or_else(|| "-".into(), |n| n.to_string());
    format!("{} / {}", n(s.input_tokens), n(s.output_tokens))
}

fn delta_count(old: Option<u64>, new: Option<u64>) -> String {
    match (old, new) {
        (Some(o), Some(n)) => format!("{:+}", n as i64 - o as i64),
        _ => "-".into(),
    }
}

fn priced(s: &CallSide) -> Option<Nanos> {
    s.cost_nanos.filter(|_| !s.unpriced)
}

fn cost(s: &CallSide) -> String {
    match (s.unpriced, s.cost_nanos) {
        (true, _) => "unpriced".into(),
        (false, Some(c)) => c.to_string(),
        (false, None) => "-".into(),
    }
}

fn signed_dollars(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "+" };
    format!("{sign}{}", Nanos(nanos.saturating_abs()))
}

/// The stored runs, newest first.
pub fn runs_table(runs: &[ReplayRun]) -> Table {
    let mut t = table();
    t.set_header([
        "run",
        "created",
        "actor",
        "function",
        "candidate",
        "cases",
        "failures",
        "state",
    ]);
    for r in runs {
        t.add_row([
            r.id.clone(),
            format_ms(r.created_at_ms),
            r.actor.clone(),
            r.function.clone(),
            format!(
                "{} {}",
                r.candidate_kind.replace('_', " "),
                r.candidate_value
            ),
            r.cases.to_string(),
            r.failures.to_string(),
            if r.finished_at_ms.is_some() {
                "finished"
            } else {
                "interrupted"
            }
            .to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(cost: Option<i64>, unpriced: bool, out: &str) -> CallSide {
        CallSide {
            variant: Some("control".into()),
            prompt_version: Some(1),
            model: Some("mock-1".into()),
            output: Some(out.into()),
            input_tokens: Some(10),
            output_tokens: Some(4),
            cost_nanos: cost.map(Nanos),
            unpriced,
            latency_ms: 40,
        }
    }

    #[test]
    fn a_case_shows_both_sides_unpriced_and_errors() {
        let mut c = ReplayCase {
            idx: 0,
            trace_id: "t0".into(),
            recorded: side(Some(2_000), false, "old"),
            new: CallSide {
                variant: Some("control@v2".into()),
                prompt_version: Some(2),
                input_tokens: Some(12),
                ..side(None, true, "new")
            },
            error: None,
        };
        let block = case_table(&c).to_string();
        for want in [
            "control v1 (mock-1)",
            "control@v2 v2 (mock-1)",
            "old",
            "new",
            "changed",
            "+2 / +0",
            "$0.000002",
            "unpriced",
        ] {
            assert!(block.contains(want), "{want}:\n{block}");
        }
        assert!(!block.contains("$0.00 "), "{block}");
        c.error = Some("upstream: boom".into());
        assert!(case_table(&c).to_string().contains("error: upstream: boom"));
    }

    #[test]
    fn long_outputs_are_clipped() {
        let long = "x".repeat(OUTPUT_CHARS + 10);
        let c = clip(Some(&long));
        assert_eq!(c.chars().count(), OUTPUT_CHARS + 1);
        assert!(c.ends_with('…'));
        assert_eq!(clip(None), "(none)");
        assert_eq!(signed_dollars(-1_500), "-$0.0000015");
    }
}
