//! Input checks: on the rendered request, before admission, the cache and the upstream.
//!
//! What is looked at: the caller's messages — every role but `system` / `developer`
//! (the operator's own prompt; it is kept for the leak check instead). PII and secret
//! detectors, banned terms and the length limit read user, assistant and tool turns;
//! the injection check reads user and tool turns (tool results are where retrieved
//! content arrives). `redact` rewrites the request in place with typed placeholders,
//! one [`Redaction`] per request so one value keeps one placeholder across turns.

use keel_core::chat::{ChatRequest, Content};
use keel_core::config::guardrails::{CheckKind, GuardAction};
use keel_core::trace::{GuardEvidence, TraceRecord};
use keel_guardrails::Redaction;

use super::{describe, outcome, record, Applied};
use crate::error::GatewayError;
use crate::state::AppState;

/// What the output stage needs from the input stage.
#[derive(Default)]
pub struct InputGuarded {
    /// Placeholders → originals, from `redact` checks.
    pub redaction: Redaction,
    /// Put the originals back into the answer (a `restore = true` check redacted).
    pub restore: bool,
    /// The request's system and developer messages, for the leak check.
    pub system_prompt: String,
    /// Inputs an `injection_judge` check was unsure of: [`super::judge`] asks its model.
    pub unsure: Vec<super::judge::Unsure>,
}

fn is_operator(role: &str) -> bool {
    role == "system" || role == "developer"
}

/// Every text of the request's messages, with the message index and role.
fn texts(req: &ChatRequest) -> Vec<(usize, &str, &str)> {
    let mut out = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match &m.content {
            Some(Content::Text(s)) => out.push((i, m.role.as_str(), s.as_str())),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    if let Some(t) = &p.text {
                        out.push((i, m.role.as_str(), t.as_str()));
                    }
                }
            }
            None => {}
        }
    }
    out
}

/// Apply `f` to every text of message `i`, replacing it when `f` returns a new one.
fn rewrite(req: &mut ChatRequest, mut f: impl FnMut(usize, &str) -> Option<String>) {
    for (i, m) in req.messages.iter_mut().enumerate() {
        if is_operator(&m.role) {
            continue;
        }
        match &mut m.content {
            Some(Content::Text(s)) => {
                if let Some(new) = f(i, s) {
                    *s = new;
                }
            }
            Some(Content::Parts(parts)) => {
                for p in parts.iter_mut() {
                    if let Some(t) = &mut p.text {
                        if let Some(new) = f(i, t) {
                            *t = new;
                        }
                    }
                }
            }
            None => {}
        }
    }
}

/// Run every input check of `applied` on `req`.
pub fn check_input(
    app: &AppState,
    applied: &Applied,
    req: &mut ChatRequest,
    trace: &mut TraceRecord,
) -> Result<InputGuarded, GatewayError> {
    let mut out = InputGuarded::default();
    if applied.is_empty() {
        return Ok(out);
    }
    out.system_prompt = texts(req)
        .into_iter()
        .filter(|(_, role, _)| is_operator(role))
        .map(|(_, _, t)| t)
        .collect::<Vec<_>>()
        .join("\n");
    for (policy, check) in applied.checks() {
        let cfg = &check.cfg;
        if !cfg.on.input() {
            continue;
        }
        let mut evidence: Vec<GuardEvidence> = Vec::new();
        let mut score: Option<f64> = None;
        match &cfg.kind {
            CheckKind::MaxLength { .. } => {
                // Over the caller's whole input, not message by message.
                let all: String = texts(req)
                    .iter()
                    .filter(|(_, role, _)| !is_operator(role))
                    .map(|(_, _, t)| *t)
                    .collect::<Vec<_>>()
                    .join("\n");
                evidence = check.find_in(&all).0;
            }
            CheckKind::Leak { .. } | CheckKind::JsonSchema { .. } | CheckKind::Tools { .. } => {
                continue
            }
            CheckKind::Detect { .. }
            | CheckKind::Banned { .. }
            | CheckKind::Injection { .. }
            | CheckKind::InjectionJudge(_) => {
                let injection = matches!(
                    cfg.kind,
                    CheckKind::Injection { .. } | CheckKind::InjectionJudge(_)
                );
                let mut unsure: Vec<String> = Vec::new();
                for (i, role, text) in texts(req) {
                    if is_operator(role) || (injection && role != "user" && role != "tool") {
                        continue;
                    }
                    let (found, s) = check.find_in(text);
                    if let (CheckKind::InjectionJudge(j), Some(s)) = (&cfg.kind, s) {
                        if j.is_unsure(s) {
                            unsure.push(text.to_string());
                        }
                    }
                    score = match (score, s) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    evidence.extend(found.into_iter().map(|mut e| {
                        e.message = Some(i);
                        e
                    }));
                }
                if let CheckKind::InjectionJudge(j) = &cfg.kind {
                    if evidence.is_empty() && !unsure.is_empty() {
                        out.unsure.push(super::judge::Unsure {
                            policy: policy.name.clone(),
                            check: cfg.clone(),
                            judge: j.clone(),
                            score: score.unwrap_or(0.0),
                            texts: unsure,
                        });
                        continue;
                    }
                }
                if let CheckKind::Detect { kinds, restore } = &cfg.kind {
                    if !evidence.is_empty() && cfg.action == GuardAction::Redact {
                        let red = &mut out.redaction;
                        rewrite(req, |_, text| {
                            let found = keel_guardrails::scan(text, kinds);
                            (!found.is_empty()).then(|| red.redact(text, &found).into_owned())
                        });
                        out.restore |= *restore;
                    }
                }
            }
        }
        if evidence.is_empty() {
            continue;
        }
        let action = cfg.action;
        let detail = describe(&evidence);
        let o = outcome(&policy.name, cfg, "input", action.as_str(), score, evidence);
        record(app, trace, o);
        if action == GuardAction::Block {
            let found = match &cfg.kind {
                CheckKind::Injection { threshold }
                | CheckKind::InjectionJudge(keel_core::config::guardrails::InjectionJudge {
                    threshold,
                    ..
                }) => format!(
                    "the input looks like a prompt-injection attempt (score {:.2} ≥ {threshold}; {detail})",
                    score.unwrap_or(0.0)
                ),
                CheckKind::MaxLength { .. } => format!("the input is too long ({detail})"),
                CheckKind::Banned { .. } => format!("the input contains a banned term ({detail})"),
                _ => format!("the input contains {detail}"),
            };
            return Err(GatewayError::GuardrailBlocked {
                policy: policy.name.clone(),
                check: cfg.name.clone(),
                stage: "input",
                detail: format!("{found}; remove it and send the request again"),
            });
        }
    }
    Ok(out)
}
