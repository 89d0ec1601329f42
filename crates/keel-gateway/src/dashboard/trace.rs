//! `/ui/traces/{id}`: one trace — who called, what was asked (the messages or a
//! function's variables, as captured), the output, every attempt, what the guardrails
//! did, tokens, cost and timings, and the release and prompt version that served it.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Html;
use keel_core::trace::TraceRecord;
use serde_json::Value;

use super::html::{esc, ms, opt, shell, table, urlenc, usd, when, PageError};
use super::read;
use crate::state::AppState;

/// Key/value rows as a definition table.
fn facts(id: &str, rows: &[(&str, String)]) -> String {
    let mut out = format!("<table class=\"facts\" id=\"{id}\"><tbody>");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    }
    out.push_str("</tbody></table>");
    out
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A message's content: text as is, parts (or anything else) as pretty JSON.
fn content(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("text").and_then(Value::as_str) {
                Some(t) => t.to_string(),
                None => pretty(p),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => pretty(other),
    }
}

/// The captured input: system text, messages and variables when it parses as a chat
/// request, else the raw text.
pub(crate) fn input(raw: Option<&str>) -> String {
    let Some(raw) = raw else {
        return "<p class=\"empty\">Not captured (<code>capture</code> is off for this call).</p>"
            .into();
    };
    let Ok(v) = serde_json::from_str::<Value>(raw) else {
        return format!("<pre>{}</pre>", esc(raw));
    };
    let mut out = String::new();
    if let Some(system) = v.get("system").filter(|s| !s.is_null()) {
        let _ = write!(
            out,
            "<div class=\"msg system\"><div class=\"role\">system</div><pre>{}</pre></div>",
            esc(&content(system))
        );
    }
    if let Some(msgs) = v.get("messages").and_then(Value::as_array) {
        for m in msgs {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("?");
            let mut text = content(m.get("content").unwrap_or(&Value::Null));
            if let Some(calls) = m.get("tool_calls") {
                text.push_str(&pretty(calls));
            }
            let _ = write!(
                out,
                "<div class=\"msg {r}\"><div class=\"role\">{r}</div><pre>{}</pre></div>",
                esc(&text),
                r = esc(role)
            );
        }
    }
    if let Some(vars) = v.get("variables").filter(|s| !s.is_null()) {
        let _ = write!(out, "<h3>Variables</h3><pre>{}</pre>", esc(&pretty(vars)));
    }
    let _ = write!(
        out,
        "<details><summary>Request as received</summary><pre>{}</pre></details>",
        esc(&pretty(&v))
    );
    out
}

fn body(t: &TraceRecord) -> String {
    let who = facts(
        "who",
        &[
            ("request id", format!("<code>{}</code>", esc(&t.id))),
            ("started (UTC)", when(t.started_at_ms)),
            (
                "api / endpoint",
                format!("{} {}", esc(&t.api), esc(&t.endpoint)),
            ),
            ("origin", esc(t.origin.as_str())),
            ("key", opt(t.key_id.as_deref())),
            ("tenant", opt(t.tenant.as_deref())),
            ("feature", opt(t.feature.as_deref())),
            ("user", opt(t.user.as_deref())),
            ("session", opt(t.session.as_deref())),
            ("tags", esc(&t.tags.join(", "))),
            (
                "parent (shadowed call)",
                t.parent_id.as_deref().map_or("—".into(), |p| {
                    format!("<a href=\"/ui/traces/{}\">{}</a>", urlenc(p), esc(p))
                }),
            ),
        ],
    );
    let what = facts(
        "what",
        &[
            ("model requested", opt(t.model_requested.as_deref())),
            ("provider", opt(t.provider.as_deref())),
            ("upstream model", opt(t.upstream_model.as_deref())),
            ("served model", opt(t.served_model.as_deref())),
            ("fingerprint", opt(t.system_fingerprint.as_deref())),
            (
                "function / variant",
                format!(
                    "{} / {}",
                    opt(t.function.as_deref()),
                    opt(t.variant.as_deref())
                ),
            ),
            (
                "prompt",
                match (&t.prompt_name, t.prompt_version) {
                    (Some(n), Some(v)) => {
                        format!("<a href=\"/ui/prompts/{}\">{}</a> v{v}", esc(n), esc(n))
                    }
                    _ => "—".into(),
                },
            ),
            ("release", opt(t.release_id.as_deref())),
            ("stream", t.stream.to_string()),
            ("cache", opt(t.cache.as_deref())),
        ],
    );
    let status = format!("<span class=\"tag {s}\">{s}</span>", s = t.status.as_str());
    let outcome = facts(
        "outcome",
        &[
            ("status", status),
            ("HTTP status", t.http_status.to_string()),
            ("error class", opt(t.error_class.as_deref())),
            ("error", opt(t.error_message.as_deref())),
            ("finish reason", opt(t.finish_reason.as_deref())),
            ("input tokens", opt(t.input_tokens)),
            ("output tokens", opt(t.output_tokens)),
            ("cached tokens", opt(t.cached_tokens)),
            ("reasoning tokens", opt(t.reasoning_tokens)),
            (
                "cost",
                if t.unpriced {
                    "<span class=\"tag warn\">unpriced</span> (no known price: not $0)".into()
                } else {
                    t.cost.map_or("—".into(), usd)
                },
            ),
            ("saved by cache", t.saved_cost.map_or("—".into(), usd)),
            ("latency", ms(t.latency_ms)),
            ("time to first token", t.ttft_ms.map_or("—".into(), ms)),
        ],
    );
    let attempts: Vec<Vec<String>> = t
        .attempts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            vec![
                (i + 1).to_string(),
                esc(&a.model),
                esc(&a.provider),
                esc(&a.upstream_model),
                format!("<code>{}</code>", esc(&a.outcome)),
                ms(a.latency_ms),
                opt(a.error.as_deref()),
            ]
        })
        .collect();
    let attempts = if attempts.is_empty() {
        "<p class=\"empty\">One attempt: the first call answered (or the model has no retries or fallbacks).</p>".to_string()
    } else {
        table(
            "attempts",
            &[
                "#",
                "model",
                "provider",
                "upstream model",
                "outcome",
                "latency",
                "error",
            ],
            &attempts,
        )
    };
    let guards: Vec<Vec<String>> = t
        .guardrails
        .iter()
        .map(|g| {
            vec![
                esc(&g.policy),
                esc(&g.check),
                esc(&g.stage),
                format!("<code>{}</code>", esc(&g.action)),
                opt(g.score.map(|s| format!("{s:.3}"))),
                esc(&g
                    .evidence
                    .iter()
                    .map(|e| format!("{} [{}..{}]", e.what, e.start, e.end))
                    .collect::<Vec<_>>()
                    .join(", ")),
            ]
        })
        .collect();
    let output = match &t.output {
        Some(o) => format!("<pre id=\"output\">{}</pre>", esc(o)),
        None => "<p class=\"empty\">No output captured.</p>".into(),
    };
    format!(
        "<div class=\"grid\"><section class=\"third\"><h2>Who</h2>{who}</section>\
         <section class=\"third\"><h2>What</h2>{what}</section>\
         <section class=\"third\"><h2>Outcome</h2>{outcome}</section></div>\
         <h2>Input</h2>{}<h2>Output</h2>{output}<h2>Attempts</h2>{attempts}\
         <h2>Guardrails</h2>{}",
        input(t.input.as_deref()),
        table(
            "guardrails",
            &["policy", "check", "stage", "action", "score", "evidence"],
            &guards
        ),
    )
}

/// `GET /ui/traces/{id}`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Html<String>, PageError> {
    let want = id.clone();
    let found = read(&app, move |c| {
        let Some(t) = keel_store::get_trace(c, &want)? else {
            return Ok(None);
        };
        // The app's own spans (sent to POST /v1/traces) in the same OpenTelemetry trace.
        let spans = match &t.otel_trace_id {
            Some(tid) => keel_store::spans::spans_for_trace(c, tid)?,
            None => Vec::new(),
        };
        let sent = crate::rendered::sent_messages(c, &t);
        let reused = keel_store::reused_request_id(c, &t.id, 20)?;
        let feedback = keel_store::feedback_for_trace(c, &t.id)?;
        let scores = keel_store::scores::scores_for_trace(c, &t.id)?;
        let review = (
            keel_store::review::items_for_trace(c, &t.id)?,
            keel_store::review::labels_for_trace(c, &t.id)?,
        );
        Ok(Some((t, spans, sent, reused, (feedback, scores, review))))
    })
    .await?;
    let Some((t, spans, sent, reused, (feedback, scores, review))) = found else {
        return Err(PageError::NotFound(format!(
            "no trace with request id {id}"
        )));
    };
    let mut html = body(&t);
    html.push_str(&scores_section(&scores));
    html.push_str(&feedback_section(&feedback));
    let token = super::access::form_token(&app, &headers);
    html.push_str(&super::review_view::trace_review_section(
        &app.config.review_queues,
        &t.id,
        &review.0,
        &review.1,
        token.as_deref(),
    ));
    html.push_str(&super::add_to_dataset::form(
        &app,
        &t.id,
        token.as_deref(),
        &format!("/ui/traces/{}", super::html::urlenc(&t.id)),
        None,
    ));
    html.push_str(&sent_section(&sent));
    if !reused.is_empty() {
        // Ids are unique: later calls that sent this id are stored under their own.
        let links: Vec<String> = reused
            .iter()
            .map(|r| format!("<a href=\"/ui/traces/{}\">{}</a>", urlenc(r), esc(r)))
            .collect();
        html.push_str(&format!(
            "<p class=\"hint\" id=\"reused\">Later calls also sent this request id; each is \
             stored under its own id (the one sent kept as <code>client_request_id</code>): {}</p>",
            links.join(", ")
        ));
    }
    html.push_str(&app_spans(&t, &spans));
    Ok(shell(&format!("Trace {}", t.id), "/ui/traces", &html))
}

/// What online evals' judges found (`[[online_evals]]`): one row per assertion.
pub(crate) fn scores_section(scores: &[keel_store::scores::StoredScore]) -> String {
    if scores.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = scores
        .iter()
        .map(|s| {
            vec![
                esc(&s.eval),
                esc(&s.metric),
                format!("{:.2}", s.value),
                if s.passed {
                    "<span class=\"tag ok\">pass</span>".to_string()
                } else {
                    "<span class=\"tag fail\">fail</span>".to_string()
                },
                opt(s.reason.as_deref()),
                esc(&s.source),
                s.judge_cost_nanos.map_or_else(
                    || "–".to_string(),
                    |n| format!("${:.6}", keel_core::money::Nanos(n).as_dollars()),
                ),
                when(s.created_at_ms),
            ]
        })
        .collect();
    format!(
        "<h2>Scores</h2>{}",
        table(
            "scores",
            &[
                "online eval",
                "metric",
                "value",
                "result",
                "reason",
                "source",
                "judge cost",
                "at (UTC)"
            ],
            &rows
        )
    )
}

/// What the app's users said about the call (`POST /v1/feedback`), oldest first.
pub(crate) fn feedback_section(feedback: &[keel_store::Feedback]) -> String {
    if feedback.is_empty() {
        return "<h2>Feedback</h2><p class=\"empty\">No feedback on this call (an app sends it \
                to POST /v1/feedback with the call's request id).</p>"
            .to_string();
    }
    let rows: Vec<Vec<String>> = feedback
        .iter()
        .map(|f| {
            vec![
                esc(&f.name),
                format!("<code>{}</code>", esc(&f.value.to_string())),
                esc(&f.source),
                opt(f.comment.as_deref()),
                opt(f.key_id.as_deref()),
                when(f.at_ms),
            ]
        })
        .collect();
    format!(
        "<h2>Feedback</h2>{}",
        table(
            "feedback",
            &["name", "value", "source", "comment", "key", "at (UTC)"],
            &rows
        )
    )
}

/// The messages the call sent to its provider (a function's prompt rendered with the
/// recorded variables, then the caller's messages: `crate::rendered`).
pub(crate) fn sent_section(sent: &Result<Vec<keel_core::chat::Message>, String>) -> String {
    match sent {
        Ok(messages) => {
            let rows: Vec<Vec<String>> = messages
                .iter()
                .map(|m| {
                    let text = serde_json::to_value(&m.content)
                        .map(|v| content(&v))
                        .unwrap_or_default();
                    vec![esc(&m.role), format!("<pre>{}</pre>", esc(&text))]
                })
                .collect();
            format!(
                "<h2>Sent to the provider</h2>{}",
                table("sent", &["role", "content"], &rows)
            )
        }
        Err(why) => format!(
            "<h2>Sent to the provider</h2><p class=\"empty\">Cannot be shown: {}</p>",
            esc(why)
        ),
    }
}

/// The app's spans beside Keel's call: name, service, start relative to the call, duration.
fn app_spans(t: &TraceRecord, spans: &[keel_store::spans::AppSpan]) -> String {
    if spans.is_empty() {
        return "<h2>App spans</h2><p class=\"empty\">No spans from the app in this trace \
                (send them to POST /v1/traces with the same traceparent).</p>"
            .to_string();
    }
    let call_start_ns = i128::from(t.started_at_ms) * 1_000_000;
    let rows: Vec<Vec<String>> = spans
        .iter()
        .map(|s| {
            let offset_ms = (i128::from(s.start_unix_nano) - call_start_ns) as f64 / 1e6;
            let dur_ms = s.end_unix_nano.saturating_sub(s.start_unix_nano) as f64 / 1e6;
            vec![
                esc(&s.name),
                opt(s.service.clone()),
                format!("{offset_ms:+.1} ms"),
                format!("{dur_ms:.1} ms"),
                format!("<code>{}</code>", esc(&s.span_id)),
                opt(s.parent_span_id.clone()),
            ]
        })
        .collect();
    format!(
        "<h2>App spans</h2>{}",
        table(
            "app-spans",
            &[
                "span",
                "service",
                "start vs call",
                "duration",
                "span id",
                "parent"
            ],
            &rows
        )
    )
}
