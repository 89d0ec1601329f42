//! The postmortem draft `keel incident export ID --markdown` writes: summary, impact,
//! timeline, suspects, actions taken and notes — the facts, for people to finish.

use std::fmt::Write;

use keel_store::incidents::Incident;

use crate::suspects::Suspect;
use crate::timeline::{fmt, Timeline};

/// Format a Unix ms time as UTC (`2026-12-05 14:03 UTC`).
pub fn utc(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// The Markdown draft.
pub fn markdown(incident: &Incident, timeline: &Timeline, suspects: &[Suspect]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Incident {}: {}\n", incident.id, incident.title);
    let _ = writeln!(
        s,
        "- **Status:** {}{}",
        incident.status,
        incident
            .closed_at_ms
            .map(|t| format!(
                " (closed {} by {})",
                utc(t),
                incident.closed_by.as_deref().unwrap_or("?")
            ))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "- **Kind:** {}",
        incident.kind.as_deref().unwrap_or("unclassified")
    );
    let _ = writeln!(
        s,
        "- **Scope:** {}",
        incident.scope.as_deref().unwrap_or("global")
    );
    let _ = writeln!(
        s,
        "- **Opened:** {} by {}{}",
        utc(incident.opened_at_ms),
        incident.opened_by,
        incident
            .alert_rule
            .as_ref()
            .map(|r| format!(" (alert rule `{r}`)"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "- **Window:** {} – {}\n",
        utc(timeline.since_ms),
        utc(timeline.until_ms)
    );
    let _ = writeln!(s, "## Summary\n");
    let _ = writeln!(
        s,
        "{}\n",
        incident
            .summary
            .as_deref()
            .unwrap_or("_(to write: what happened, who was affected, how it was resolved)_")
    );
    let _ = writeln!(s, "## Impact\n");
    let shifts: Vec<_> = timeline
        .metrics
        .iter()
        .flat_map(|m| m.change_points.iter())
        .collect();
    if shifts.is_empty() {
        let _ = writeln!(s, "No metric of the scope shifted in the window.\n");
    }
    for c in &shifts {
        let _ = writeln!(
            s,
            "- `{}` went from {} to {} at {}",
            c.metric,
            fmt(c.point.before),
            fmt(c.point.after),
            utc(c.point.at_ms)
        );
    }
    let _ = writeln!(s, "\n## Timeline\n");
    let _ = writeln!(s, "| time (UTC) | what | detail |\n|---|---|---|");
    for e in &timeline.entries {
        let _ = writeln!(
            s,
            "| {} | {} | {}{} |",
            utc(e.at_ms),
            cell(&format!("**{}** {}", e.kind, e.title)),
            cell(&e.detail),
            e.actor
                .as_ref()
                .map(|a| format!(" — {}", cell(a)))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(s, "\n## Suspects\n");
    if suspects.is_empty() {
        let _ = writeln!(s, "No recorded change precedes the first shift.");
    }
    for (i, x) in suspects.iter().take(5).enumerate() {
        let _ = writeln!(
            s,
            "{}. `{} {}` by {} at {} — {}{}",
            i + 1,
            x.action,
            x.target,
            x.actor,
            utc(x.at_ms),
            x.why,
            x.revert
                .as_ref()
                .map(|r| format!("\n   - revert: `{r}`"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(s, "\n## Actions taken\n");
    let actions: Vec<_> = timeline
        .entries
        .iter()
        .filter(|e| e.kind == "action")
        .collect();
    if actions.is_empty() {
        let _ = writeln!(s, "_(none recorded)_");
    }
    for a in actions {
        let _ = writeln!(
            s,
            "- {} {} — {}{}",
            utc(a.at_ms),
            a.title,
            a.detail,
            a.actor
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(s, "\n## Notes\n");
    for n in timeline.entries.iter().filter(|e| e.kind == "note") {
        let _ = writeln!(
            s,
            "- {} {}: {}",
            utc(n.at_ms),
            n.actor.as_deref().unwrap_or("?"),
            n.detail
        );
    }
    let _ = writeln!(
        s,
        "\n## Follow-ups\n\n- [ ] An eval case for what failed\n- [ ] A guardrail, budget or alert that would have caught it sooner\n"
    );
    s
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_civil_time() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(
            super::utc(1_791_936_000_000 + 3_723_000),
            "2026-10-14 01:02 UTC"
        );
    }
}
