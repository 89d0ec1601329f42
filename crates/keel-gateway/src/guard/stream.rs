//! Output checks on a stream, with two documented semantics per policy:
//!
//! - `stream = "window"` (default): as text flows, each new chunk is checked together
//!   with the last `window_chars` characters before it, so a match split across chunks
//!   is still caught. A `block` from a PII, secret or banned-term check, the length
//!   limit, or a tool call outside the allow-list ends the stream at once with an error
//!   event (the bytes before it were already sent). Matches are reported once, by the
//!   chunk that completes them.
//! - `stream = "final"`: nothing is checked until the stream ends; then every output
//!   check runs on the whole text and annotates the trace (`flag` where it would have
//!   blocked or redacted — the client already has the text).
//!
//! In both modes the checks that need the whole answer (leak, JSON schema, `log`
//! actions) run at the end and annotate the trace, and an output `redact` applies to
//! what is stored. Placeholders from a `restore = true` input redaction are put back as
//! the text flows; a placeholder split across chunks is held back until it is whole.

use keel_core::config::guardrails::{CheckKind, GuardAction, StreamChecks};
use keel_core::trace::{GuardEvidence, TraceRecord};

use super::input::InputGuarded;
use super::{describe, outcome, record, Applied};
use crate::error::GatewayError;
use crate::state::AppState;

/// The longest text held back while it might be the start of a placeholder
/// (`[GITHUB_TOKEN_123]` is 18).
const MAX_PLACEHOLDER: usize = 40;

pub struct StreamGuard {
    applied: Applied,
    input: InputGuarded,
    /// The recent output, at most the largest window of any window-mode policy.
    recent: String,
    window: usize,
    total_chars: u64,
    held: String,
    /// A window check blocked: the final checks are skipped (the stream was cut).
    blocked: bool,
}

impl StreamGuard {
    /// A guard for one stream, or `None` when no policy applies.
    pub fn new(applied: Applied, input: InputGuarded) -> Option<StreamGuard> {
        if applied.is_empty() {
            return None;
        }
        let window = applied
            .policies
            .iter()
            .filter_map(|p| match p.stream {
                StreamChecks::Window { chars } => Some(chars),
                StreamChecks::Final => None,
            })
            .max()
            .unwrap_or(0);
        Some(StreamGuard {
            applied,
            input,
            recent: String::new(),
            window,
            total_chars: 0,
            held: String::new(),
            blocked: false,
        })
    }

    /// Whether placeholders are being put back (text may be held back until the end).
    pub fn restoring(&self) -> bool {
        self.input.restore && !self.input.redaction.is_empty()
    }

    /// Check a new piece of text; returns what to send the client in its place.
    pub fn on_text(
        &mut self,
        app: &AppState,
        trace: &mut TraceRecord,
        delta: &str,
    ) -> Result<String, GatewayError> {
        self.total_chars += delta.chars().count() as u64;
        if self.window > 0 {
            let before = self.recent.len();
            self.recent.push_str(delta);
            let result = self.window_checks(app, trace, before);
            // Keep only the last `window` characters (on a char boundary).
            let n = self.recent.chars().count();
            if n > self.window {
                let cut = self
                    .recent
                    .char_indices()
                    .nth(n - self.window)
                    .map_or(0, |(i, _)| i);
                self.recent.drain(..cut);
            }
            if let Err(e) = result {
                self.blocked = true;
                return Err(e);
            }
        }
        if !self.restoring() {
            return Ok(delta.to_string());
        }
        self.held.push_str(delta);
        // Hold back a trailing `[…` that may still become a placeholder.
        let cut = match self.held.rfind('[') {
            Some(i) if !self.held[i..].contains(']') && self.held.len() - i < MAX_PLACEHOLDER => i,
            _ => self.held.len(),
        };
        let ready: String = self.held.drain(..cut).collect();
        Ok(self.input.redaction.restore(&ready).into_owned())
    }

    /// What was held back, at the end of the stream.
    pub fn flush(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        self.input.redaction.restore(&rest).into_owned()
    }

    fn window_checks(
        &self,
        app: &AppState,
        trace: &mut TraceRecord,
        new_from: usize,
    ) -> Result<(), GatewayError> {
        for p in &self.applied.policies {
            if !matches!(p.stream, StreamChecks::Window { .. }) {
                continue;
            }
            for c in &p.checks {
                let cfg = &c.cfg;
                if !cfg.on.output() || cfg.action != GuardAction::Block {
                    continue;
                }
                let ev: Vec<GuardEvidence> = match &cfg.kind {
                    CheckKind::Detect { kinds, .. } => keel_guardrails::scan(&self.recent, kinds)
                        .into_iter()
                        .filter(|f| f.end > new_from)
                        .map(|f| evidence(f.kind.as_str(), f.start, f.end))
                        .collect(),
                    CheckKind::Banned { .. } => match &c.terms {
                        Some(m) => m
                            .find(&self.recent)
                            .into_iter()
                            .filter(|t| t.end > new_from)
                            .map(|t| evidence("banned_term", t.start, t.end))
                            .collect(),
                        None => Vec::new(),
                    },
                    CheckKind::MaxLength { max_chars } if self.total_chars > *max_chars => {
                        vec![evidence(
                            &format!("length over {max_chars} characters"),
                            0,
                            0,
                        )]
                    }
                    _ => Vec::new(),
                };
                if ev.is_empty() {
                    continue;
                }
                let detail = describe(&ev);
                record(
                    app,
                    trace,
                    outcome(&p.name, cfg, "output", "block", None, ev),
                );
                return Err(GatewayError::GuardrailBlocked {
                    policy: p.name.clone(),
                    check: cfg.name.clone(),
                    stage: "output",
                    detail: format!("the answer contains {detail}; the stream was stopped"),
                });
            }
        }
        Ok(())
    }

    /// A tool call's name arrived: window-mode policies block one outside the allow-list.
    pub fn on_tool_name(
        &mut self,
        app: &AppState,
        trace: &mut TraceRecord,
        name: &str,
    ) -> Result<(), GatewayError> {
        for p in &self.applied.policies {
            if !matches!(p.stream, StreamChecks::Window { .. }) {
                continue;
            }
            for c in &p.checks {
                let CheckKind::Tools { allow } = &c.cfg.kind else {
                    continue;
                };
                if c.cfg.action == GuardAction::Block && !allow.contains_key(name) {
                    let ev = vec![evidence(&format!("tool:{name}"), 0, 0)];
                    record(
                        app,
                        trace,
                        outcome(&p.name, &c.cfg, "output", "block", None, ev),
                    );
                    self.blocked = true;
                    return Err(GatewayError::GuardrailBlocked {
                        policy: p.name.clone(),
                        check: c.cfg.name.clone(),
                        stage: "output",
                        detail: format!(
                            "the model proposed a call to `{name}`, which is not on the allow-list; the stream was stopped"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// At the end of the stream: every output check on the whole answer, annotating the
    /// trace. Returns the output as it may be stored (redacted where a check redacts).
    pub fn finish(
        &self,
        app: &AppState,
        trace: &mut TraceRecord,
        output: &str,
        tools: &[(String, String)],
    ) -> Option<String> {
        if self.blocked {
            return None;
        }
        let mut stored: Option<String> = None;
        for (p, c) in self.applied.checks() {
            let cfg = &c.cfg;
            if !cfg.on.output() {
                continue;
            }
            let mut score = None;
            let ev: Vec<GuardEvidence> = match &cfg.kind {
                CheckKind::Detect { kinds, .. } => {
                    let found = keel_guardrails::scan(output, kinds);
                    if !found.is_empty() && cfg.action == GuardAction::Redact {
                        let mut red = keel_guardrails::Redaction::new();
                        let base = stored.as_deref().unwrap_or(output);
                        let again = keel_guardrails::scan(base, kinds);
                        stored = Some(red.redact(base, &again).into_owned());
                    }
                    found
                        .into_iter()
                        .map(|f| evidence(f.kind.as_str(), f.start, f.end))
                        .collect()
                }
                CheckKind::Banned { .. } | CheckKind::MaxLength { .. } => c.find_in(output).0,
                CheckKind::Leak { threshold } if !self.input.system_prompt.trim().is_empty() => {
                    let r = keel_guardrails::leak(output, &self.input.system_prompt);
                    score = Some(r.score);
                    if r.score >= *threshold {
                        r.evidence
                            .iter()
                            .map(|e| evidence("system_prompt_overlap", e.start, e.end))
                            .collect()
                    } else {
                        Vec::new()
                    }
                }
                CheckKind::JsonSchema {
                    schema: Some(schema),
                    ..
                } if tools.is_empty() => match keel_guardrails::check_json_schema(output, schema) {
                    Ok(()) => Vec::new(),
                    Err(_) => vec![evidence("schema_violation", 0, 0)],
                },
                CheckKind::Tools { allow } => {
                    for (i, (name, args)) in tools.iter().enumerate() {
                        let refused = super::output::tool_refusal(allow, name, args);
                        let action = if refused.is_none() { "allow" } else { "flag" };
                        let ev = vec![evidence(&format!("tool:{name}"), i, i + 1)];
                        record(
                            app,
                            trace,
                            outcome(&p.name, cfg, "output", action, None, ev),
                        );
                    }
                    Vec::new()
                }
                _ => Vec::new(),
            };
            if ev.is_empty() {
                continue;
            }
            let action = if cfg.action == GuardAction::Log {
                "log"
            } else {
                "flag"
            };
            record(
                app,
                trace,
                outcome(&p.name, cfg, "output", action, score, ev),
            );
        }
        stored
    }
}

fn evidence(what: &str, start: usize, end: usize) -> GuardEvidence {
    GuardEvidence {
        what: what.to_string(),
        message: None,
        start,
        end,
    }
}
