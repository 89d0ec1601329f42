//! How a prompt change's impact is shown: the full report of `keel prompt impact`, the one
//! paragraph of `keel prompt diff`, and the JSON of both.

use std::fmt::Write as _;

use comfy_table::Table;
use keel_core::money::Nanos;
use keel_registry::{TokenDelta, VariableSource};
use serde_json::{json, Value};

use super::{signed, signed_dollars, Impact, MONTH_DAYS};

/// `412.0 → 612.0 (+200.0, +48.5%)`, with `note` inside the parentheses when given.
fn delta_text(d: &TokenDelta, note: Option<&str>) -> String {
    let (old, new) = d.totals();
    let pct = d
        .delta_pct()
        .map_or(String::new(), |p| format!(", {p:+.1}%"));
    let note = note.map_or(String::new(), |n| format!("; {n}"));
    format!("{old:.1} → {new:.1} ({}{pct}{note})", signed(d.delta()))
}

fn price_text(p: Option<Nanos>) -> String {
    p.map_or("unpriced".to_string(), |p| format!("{p}/Mtok"))
}

/// The full report of `keel prompt impact`.
pub fn full(i: &Impact, since: &str) -> String {
    let mut out = String::new();
    let source = i.pair.source.describe();
    let candidate = match i.candidate {
        0 => "the prompts folder (not pushed)".to_string(),
        v => format!("v{v}"),
    };
    let _ = writeln!(out, "{}: v{} → {candidate}", i.name, i.baseline);
    for d in &i.tokens {
        let _ = writeln!(
            out,
            "Prompt tokens per call ({}; {source}): {}",
            d.encoding.label(),
            delta_text(d, None)
        );
        let parts = [("tools", d.tools), ("output schema", d.output_schema)];
        for (what, pair) in parts {
            if let Some((old, new)) = pair.filter(|(o, n)| o != n) {
                let _ = writeln!(out, "  {what}: {old} → {new} tokens");
            }
        }
    }
    if i.rows.is_empty() {
        let _ = writeln!(
            out,
            "No calls of `{}` since {since}: no cost projection (the change above is per call).",
            i.name
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Traffic since {since}: {} calls over {} observed day{}, projected to a {MONTH_DAYS}-day month",
        i.calls(),
        i.observed_days,
        if i.observed_days == 1 { "" } else { "s" }
    );
    let mut t = Table::new();
    t.set_header([
        "function",
        "upstream model",
        "counted by",
        "calls/month",
        "Δ tokens/call",
        "input price",
        "Δ cost/month",
    ]);
    for r in &i.rows {
        t.add_row([
            r.function.clone().unwrap_or_else(|| "—".into()),
            r.upstream_model.clone().unwrap_or_else(|| "—".into()),
            r.encoding.label().to_string(),
            format!("{:.0}", r.monthly_calls),
            signed(r.delta_tokens),
            price_text(r.input_per_mtok),
            r.monthly_change.map_or("unpriced".into(), signed_dollars),
        ]);
    }
    let _ = writeln!(out, "{t}");
    let _ = writeln!(out, "Projected monthly cost change: {}", total_text(i));
    out
}

/// The total, and what it leaves out.
fn total_text(i: &Impact) -> String {
    let unpriced = i.unpriced_calls();
    let note = match unpriced {
        0 => String::new(),
        n => format!(
            " ({n} call{} on unpriced models not included — set input_price_per_mtok on the model)",
            if n == 1 { "" } else { "s" }
        ),
    };
    match i.total() {
        Some(t) => format!("{}{note}", signed_dollars(t)),
        None => format!("unpriced{note}"),
    }
}

/// The "Token impact" paragraph of `keel prompt diff`.
pub fn paragraph(i: &Impact) -> String {
    let tokens: Vec<String> = i
        .tokens
        .iter()
        .map(|d| delta_text(d, Some(d.encoding.label())))
        .collect();
    let mut out = format!(
        "Token impact: prompt tokens per call {} — {}.",
        tokens.join("; "),
        i.pair.source.describe()
    );
    if i.rows.is_empty() {
        out.push_str(&format!(
            " No calls of this prompt in the last {MONTH_DAYS} days, so no cost projection."
        ));
    } else {
        out.push_str(&format!(
            " At the last {MONTH_DAYS} days' traffic ({} calls over {} observed days, on {}), the projected monthly cost change is {}.",
            i.calls(),
            i.observed_days,
            models_text(i),
            total_text(i)
        ));
    }
    out
}

fn models_text(i: &Impact) -> String {
    let mut models: Vec<&str> = i
        .rows
        .iter()
        .map(|r| r.upstream_model.as_deref().unwrap_or("an unknown model"))
        .collect();
    models.sort_unstable();
    models.dedup();
    models.join(", ")
}

fn source_json(s: &VariableSource) -> Value {
    let (kind, used, skipped) = match s {
        VariableSource::Recorded { used, skipped } => ("recorded", *used, *skipped),
        VariableSource::Synthetic { skipped } => ("synthetic", 0, *skipped),
    };
    json!({"source": kind, "recorded_used": used, "recorded_skipped": skipped,
        "description": s.describe()})
}

fn pair_json(p: Option<(u64, u64)>) -> Value {
    p.map_or(Value::Null, |(old, new)| json!({"old": old, "new": new}))
}

fn usd(n: Option<Nanos>, sign: bool) -> Value {
    n.map_or(Value::Null, |n| {
        if sign {
            json!(signed_dollars(n).replace('$', ""))
        } else {
            json!(n.to_dollar_string())
        }
    })
}

/// The machine-readable impact (`--json`).
pub fn to_json(i: &Impact) -> Value {
    let tokens: Vec<Value> = i
        .tokens
        .iter()
        .map(|d| {
            let (old, new) = d.totals();
            json!({"encoding": d.encoding.label(), "exact": d.encoding.is_exact(),
                "old": old, "new": new, "delta": d.delta(), "delta_pct": d.delta_pct(),
                "messages": {"old": d.old_messages, "new": d.new_messages},
                "tools": pair_json(d.tools), "output_schema": pair_json(d.output_schema)})
        })
        .collect();
    let models: Vec<Value> = i
        .rows
        .iter()
        .map(|r| {
            json!({"function": r.function, "upstream_model": r.upstream_model,
                "calls": r.calls, "monthly_calls": r.monthly_calls,
                "encoding": r.encoding.label(), "delta_tokens": r.delta_tokens,
                "input_per_mtok_usd": usd(r.input_per_mtok, false),
                "price_source": r.price_source, "unpriced": r.monthly_change.is_none(),
                "monthly_change_nanos": r.monthly_change.map(|c| c.0),
                "monthly_change_usd": usd(r.monthly_change, true)})
        })
        .collect();
    let total = i.total();
    json!({"name": i.name, "baseline": i.baseline, "candidate": i.candidate,
        "variables": source_json(&i.pair.source), "samples": i.pair.samples(),
        "tokens": tokens,
        "window": {"since_ms": i.since_ms, "until_ms": i.until_ms,
            "observed_days": i.observed_days, "month_days": MONTH_DAYS},
        "calls": i.calls(), "unpriced_calls": i.unpriced_calls(), "models": models,
        "monthly_change_nanos": total.map(|t| t.0), "monthly_change_usd": usd(total, true)})
}
