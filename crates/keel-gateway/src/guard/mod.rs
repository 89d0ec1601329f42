//! Guardrails on the request path: the configured policies, compiled once at startup,
//! and which of them apply to a call.
//!
//! A call gets every policy attached to its function, to the model it is served by, to
//! the virtual key it came with, and every `default = true` policy (each once). Input
//! checks run after the prompt is rendered and before admission, the cache and the
//! upstream call ([`input`]); output checks run on a whole answer before it is returned
//! ([`output`]) and on a stream as it flows or when it ends ([`stream`]). Outcomes go to
//! the trace (`guardrails`), to `keel_guardrail_actions_total`, and blocks to the audit
//! log (`keel audit` reads them from the traces). Nothing here touches the store.

pub mod input;
pub mod judge;
pub mod output;
pub mod redteam;
pub mod scrub;
pub mod stream;

use std::collections::HashMap;
use std::sync::Arc;

use keel_core::config::guardrails::{CheckConfig, CheckKind, PolicyConfig, StreamChecks};
use keel_core::trace::{GuardEvidence, GuardOutcome, TraceRecord};
use keel_guardrails::TermMatcher;

/// One check, ready to run.
pub struct CompiledCheck {
    pub cfg: CheckConfig,
    /// `check = "banned"`: its compiled terms and regexes.
    pub terms: Option<TermMatcher>,
}

pub struct CompiledPolicy {
    pub name: String,
    pub stream: StreamChecks,
    pub checks: Vec<CompiledCheck>,
}

/// Every policy, indexed by what it is attached to.
#[derive(Default)]
pub struct Guards {
    by_function: HashMap<String, Vec<Arc<CompiledPolicy>>>,
    by_model: HashMap<String, Vec<Arc<CompiledPolicy>>>,
    by_key: HashMap<String, Vec<Arc<CompiledPolicy>>>,
    default: Vec<Arc<CompiledPolicy>>,
}

/// The policies that apply to one call (usually none: then every step is a no-op).
#[derive(Clone, Default)]
pub struct Applied {
    pub policies: Vec<Arc<CompiledPolicy>>,
}

impl Applied {
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Every check of every applied policy, with its policy.
    pub fn checks(&self) -> impl Iterator<Item = (&CompiledPolicy, &CompiledCheck)> {
        self.policies
            .iter()
            .flat_map(|p| p.checks.iter().map(move |c| (p.as_ref(), c)))
    }

    /// Whether some output check may ask for the answer again (schema retry/fallback),
    /// so the request must be kept.
    pub fn may_reask(&self) -> bool {
        self.checks().any(|(_, c)| {
            matches!(
                c.cfg.kind,
                CheckKind::JsonSchema {
                    on_fail: keel_core::config::guardrails::SchemaFailure::Retry
                        | keel_core::config::guardrails::SchemaFailure::Fallback,
                    ..
                }
            )
        })
    }
}

impl Guards {
    /// Compile every policy (term lists and regexes were checked by config validation).
    pub fn new(policies: &[PolicyConfig]) -> Result<Guards, String> {
        let mut g = Guards::default();
        for p in policies {
            let mut checks = Vec::new();
            for c in &p.checks {
                let terms = match &c.kind {
                    CheckKind::Banned { terms, regexes } => Some(
                        TermMatcher::new(terms, regexes)
                            .map_err(|e| format!("guardrails.policies.{}: {e}", p.name))?,
                    ),
                    _ => None,
                };
                checks.push(CompiledCheck {
                    cfg: c.clone(),
                    terms,
                });
            }
            let compiled = Arc::new(CompiledPolicy {
                name: p.name.clone(),
                stream: p.stream,
                checks,
            });
            for f in &p.functions {
                g.by_function
                    .entry(f.clone())
                    .or_default()
                    .push(compiled.clone());
            }
            for m in &p.models {
                g.by_model
                    .entry(m.clone())
                    .or_default()
                    .push(compiled.clone());
            }
            for k in &p.keys {
                g.by_key
                    .entry(k.clone())
                    .or_default()
                    .push(compiled.clone());
            }
            if p.default {
                g.default.push(compiled);
            }
        }
        Ok(g)
    }

    pub fn is_empty(&self) -> bool {
        self.by_function.is_empty()
            && self.by_model.is_empty()
            && self.by_key.is_empty()
            && self.default.is_empty()
    }

    /// The policies for a call to `model` (the configured model that serves it), made
    /// through `function` (if any) with key `key` (if any); each policy once.
    pub fn for_call(&self, function: Option<&str>, model: &str, key: Option<&str>) -> Applied {
        if self.is_empty() {
            return Applied::default();
        }
        let mut out: Vec<Arc<CompiledPolicy>> = self.default.clone();
        let lists = [
            function.and_then(|f| self.by_function.get(f)),
            self.by_model.get(model),
            key.and_then(|k| self.by_key.get(k)),
        ];
        for p in lists.into_iter().flatten().flatten() {
            if !out.iter().any(|q| Arc::ptr_eq(q, p)) {
                out.push(p.clone());
            }
        }
        Applied { policies: out }
    }
}

impl CompiledCheck {
    /// What this check finds in one text: evidence (offsets into `text`) and, for
    /// scored checks, the score. Evidence is empty when it finds nothing, or when the
    /// score is below the threshold. Checks that need more than one text (length over
    /// the whole request, leak, schema, tools) find nothing here.
    pub fn find_in(&self, text: &str) -> (Vec<GuardEvidence>, Option<f64>) {
        let ev = |what: &str, start: usize, end: usize| GuardEvidence {
            what: what.to_string(),
            message: None,
            start,
            end,
        };
        match &self.cfg.kind {
            CheckKind::Detect { kinds, .. } => (
                keel_guardrails::scan(text, kinds)
                    .into_iter()
                    .map(|f| ev(f.kind.as_str(), f.start, f.end))
                    .collect(),
                None,
            ),
            CheckKind::Banned { .. } => (
                self.terms
                    .as_ref()
                    .map(|m| {
                        m.find(text)
                            .into_iter()
                            .map(|t| ev("banned_term", t.start, t.end))
                            .collect()
                    })
                    .unwrap_or_default(),
                None,
            ),
            CheckKind::Injection { threshold }
            | CheckKind::InjectionJudge(keel_core::config::guardrails::InjectionJudge {
                threshold,
                ..
            }) => {
                let r = keel_guardrails::injection(text);
                let found = if r.score >= *threshold {
                    r.evidence
                        .iter()
                        .map(|e| ev(&e.signal, e.start, e.end))
                        .collect()
                } else {
                    Vec::new()
                };
                (found, Some(r.score))
            }
            CheckKind::MaxLength { max_chars } => {
                let n = text.chars().count();
                if n as u64 > *max_chars {
                    (
                        vec![ev(&format!("length {n} > {max_chars} characters"), 0, n)],
                        None,
                    )
                } else {
                    (Vec::new(), None)
                }
            }
            CheckKind::Leak { .. } | CheckKind::JsonSchema { .. } | CheckKind::Tools { .. } => {
                (Vec::new(), None)
            }
        }
    }
}

/// What a check did, for the trace.
pub fn outcome(
    policy: &str,
    check: &CheckConfig,
    stage: &'static str,
    action: &str,
    score: Option<f64>,
    evidence: Vec<GuardEvidence>,
) -> GuardOutcome {
    GuardOutcome {
        policy: policy.to_string(),
        check: check.name.clone(),
        stage: stage.to_string(),
        action: action.to_string(),
        score,
        evidence,
    }
}

/// Record what a check did, on the trace and in the metrics.
pub fn record(app: &crate::state::AppState, trace: &mut TraceRecord, o: GuardOutcome) {
    app.metrics.guardrail_action(&o.policy, &o.check, &o.action);
    trace.guardrails.push(o);
}

/// "2 emails, a card": what a detector found, for an error message (never the text).
pub fn describe(evidence: &[GuardEvidence]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for e in evidence {
        match counts.iter_mut().find(|(w, _)| *w == e.what) {
            Some((_, n)) => *n += 1,
            None => counts.push((&e.what, 1)),
        }
    }
    counts
        .iter()
        .map(|(w, n)| {
            if *n == 1 {
                format!("1 {w}")
            } else {
                format!("{n} × {w}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
