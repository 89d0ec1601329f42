//! Where alerts go (`[alert_destinations.NAME]`): a webhook (Slack-compatible JSON),
//! PagerDuty Events API v2, or the log; and the check that a rule's `to` names them.

use std::collections::BTreeMap;

use super::alerting::{issue, Destination, RawDestination, PAGERDUTY_EVENTS_URL};
use super::error::ConfigIssue;

pub(crate) fn validate_destinations(
    raw: &BTreeMap<String, RawDestination>,
    issues: &mut Vec<ConfigIssue>,
) -> BTreeMap<String, Destination> {
    let mut out = BTreeMap::new();
    out.insert("log".to_string(), Destination::Log);
    for (name, d) in raw {
        let path = format!("alert_destinations.{name}");
        let dest = match (d.kind.as_str(), &d.url) {
            ("webhook", Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Destination::Webhook { url: url.clone() }
            }
            ("webhook", _) => {
                issue(
                    issues,
                    format!("{path}.url"),
                    "a webhook needs an http(s) url".into(),
                    "e.g. url = \"https://hooks.slack.com/services/...\"",
                );
                continue;
            }
            ("pagerduty", url) => match pagerduty(&path, d, url.as_deref(), issues) {
                Some(p) => p,
                None => continue,
            },
            ("log", None) => Destination::Log,
            ("log", Some(_)) => {
                issue(
                    issues,
                    format!("{path}.url"),
                    "a log destination takes no url".into(),
                    "remove url, or use kind = \"webhook\"",
                );
                continue;
            }
            (other, _) => {
                issue(
                    issues,
                    format!("{path}.kind"),
                    format!("unknown destination kind `{other}`"),
                    "use \"webhook\", \"pagerduty\" or \"log\"",
                );
                continue;
            }
        };
        if !matches!(dest, Destination::PagerDuty { .. })
            && (d.routing_key_env.is_some() || d.severity.is_some())
        {
            issue(
                issues,
                path.clone(),
                "routing_key_env and severity apply to kind = \"pagerduty\" only".into(),
                "remove them, or use kind = \"pagerduty\"",
            );
        }
        out.insert(name.clone(), dest);
    }
    out
}

/// A `kind = "pagerduty"` destination, checked.
fn pagerduty(
    path: &str,
    d: &RawDestination,
    url: Option<&str>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Destination> {
    let url = url.unwrap_or(PAGERDUTY_EVENTS_URL).to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        issue(
            issues,
            format!("{path}.url"),
            format!("`{url}` is not an http(s) URL"),
            "leave it out for PagerDuty's own endpoint",
        );
        return None;
    }
    let Some(env) = d.routing_key_env.clone().filter(|e| !e.trim().is_empty()) else {
        issue(
            issues,
            format!("{path}.routing_key_env"),
            "a pagerduty destination names the environment variable holding its routing key"
                .into(),
            "e.g. routing_key_env = \"PAGERDUTY_ROUTING_KEY\" (the key itself never goes in keel.toml)",
        );
        return None;
    };
    let severity = d.severity.clone().unwrap_or_else(|| "error".into());
    if !["critical", "error", "warning", "info"].contains(&severity.as_str()) {
        issue(
            issues,
            format!("{path}.severity"),
            format!("unknown severity `{severity}`"),
            "use critical, error, warning or info",
        );
        return None;
    }
    Some(Destination::PagerDuty {
        url,
        routing_key_env: env,
        severity,
    })
}

pub(crate) fn check_destinations(
    issues: &mut Vec<ConfigIssue>,
    path: &str,
    to: &[String],
    destinations: &BTreeMap<String, Destination>,
) {
    for t in to {
        if !destinations.contains_key(t) {
            issue(
                issues,
                path.into(),
                format!("alert destination `{t}` is not configured"),
                "add [alert_destinations.NAME], or use \"log\"",
            );
        }
    }
}
