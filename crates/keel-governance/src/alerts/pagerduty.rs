//! PagerDuty Events API v2 (`kind = "pagerduty"`): a firing notice is a `trigger`, a
//! resolution a `resolve`, both keyed by the notice's dedup key so PagerDuty groups a
//! rule's firings into one alert and closes it when Keel resolves it. The routing key is
//! read from its environment variable when sending and never stored or logged.
//! PagerDuty answers 202 when it accepts an event; a 429 or 5xx is retried once.

use serde_json::{json, Value};

use super::{AlertNotice, AlertState};

/// PagerDuty's limits: `summary` up to 1024 characters, `dedup_key` up to 255.
const SUMMARY_MAX: usize = 1024;
const DEDUP_MAX: usize = 255;

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The event for `n` (`text` is the notice's words, `incident` its id and whether it
/// opened it).
pub fn event(
    n: &AlertNotice,
    text: &str,
    routing_key: &str,
    severity: &str,
    incident: Option<(i64, bool)>,
) -> Value {
    let dedup_key = cut(&n.dedupe_key, DEDUP_MAX);
    if n.state == AlertState::Resolved {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let timestamp = time::OffsetDateTime::from_unix_timestamp(n.at_ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    let summary = text.lines().next().unwrap_or(&n.message);
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": cut(summary, SUMMARY_MAX),
            "source": "keel",
            "severity": severity,
            "timestamp": timestamp,
            "component": n.scope,
            "group": n.name,
            "class": n.source,
            "custom_details": {
                "message": n.message,
                "value": n.value,
                "threshold": n.threshold,
                "text": text,
                "incident_id": incident.map(|i| i.0),
                "incident_page": incident.map(|i| super::incident_path(i.0)),
            },
        },
    })
}

/// Send one event; `Ok` on 2xx.
pub async fn send(client: &reqwest::Client, url: &str, event: &Value) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        match client.post(url).json(event).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                last = format!("PagerDuty answered {}", r.status())
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                return Err(format!("PagerDuty answered {status}: {}", cut(&body, 300)));
            }
            Err(e) => last = format!("PagerDuty unreachable: {}", e.without_url()),
        }
    }
    Err(last)
}
