//! Output checks on a whole answer, before it is returned: PII and secrets (redact,
//! block or log), banned terms, the length limit, system-prompt leakage, the JSON-schema
//! contract (ask again once with the validation error, fall back, or fail) and the tool
//! policy (every proposed tool call is recorded; one outside the allow-list or with
//! arguments that break their schema is blocked, stripped or logged). Last, when an
//! input check redacted with `restore = true`, the originals are put back into the
//! answer — after the checks, so the caller's own data is not mistaken for a leak.

use keel_core::chat::{ChatRequest, ChatResponse, Content};
use keel_core::config::guardrails::{CheckKind, GuardAction, SchemaFailure};
use keel_core::trace::{GuardEvidence, TraceRecord};
use serde_json::Value;

use super::input::InputGuarded;
use super::{describe, outcome, record, Applied};
use crate::error::GatewayError;
use crate::state::AppState;

/// What the caller of [`check_output`] must do next.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Return the (possibly edited) answer.
    Pass,
    /// The answer broke its JSON schema: ask again — the same model (`fallback` false)
    /// or the next of the chain — with `feedback` appended to the conversation.
    Reask { feedback: String, fallback: bool },
}

/// The JSON schema a request asked for with `response_format`
/// (`{"type": "json_schema", "json_schema": {"schema": …}}`), if any.
pub fn requested_schema(req: &ChatRequest) -> Option<&Value> {
    let rf = req.response_format.as_ref()?;
    (rf.get("type")?.as_str()? == "json_schema")
        .then(|| rf.get("json_schema")?.get("schema"))
        .flatten()
}

fn text_of(c: &Option<Content>) -> Option<&str> {
    match c {
        Some(Content::Text(s)) => Some(s),
        _ => None,
    }
}

/// Run every output check of `applied` on `resp`. `reasked`: this answer is already
/// the second try, so a broken schema is final.
pub fn check_output(
    app: &AppState,
    applied: &Applied,
    input: &InputGuarded,
    schema_asked: Option<&Value>,
    resp: &mut ChatResponse,
    trace: &mut TraceRecord,
    reasked: bool,
) -> Result<Verdict, GatewayError> {
    if applied.is_empty() {
        return Ok(Verdict::Pass);
    }
    for (policy, check) in applied.checks() {
        let cfg = &check.cfg;
        if !cfg.on.output() {
            continue;
        }
        let mut score = None;
        let mut evidence: Vec<GuardEvidence> = Vec::new();
        match &cfg.kind {
            CheckKind::Detect { kinds, .. } => {
                for choice in resp.choices.iter_mut() {
                    let Some(Content::Text(text)) = &mut choice.message.content else {
                        continue;
                    };
                    let found = keel_guardrails::scan(text, kinds);
                    evidence.extend(found.iter().map(|f| GuardEvidence {
                        what: f.kind.as_str().to_string(),
                        message: None,
                        start: f.start,
                        end: f.end,
                    }));
                    if !found.is_empty() && cfg.action == GuardAction::Redact {
                        // Its own placeholders: these values did not come from the caller.
                        let mut red = keel_guardrails::Redaction::new();
                        *text = red.redact(text, &found).into_owned();
                    }
                }
            }
            // Per answer text, the same matching as on input.
            CheckKind::Banned { .. } | CheckKind::MaxLength { .. } => {
                for choice in &resp.choices {
                    if let Some(text) = text_of(&choice.message.content) {
                        evidence.extend(check.find_in(text).0);
                    }
                }
            }
            CheckKind::Leak { threshold } => {
                if input.system_prompt.trim().is_empty() {
                    continue;
                }
                for choice in &resp.choices {
                    let Some(text) = text_of(&choice.message.content) else {
                        continue;
                    };
                    let r = keel_guardrails::leak(text, &input.system_prompt);
                    score = Some(score.unwrap_or(0.0f64).max(r.score));
                    if r.score >= *threshold {
                        evidence.extend(r.evidence.iter().map(|e| GuardEvidence {
                            what: "system_prompt_overlap".into(),
                            message: None,
                            start: e.start,
                            end: e.end,
                        }));
                    }
                }
            }
            CheckKind::JsonSchema { schema, on_fail } => {
                let Some(schema) = schema.as_ref().or(schema_asked) else {
                    continue;
                };
                let mut problems = Vec::new();
                for choice in &resp.choices {
                    if choice.message.tool_calls.is_some() {
                        continue;
                    }
                    let text = text_of(&choice.message.content).unwrap_or_default();
                    if let Err(why) = keel_guardrails::check_json_schema(text, schema) {
                        problems.push(why);
                    }
                }
                if problems.is_empty() {
                    continue;
                }
                let why = problems.join("; ");
                let ev = vec![GuardEvidence {
                    what: "schema_violation".into(),
                    message: None,
                    start: 0,
                    end: 0,
                }];
                if cfg.action == GuardAction::Log {
                    record(
                        app,
                        trace,
                        outcome(&policy.name, cfg, "output", "log", None, ev),
                    );
                    continue;
                }
                let reask = !reasked && *on_fail != SchemaFailure::Error;
                let action = if reask { "retry" } else { "block" };
                record(
                    app,
                    trace,
                    outcome(&policy.name, cfg, "output", action, None, ev),
                );
                if reask {
                    return Ok(Verdict::Reask {
                        feedback: format!(
                            "Your previous reply did not match the required JSON schema: {why}. \
                             Reply again with only a JSON value that matches the schema."
                        ),
                        fallback: *on_fail == SchemaFailure::Fallback,
                    });
                }
                return Err(GatewayError::OutputContract {
                    policy: policy.name.clone(),
                    check: cfg.name.clone(),
                    detail: why,
                });
            }
            CheckKind::Tools { allow } => {
                if tool_policy(app, trace, &policy.name, cfg, allow, resp)? {
                    continue;
                }
            }
            CheckKind::Injection { .. } | CheckKind::InjectionJudge(_) => continue,
        }
        if evidence.is_empty() {
            continue;
        }
        let detail = describe(&evidence);
        record(
            app,
            trace,
            outcome(
                &policy.name,
                cfg,
                "output",
                cfg.action.as_str(),
                score,
                evidence,
            ),
        );
        if cfg.action == GuardAction::Block {
            return Err(GatewayError::GuardrailBlocked {
                policy: policy.name.clone(),
                check: cfg.name.clone(),
                stage: "output",
                detail: format!("the answer contains {detail}"),
            });
        }
    }
    if input.restore && !input.redaction.is_empty() {
        for choice in resp.choices.iter_mut() {
            if let Some(Content::Text(text)) = &mut choice.message.content {
                if let std::borrow::Cow::Owned(t) = input.redaction.restore(text) {
                    *text = t;
                }
            }
            for call in choice.message.tool_calls.iter_mut().flatten() {
                if let std::borrow::Cow::Owned(a) =
                    input.redaction.restore(&call.function.arguments)
                {
                    call.function.arguments = a;
                }
            }
        }
    }
    Ok(Verdict::Pass)
}

/// Why a proposed tool call is not allowed, if it is not.
pub fn tool_refusal(
    allow: &std::collections::BTreeMap<String, Option<Value>>,
    name: &str,
    arguments: &str,
) -> Option<String> {
    match allow.get(name) {
        None => Some(format!("tool `{name}` is not on the allow-list")),
        Some(None) => None,
        Some(Some(schema)) => keel_guardrails::check_json_schema(arguments, schema)
            .err()
            .map(|why| format!("arguments of `{name}` break its schema: {why}")),
    }
}

/// Record every proposed tool call; block, strip or log the ones not allowed. Returns
/// true when nothing more is to be recorded for this check.
fn tool_policy(
    app: &AppState,
    trace: &mut TraceRecord,
    policy: &str,
    cfg: &keel_core::config::guardrails::CheckConfig,
    allow: &std::collections::BTreeMap<String, Option<Value>>,
    resp: &mut ChatResponse,
) -> Result<bool, GatewayError> {
    for choice in resp.choices.iter_mut() {
        let Some(calls) = choice.message.tool_calls.take() else {
            continue;
        };
        let mut kept = Vec::new();
        for (i, call) in calls.into_iter().enumerate() {
            let ev = vec![GuardEvidence {
                what: format!("tool:{}", call.function.name),
                message: None,
                start: i,
                end: i + 1,
            }];
            match tool_refusal(allow, &call.function.name, &call.function.arguments) {
                None => {
                    record(
                        app,
                        trace,
                        outcome(policy, cfg, "output", "allow", None, ev),
                    );
                    kept.push(call);
                }
                Some(why) => {
                    record(
                        app,
                        trace,
                        outcome(policy, cfg, "output", cfg.action.as_str(), None, ev),
                    );
                    match cfg.action {
                        GuardAction::Block => {
                            return Err(GatewayError::GuardrailBlocked {
                                policy: policy.to_string(),
                                check: cfg.name.clone(),
                                stage: "output",
                                detail: format!(
                                    "the model proposed a tool call that is not allowed ({why})"
                                ),
                            })
                        }
                        GuardAction::Strip => {}
                        _ => kept.push(call),
                    }
                }
            }
        }
        if kept.is_empty() {
            if choice.finish_reason.as_deref() == Some("tool_calls") {
                choice.finish_reason = Some("stop".into());
            }
            if choice.message.content.is_none() {
                choice.message.content = Some(Content::Text(String::new()));
            }
        } else {
            choice.message.tool_calls = Some(kept);
        }
    }
    Ok(true)
}
