//! `keel eval history SUITE`: a suite's runs over time, one row per arm run, so a
//! quality drift can be traced to the prompt version, model or release that caused it.

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use keel_store::evals::EvalRun;

use super::view::percent;

const DASH: &str = "—";

fn started(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| DASH.into())
}

/// `function/variant`, else the model the run called directly.
fn target(r: &EvalRun) -> String {
    match (&r.run.function, &r.run.variant) {
        (Some(f), Some(v)) => format!("{f}/{v}"),
        (Some(f), None) => f.clone(),
        _ => or_dash(r.run.model.as_ref().map(|m| format!("model {m}"))),
    }
}

fn prompt(r: &EvalRun) -> String {
    match (&r.run.prompt_name, r.run.prompt_version) {
        (Some(name), Some(v)) => format!("{name} v{v}"),
        (None, Some(v)) => format!("v{v}"),
        (Some(name), None) => name.clone(),
        (None, None) => DASH.into(),
    }
}

/// `model → upstream` when they differ.
fn model(r: &EvalRun) -> String {
    let name = match (&r.run.model, &r.run.upstream_model) {
        (Some(m), Some(u)) if m != u => format!("{m} → {u}"),
        (Some(m), _) => m.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => DASH.into(),
    };
    // A scheduled canary's run also says which version answered.
    match &r.model_version {
        Some(v) => format!("{name} ({v})"),
        None => name,
    }
}

/// The case-level pass rate from the run's summary (the candidate's is a whole run
/// outcome, the baseline's its stats); else passed / results counted as the run went.
fn pass_rate(r: &EvalRun) -> String {
    let summary = r
        .summary_json
        .as_deref()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    let from_summary = summary.as_ref().and_then(|v| {
        v.pointer("/candidate/stats/pass_rate/estimate")
            .or_else(|| v.pointer("/pass_rate/estimate"))
            .and_then(serde_json::Value::as_f64)
    });
    match from_summary {
        Some(rate) => percent(rate),
        None if r.cases > 0 => percent(r.passed as f64 / r.cases as f64),
        None => DASH.into(),
    }
}

fn gate(r: &EvalRun) -> String {
    match r.gate_passed {
        Some(true) => "passed".into(),
        Some(false) => "FAILED".into(),
        None => DASH.into(),
    }
}

/// The runs (as listed by the store, newest first) as a table.
/// `versions` maps a dataset hash to the version `keel eval lock` recorded for it, so each
/// run shows which dataset it used (`v3 · sha256:1a2b3c4d`; the bare hash when it was
/// never locked).
pub fn render_history(
    runs: &[EvalRun],
    versions: &std::collections::BTreeMap<String, i64>,
) -> String {
    if runs.is_empty() {
        return "No eval runs recorded yet (run `keel eval run SUITE`).\n".into();
    }
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "started",
            "run",
            "role",
            "target",
            "prompt",
            "model",
            "release",
            "dataset",
            "cases",
            "pass rate",
            "gate",
            "status",
        ]);
    for r in runs {
        let cases = if r.run.repeat > 1 {
            format!("{} ({}×)", r.cases, r.run.repeat)
        } else {
            r.cases.to_string()
        };
        table.add_row([
            started(r.run.started_at_ms),
            r.run.id.clone(),
            r.run.role.clone(),
            target(r),
            prompt(r),
            model(r),
            or_dash(r.run.release_id.clone()),
            dataset(&r.run.dataset_hash, versions),
            cases,
            pass_rate(r),
            gate(r),
            r.status.clone(),
        ]);
    }
    for i in [8, 9] {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!("{table}\n")
}

/// The dataset a run used: its locked version and the hash's first 8 hex digits (the
/// short hash alone when that lock was made before versions were recorded; `unknown`
/// when the run recorded no hash).
fn dataset(hash: &str, versions: &std::collections::BTreeMap<String, i64>) -> String {
    let short: String = hash.trim_start_matches("sha256:").chars().take(8).collect();
    match versions.get(hash) {
        Some(v) => format!("v{v} · {short}"),
        None if short.is_empty() => "unknown".into(),
        None => short,
    }
}
