//! Turning a notice into words and into an HTTP POST.

use keel_store::AuditEvent;
use serde_json::{json, Value};

use super::{AlertNotice, AlertState};

/// The one-paragraph text of an alert (Slack's `text`, the log line, the stored message).
pub fn text(n: &AlertNotice, changes: &[AuditEvent]) -> String {
    let head = match n.state {
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "RESOLVED",
        AlertState::Test => "TEST",
    };
    let mut out = format!(
        "[keel] {head} {} `{}` ({}): {}",
        n.source, n.name, n.scope, n.message
    );
    if n.state != AlertState::Resolved {
        if changes.is_empty() {
            out.push_str("\nRecent changes: none in the last 24 h.");
        } else {
            out.push_str("\nRecent changes:");
            for c in changes {
                out.push_str(&format!("\n- {}", describe(c)));
            }
        }
    }
    out
}

/// One audit event on one line: when, what, from → to, who and why.
pub fn describe(e: &AuditEvent) -> String {
    let when = time::OffsetDateTime::from_unix_timestamp(e.at_ms / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| e.at_ms.to_string());
    let mv = match (&e.from_value, &e.to_value) {
        (Some(a), Some(b)) => format!(" {a} → {b}"),
        (None, Some(b)) => format!(" → {b}"),
        _ => String::new(),
    };
    let why = e
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!("{when} {} {}{mv} by {}{why}", e.action, e.target, e.actor)
}

pub fn change_json(e: &AuditEvent) -> Value {
    json!({
        "at_ms": e.at_ms, "actor": e.actor, "action": e.action, "target": e.target,
        "from": e.from_value, "to": e.to_value, "reason": e.reason,
    })
}

/// POST the payload, retrying once on a connection error or a 5xx.
pub async fn webhook(client: &reqwest::Client, url: &str, payload: &Value) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        match client.post(url).json(payload).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_server_error() => {
                last = format!("webhook answered {}", r.status())
            }
            Ok(r) => return Err(format!("webhook answered {}", r.status())),
            Err(e) => last = format!("webhook unreachable: {}", e.without_url()),
        }
    }
    Err(last)
}
