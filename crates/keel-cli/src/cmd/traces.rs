//! `keel traces list | show`: find and read recorded calls (`purge` is `traces_purge`).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use keel_core::trace::{TraceRecord, TraceStatus};
use keel_store::TraceFilter;

use crate::since::{format_ms, parse_since};
use crate::ConfigArg;

#[derive(Subcommand)]
pub enum TracesCommand {
    /// List traces, newest first.
    List(Box<ListArgs>),
    /// Show one trace in full.
    Show(ShowArgs),
    /// Remove every trace of a user, tenant or session and what derives from them (a
    /// data-protection request), audited.
    Purge(super::traces_purge::PurgeArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only traces newer than this (e.g. 30m, 24h, 7d, or an RFC 3339 time).
    #[arg(long)]
    since: Option<String>,
    /// Model requested, sent upstream, or served.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    feature: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    session: Option<String>,
    /// ok, error or client_disconnected.
    #[arg(long)]
    status: Option<String>,
    /// Error class, e.g. upstream_rate_limit, invalid_request.
    #[arg(long)]
    error: Option<String>,
    /// Function called (`model = "support-answer"`).
    #[arg(long)]
    function: Option<String>,
    /// Variant of the function that served.
    #[arg(long)]
    variant: Option<String>,
    /// live, shadow, eval, replay or judge (default: all; the table's `origin` column says which).
    #[arg(long)]
    origin: Option<String>,
    /// Calls with a score on METRIC below VALUE (0..1), e.g. `helpful=0.5`.
    #[arg(long, value_name = "METRIC=VALUE")]
    score_below: Option<String>,
    /// Calls this online eval judged as failing.
    #[arg(long, value_name = "NAME")]
    failed_eval: Option<String>,
    /// Most traces to show (0 = all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON (one array of traces).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The request id (x-keel-request-id).
    id: String,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: TracesCommand) -> Result<ExitCode> {
    match cmd {
        TracesCommand::List(a) => list(*a),
        TracesCommand::Show(a) => show(a),
        TracesCommand::Purge(a) => super::traces_purge::run(a),
    }
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let status = match a.status.as_deref() {
        None => None,
        Some(s) => match TraceStatus::parse(s) {
            Some(st) => Some(st),
            None => bail!("--status `{s}` is not a status; use ok, error or client_disconnected"),
        },
    };
    let origin = match a.origin.as_deref() {
        None => None,
        Some(s) => match keel_core::trace::Origin::parse(s) {
            Some(o) => Some(o),
            None => {
                bail!("--origin `{s}` is not an origin; use live, shadow, eval, replay or judge")
            }
        },
    };
    let score_below = match a.score_below.as_deref() {
        None => None,
        Some(s) => {
            let parsed = s
                .split_once('=')
                .and_then(|(m, v)| Some((m.trim(), v.trim().parse::<f64>().ok()?)))
                .filter(|(m, v)| !m.is_empty() && v.is_finite());
            match parsed {
                Some((m, v)) => Some((m.to_string(), v)),
                None => {
                    bail!("--score-below `{s}` is not METRIC=VALUE; e.g. --score-below helpful=0.5")
                }
            }
        }
    };
    let filter = TraceFilter {
        score_below,
        failed_eval: a.failed_eval,
        origin,
        since_ms: a.since.as_deref().map(parse_since).transpose()?,
        model: a.model,
        tenant: a.tenant,
        feature: a.feature,
        user: a.user,
        session: a.session,
        status,
        error_class: a.error,
        function: a.function,
        variant: a.variant,
        limit: a.limit,
        ..TraceFilter::default()
    };
    let (_store, conn) = super::open_store(&config)?;
    let traces = keel_store::list_traces(&conn, &filter)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&traces)?);
        return Ok(ExitCode::SUCCESS);
    }
    if traces.is_empty() {
        println!("No traces match.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "time",
        "id",
        "origin",
        "model",
        "status",
        "tokens in/out",
        "cost",
        "latency",
        "tenant",
        "feature",
        "user",
    ]);
    for tr in &traces {
        t.add_row(row(tr));
    }
    println!("{t}");
    println!(
        "{} trace{}",
        traces.len(),
        if traces.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// One row of `traces list`: origin shown, so shadow (and eval, replay) traces are
/// never mistaken for live calls.
fn row(tr: &TraceRecord) -> [String; 11] {
    [
        format_ms(tr.started_at_ms),
        tr.id.clone(),
        tr.origin.as_str().to_string(),
        tr.model_requested.clone().unwrap_or_else(|| "-".into()),
        status_text(tr),
        match (tr.input_tokens, tr.output_tokens) {
            (Some(i), Some(o)) => format!("{i}/{o}"),
            _ => "-".into(),
        },
        cost_text(tr),
        format!("{} ms", tr.latency_ms),
        tr.tenant.clone().unwrap_or_else(|| "-".into()),
        tr.feature.clone().unwrap_or_else(|| "-".into()),
        tr.user.clone().unwrap_or_else(|| "-".into()),
    ]
}

fn status_text(t: &TraceRecord) -> String {
    match (&t.status, &t.error_class) {
        (TraceStatus::Ok, _) => "ok".into(),
        (s, Some(c)) => format!("{} ({c})", s.as_str()),
        (s, None) => s.as_str().into(),
    }
}

fn cost_text(t: &TraceRecord) -> String {
    match (t.cost, t.unpriced) {
        (Some(c), _) => c.to_string(),
        (None, true) => "unpriced".into(),
        (None, false) => "-".into(),
    }
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (_store, conn) = super::open_store(&config)?;
    let Some(t) = keel_store::get_trace(&conn, &a.id)? else {
        eprintln!("no trace with id `{}` in {}", a.id, config.gateway.store);
        return Ok(ExitCode::from(1));
    };
    // What the call sent to its provider (a function's prompt rendered again).
    let sent = keel_gateway::rendered::sent_messages(conn.db(), &t);
    // What the app's users said about the call (`POST /v1/feedback`).
    let feedback = keel_store::feedback_for_trace(&conn, &t.id)?;
    // Ids are unique: later calls that sent the same request id have their own.
    let reused = keel_store::reused_request_id(&conn, &t.id, 20)?;
    if !reused.is_empty() {
        eprintln!(
            "note: later calls also sent the request id `{}`; they are stored as: {}",
            t.id,
            reused.join(", ")
        );
    }
    let scores = keel_store::scores::scores_for_trace(&conn, &t.id)?;
    if a.json {
        let mut v = serde_json::to_value(&t)?;
        v["sent_messages"] = match &sent {
            Ok(m) => serde_json::to_value(m)?,
            Err(_) => serde_json::Value::Null,
        };
        v["scores"] = scores_json(&scores);
        v["feedback"] = feedback.iter().map(keel_store::Feedback::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let rows: Vec<(&str, String)> = vec![
        ("id", t.id.clone()),
        ("time", format_ms(t.started_at_ms)),
        ("api", format!("{} {}", t.api, t.endpoint)),
        (
            "status",
            format!("{} (HTTP {})", status_text(&t), t.http_status),
        ),
        ("error", opt(&t.error_message)),
        ("model requested", opt(&t.model_requested)),
        ("function", opt(&t.function)),
        ("variant", opt(&t.variant)),
        (
            "prompt",
            match (&t.prompt_name, t.prompt_version) {
                (Some(n), Some(v)) => format!("{n} v{v}"),
                _ => "-".into(),
            },
        ),
        ("release", opt(&t.release_id)),
        ("origin", t.origin.as_str().to_string()),
        ("provider", opt(&t.provider)),
        ("upstream model", opt(&t.upstream_model)),
        ("served model", opt(&t.served_model)),
        ("fingerprint", opt(&t.system_fingerprint)),
        ("stream", t.stream.to_string()),
        ("tokens in", num(t.input_tokens)),
        ("tokens out", num(t.output_tokens)),
        ("cached tokens", num(t.cached_tokens)),
        ("reasoning tokens", num(t.reasoning_tokens)),
        ("cost", cost_text(&t)),
        (
            "usage",
            if t.usage_estimated {
                "estimated by Keel (the stream ended without the provider's usage)".into()
            } else {
                "as the provider reported it".into()
            },
        ),
        ("latency", format!("{} ms", t.latency_ms)),
        (
            "time to first token",
            t.ttft_ms
                .map(|v| format!("{v} ms"))
                .unwrap_or_else(|| "-".into()),
        ),
        ("finish reason", opt(&t.finish_reason)),
        ("tenant", opt(&t.tenant)),
        ("feature", opt(&t.feature)),
        ("user", opt(&t.user)),
        ("session", opt(&t.session)),
        ("key", opt(&t.key_id)),
        (
            "tags",
            if t.tags.is_empty() {
                "-".into()
            } else {
                t.tags.join(", ")
            },
        ),
    ];
    for (k, v) in rows {
        println!("{k:>20}  {v}");
    }
    print_scores(&scores);
    if !t.attempts.is_empty() {
        println!("\n--- attempts ---");
        for (i, a) in t.attempts.iter().enumerate() {
            println!(
                "{:>3}. {} ({} {}): {} in {} ms{}",
                i + 1,
                a.model,
                a.provider,
                a.upstream_model,
                a.outcome,
                a.latency_ms,
                a.error
                    .as_deref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            );
        }
    }
    println!(
        "\n--- input ---\n{}",
        t.input.as_deref().unwrap_or("(not captured)")
    );
    println!("\n--- sent to the provider ---");
    match &sent {
        Ok(messages) => {
            for m in messages {
                println!("[{}] {}", m.role, m.text_content());
            }
        }
        Err(why) => println!("(cannot be shown: {why})"),
    }
    println!(
        "\n--- output ---\n{}",
        t.output.as_deref().unwrap_or("(not captured)")
    );
    print_feedback(&feedback);
    Ok(ExitCode::SUCCESS)
}

/// `"scores"` of `traces show --json`.
fn scores_json(scores: &[keel_store::scores::StoredScore]) -> serde_json::Value {
    scores
        .iter()
        .map(|s| {
            serde_json::json!({
                "eval": s.eval,
                "metric": s.metric,
                "value": s.value,
                "passed": s.passed,
                "reason": s.reason,
                "source": s.source,
                "judge_cost_usd": s.judge_cost_nanos.map(|n| keel_core::money::Nanos(n).as_dollars()),
                "at": format_ms(s.created_at_ms),
            })
        })
        .collect()
}

pub(crate) fn print_scores(scores: &[keel_store::scores::StoredScore]) {
    if scores.is_empty() {
        return;
    }
    println!("\n--- scores ---");
    for s in scores {
        println!(
            "{:>20}  {} {:.2} {} ({}){}",
            s.eval,
            s.metric,
            s.value,
            if s.passed { "pass" } else { "FAIL" },
            s.source,
            s.reason
                .as_deref()
                .map(|r| format!(" — {r}"))
                .unwrap_or_default()
        );
    }
}

/// `name = value (source, time): comment`, one line per feedback value.
pub(crate) fn print_feedback(feedback: &[keel_store::Feedback]) {
    println!("\n--- feedback ---");
    if feedback.is_empty() {
        println!("(none)");
    }
    for f in feedback {
        let comment = f
            .comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        println!(
            "{} = {} ({}, {}){comment}",
            f.name,
            f.value,
            f.source,
            format_ms(f.at_ms)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::trace::Origin;

    #[test]
    fn a_listed_trace_shows_its_origin() {
        let mut t = TraceRecord::new("s-1".into(), 0, "openai", "/v1/chat/completions");
        t.origin = Origin::Shadow;
        assert_eq!(row(&t)[2], "shadow");
        assert_eq!(Origin::parse("shadow"), Some(Origin::Shadow));
    }
}
