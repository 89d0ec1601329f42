//! What a trace may keep of the text it saw: the one place the capture setting
//! (`[gateway] capture`, or a function's own `capture`) and guardrail redactions are
//! applied, just before the trace is handed to the writer — so a secret a policy
//! redacted or blocked never reaches the database.
//!
//! - `none`: no input or output text is kept.
//! - `redacted`: every PII and secret detector's findings are replaced by typed
//!   placeholders in the stored input and output.
//! - `full`: the text as it was — except that when a guardrail redacted, blocked or
//!   flagged something on this call, the stored text is redacted as under `redacted`.

use keel_core::config::Capture;
use keel_core::trace::TraceRecord;
use keel_guardrails::{Kind, Redaction};

use crate::state::AppState;

/// Every finding of every detector in `text` replaced, or `None` when there is none.
pub fn redact_all(text: &str) -> Option<String> {
    let found = keel_guardrails::scan(text, Kind::ALL);
    if found.is_empty() {
        return None;
    }
    let mut red = Redaction::new();
    Some(red.redact(text, &found).into_owned())
}

/// The capture mode of this trace: its function's, else the gateway's.
pub fn capture_for(app: &AppState, trace: &TraceRecord) -> Capture {
    trace
        .function
        .as_deref()
        .and_then(|f| app.config.functions.get(f))
        .and_then(|f| f.capture)
        .unwrap_or(app.capture)
}

/// Apply the capture mode and any guardrail redaction to the trace's text.
pub fn apply_capture(app: &AppState, trace: &mut TraceRecord) {
    let mode = capture_for(app, trace);
    if mode == Capture::None {
        trace.input = None;
        trace.output = None;
        return;
    }
    let guarded = trace
        .guardrails
        .iter()
        .any(|g| matches!(g.action.as_str(), "redact" | "block" | "flag"));
    if mode == Capture::Redacted || guarded {
        for text in [&mut trace.input, &mut trace.output].into_iter().flatten() {
            if let Some(r) = redact_all(text) {
                *text = r;
            }
        }
    }
}
