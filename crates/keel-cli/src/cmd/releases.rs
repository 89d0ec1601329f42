//! `keel releases`: lineage — what shipped together (prompt version × pinned model ×
//! parameters × tools), when it served, and its traffic, errors, cost and latency, beside
//! its online quality (pass rate of judged calls, share of positive feedback), so a
//! canary is judged on quality too.

use std::process::ExitCode;

use anyhow::Result;
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use keel_store::quality_figures::format_rate;
use keel_store::{ReleaseFilter, ReleaseRow};
use serde_json::Value;

use crate::since::{format_ms, parse_since};
use crate::ConfigArg;

#[derive(clap::Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only the releases of this function.
    #[arg(long)]
    function: Option<String>,
    /// Count traffic from here (30m, 24h, 30d or an RFC 3339 time), and leave out releases
    /// that neither served nor were deployed since. Default: all time.
    #[arg(long)]
    since: Option<String>,
    /// Most releases to show, newest first (0 = all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON (one array of releases, with every field).
    #[arg(long)]
    json: bool,
}

const NO_RELEASES: &str = "No releases yet — releases are recorded when a function is served (see [functions] in the README).";

pub fn run(a: ReleasesArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let filter = ReleaseFilter {
        function: a.function.clone(),
        since_ms: a.since.as_deref().map(parse_since).transpose()?,
        limit: a.limit,
    };
    let (_store, conn) = super::open_store(&config)?;
    let rows = keel_store::list_releases(&conn, &filter)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        let any = ReleaseFilter {
            limit: 1,
            ..ReleaseFilter::default()
        };
        if keel_store::list_releases(&conn, &any)?.is_empty() {
            println!("{NO_RELEASES}");
        } else {
            println!("No releases match{}.", describe(&filter));
        }
        return Ok(ExitCode::SUCCESS);
    }

    println!("{}", table(&rows));
    let unpriced: u64 = rows.iter().map(|r| r.traffic.unpriced_calls).sum();
    let window = match filter.since_ms {
        Some(ms) => format!("traffic since {}", format_ms(ms)),
        None => "traffic over all time".to_string(),
    };
    println!(
        "{} release{}; {window}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    if unpriced > 0 {
        let calls = if unpriced == 1 {
            "call has"
        } else {
            "calls have"
        };
        println!(
            "Costs are priced calls only: {unpriced} {calls} no known price (unknown, not $0) — add the model's price."
        );
    }
    if a.function.is_some() {
        println!("\n{}", details(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(f: &ReleaseFilter) -> String {
    let mut parts = Vec::new();
    if let Some(func) = &f.function {
        parts.push(format!("function `{func}`"));
    }
    if let Some(ms) = f.since_ms {
        parts.push(format!("served or deployed since {}", format_ms(ms)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn table(rows: &[ReleaseRow]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "release",
        "function/variant",
        "prompt",
        "model",
        "first served",
        "last served",
        "requests",
        "errors",
        "cost",
        "cost/call",
        "p50/p95",
        "online pass (95% CI)",
        "feedback +",
        "latest eval",
    ]);
    for r in rows {
        let rel = &r.release;
        let tr = &r.traffic;
        t.add_row([
            rel.id.clone(),
            format!("{}/{}", rel.function, rel.variant),
            format!("{} v{}", rel.prompt_name, rel.prompt_version),
            rel.upstream_model.clone(),
            r.first_served_ms.map_or_else(|| "never".into(), short_time),
            r.last_served_ms.map_or_else(|| "never".into(), short_time),
            tr.requests.to_string(),
            tr.error_rate
                .map_or_else(|| "-".into(), |e| format!("{:.1}%", e * 100.0)),
            cost_text(r),
            tr.cost_per_call
                .map_or_else(|| "-".into(), |c| c.nanos().to_string()),
            tr.latency_ms
                .map_or_else(|| "-".into(), |p| format!("{}/{} ms", p.p50, p.p95)),
            online_pass_text(r),
            feedback_text(r),
            eval_text(r),
        ]);
    }
    for col in 6..=12 {
        if let Some(c) = t.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// The online pass rate with its interval and how many calls were judged.
fn online_pass_text(r: &ReleaseRow) -> String {
    match &r.quality {
        Some(q) if q.judged > 0 => format!(
            "{} of {}",
            format_rate(q.pass_rate, q.pass_rate_low, q.pass_rate_high),
            q.judged
        ),
        _ => "-".into(),
    }
}

/// The share of positive feedback (thumbs up, `true`) among positive and negative.
fn feedback_text(r: &ReleaseRow) -> String {
    match r.quality.as_ref().map(|q| &q.feedback) {
        Some(f) if f.positive + f.negative > 0 => format!(
            "{:.0}% of {}",
            f.positive_rate.unwrap_or(0.0) * 100.0,
            f.positive + f.negative
        ),
        _ => "-".into(),
    }
}

/// The newest eval run of the release: suite, pass rate and gate.
fn eval_text(r: &ReleaseRow) -> String {
    match r.evals.first() {
        None => "-".into(),
        Some(e) => {
            let rate = if e.cases > 0 {
                format!("{:.0}%", e.passed as f64 * 100.0 / e.cases as f64)
            } else {
                "-".into()
            };
            let gate = match e.gate_passed {
                Some(true) => " gate ok",
                Some(false) => " gate FAILED",
                None => "",
            };
            format!("{} {rate}{gate}", e.suite)
        }
    }
}

/// The total of priced calls, and how many calls have no known cost.
fn cost_text(r: &ReleaseRow) -> String {
    let tr = &r.traffic;
    match (tr.priced_calls, tr.unpriced_calls) {
        (0, 0) => "-".into(),
        (0, u) => format!("unpriced ({u})"),
        (_, 0) => tr.cost.nanos().to_string(),
        (_, u) => format!("{} + {u} unpriced", tr.cost.nanos()),
    }
}

/// `2026-11-23 12:00` (UTC): the table has no room for seconds.
fn short_time(ms: i64) -> String {
    let full = format_ms(ms);
    match full.get(..16) {
        Some(minutes) if full.ends_with(" UTC") => minutes.to_string(),
        _ => full,
    }
}

/// Each release's parameters and tools, one line each.
fn details(rows: &[ReleaseRow]) -> String {
    let mut out = String::from("Parameters and tools:");
    for r in rows {
        let params = Value::Object(r.release.params.clone()).to_string();
        let tools = match &r.release.tools {
            None => "none".to_string(),
            Some(tools) if tools.is_empty() => "none".to_string(),
            Some(tools) => tools.iter().map(tool_name).collect::<Vec<_>>().join(", "),
        };
        out.push_str(&format!(
            "\n  {}  params {params}  tools {tools}",
            r.release.id
        ));
    }
    out
}

/// An OpenAI-shaped tool's function name, else its type.
fn tool_name(tool: &Value) -> String {
    tool.pointer("/function/name")
        .or_else(|| tool.get("name"))
        .or_else(|| tool.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}
