//! Guardrails config: policies of checks on input and output, attached to functions,
//! models or keys (`[guardrails.policies.NAME]`).
//!
//! ```toml
//! [guardrails.policies.support-safety]
//! functions = ["support-answer"]   # attach to these functions…
//! models = ["gpt-4o-mini"]         # …these models (raw calls and function variants on them)…
//! keys = ["3f9a0c1d2e4b"]          # …calls made with these virtual keys…
//! default = false                  # …or every call
//! stream = "window"                # streamed output: "window" (checks as it flows, can stop it) | "final" (checks at the end, annotates the trace)
//! window_chars = 256               # how much recent output the window checks see with each chunk
//!
//! [[guardrails.policies.support-safety.checks]]
//! check = "pii"                    # pii | secrets | banned | max_length | injection | injection_judge | leak | json_schema | tools
//! on = "input"                     # input | output | both
//! action = "redact"                # redact (pii, secrets) | block | log
//! kinds = ["email", "phone"]       # pii / secrets: which detectors (default: all of the family)
//! restore = true                   # redact on input: put the originals back in the answer
//! ```
//!
//! Check-specific keys: `terms`, `regexes` (banned); `max_chars` (max_length);
//! `threshold` (injection, leak: 0..1); `schema`, `on_fail = "retry" | "fallback" |
//! "error"` (json_schema; without `schema` the request's `response_format` schema is
//! used); `allow`, `arguments = { TOOL = {schema} }`, `action = "block" | "strip"`
//! (tools); `model`, `unsure_from`, `timeout`, `on_error` (injection_judge, see
//! [`super::injection_judge`]). `name` names a check in traces and errors (default: its `check`).

use std::collections::{BTreeMap, BTreeSet};

use keel_guardrails::Kind;
use serde::Deserialize;
use serde_json::Value;

use super::error::ConfigIssue;
pub use super::injection_judge::{InjectionJudge, JudgeFailure};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrails {
    #[serde(default)]
    pub policies: BTreeMap<String, RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub functions: Option<Vec<String>>,
    pub models: Option<Vec<String>>,
    pub keys: Option<Vec<String>>,
    pub default: Option<bool>,
    pub stream: Option<String>,
    pub window_chars: Option<u32>,
    #[serde(default)]
    pub checks: Vec<RawCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub check: String,
    pub name: Option<String>,
    pub on: Option<String>,
    pub action: Option<String>,
    pub kinds: Option<Vec<String>>,
    pub restore: Option<bool>,
    pub terms: Option<Vec<String>>,
    pub regexes: Option<Vec<String>>,
    pub max_chars: Option<u64>,
    pub threshold: Option<f64>,
    pub schema: Option<Value>,
    pub on_fail: Option<String>,
    pub allow: Option<Vec<String>>,
    pub arguments: Option<BTreeMap<String, Value>>,
    /// `injection_judge` only (see `injection_judge`).
    pub model: Option<String>,
    pub unsure_from: Option<f64>,
    pub timeout: Option<String>,
    pub on_error: Option<String>,
}

/// Where a check looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Input,
    Output,
    Both,
}

impl Stage {
    pub fn input(self) -> bool {
        matches!(self, Stage::Input | Stage::Both)
    }
    pub fn output(self) -> bool {
        matches!(self, Stage::Output | Stage::Both)
    }
}

/// What a check does when it finds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// Replace what was found with typed placeholders (`[EMAIL_1]`).
    Redact,
    /// Refuse the call (input) or the answer (output) with an error naming the policy
    /// and check, never the text.
    Block,
    /// Let it through; record it in the trace and count it.
    Log,
    /// Tools only: remove the disallowed tool call from the answer.
    Strip,
}

impl GuardAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardAction::Redact => "redact",
            GuardAction::Block => "block",
            GuardAction::Log => "log",
            GuardAction::Strip => "strip",
        }
    }
}

/// What an output that breaks its JSON schema leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFailure {
    /// Ask the same model once more, with the validation error.
    Retry,
    /// Ask the next model of the fallback chain.
    Fallback,
    /// Answer with an error.
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// PII and secret detectors (`check = "pii"` or `"secrets"`).
    Detect {
        kinds: Vec<Kind>,
        restore: bool,
    },
    Banned {
        terms: Vec<String>,
        regexes: Vec<String>,
    },
    MaxLength {
        max_chars: u64,
    },
    Injection {
        threshold: f64,
    },
    /// The injection heuristics, with a judge model for the unsure band.
    InjectionJudge(InjectionJudge),
    Leak {
        threshold: f64,
    },
    JsonSchema {
        schema: Option<Value>,
        on_fail: SchemaFailure,
    },
    /// Allowed tool names, each with an optional schema for its arguments.
    Tools {
        allow: BTreeMap<String, Option<Value>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    pub name: String,
    pub on: Stage,
    pub action: GuardAction,
    pub kind: CheckKind,
}

/// How output checks treat a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamChecks {
    /// Checked as it flows over the last `chars` characters; a block ends the stream
    /// with an error event.
    Window { chars: usize },
    /// Checked once the stream ended; the trace is annotated (the client already has it).
    Final,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub name: String,
    pub functions: BTreeSet<String>,
    pub models: BTreeSet<String>,
    pub keys: BTreeSet<String>,
    pub default: bool,
    pub stream: StreamChecks,
    pub checks: Vec<CheckConfig>,
}

pub(super) fn issue(issues: &mut Vec<ConfigIssue>, path: String, message: String, hint: &str) {
    issues.push(ConfigIssue {
        path,
        message,
        hint: (!hint.is_empty()).then(|| hint.to_string()),
    });
}

/// Validate every policy: names resolve, each check's keys fit its kind, regexes compile.
pub(crate) fn validate_guardrails(
    raw: RawGuardrails,
    functions: &BTreeSet<String>,
    models: &BTreeSet<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<PolicyConfig> {
    let known_models = models;
    let mut out = Vec::new();
    for (name, p) in raw.policies {
        let path = format!("guardrails.policies.{name}");
        let mut attach =
            |list: Option<Vec<String>>, known: Option<&BTreeSet<String>>, what: &str| {
                let mut set = BTreeSet::new();
                for v in list.unwrap_or_default() {
                    if let Some(k) = known {
                        if !k.contains(&v) {
                            let names: Vec<_> = k.iter().map(String::as_str).collect();
                            issue(
                                issues,
                                format!("{path}.{what}"),
                                format!("`{v}` is not a configured {}", what.trim_end_matches('s')),
                                &format!("known: {}", names.join(", ")),
                            );
                        }
                    }
                    set.insert(v);
                }
                set
            };
        let functions = attach(p.functions, Some(functions), "functions");
        let models = attach(p.models, Some(models), "models");
        let keys = attach(p.keys, None, "keys");
        let default = p.default.unwrap_or(false);
        if functions.is_empty() && models.is_empty() && keys.is_empty() && !default {
            issue(
                issues,
                path.clone(),
                "is attached to nothing, so it would never run".into(),
                "add functions = [...], models = [...], keys = [...] or default = true",
            );
        }
        let window = usize::try_from(p.window_chars.unwrap_or(256)).unwrap_or(256);
        let stream = match p.stream.as_deref().unwrap_or("window") {
            "window" => StreamChecks::Window {
                chars: window.max(16),
            },
            "final" => StreamChecks::Final,
            other => {
                issue(
                    issues,
                    format!("{path}.stream"),
                    format!("unknown stream mode `{other}`"),
                    "use \"window\" (can stop a stream) or \"final\" (annotates the trace)",
                );
                StreamChecks::Final
            }
        };
        if p.checks.is_empty() {
            issue(
                issues,
                format!("{path}.checks"),
                "has no checks".into(),
                "add [[guardrails.policies.NAME.checks]] tables with check = \"pii\", \"secrets\", …",
            );
        }
        let mut checks = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, c) in p.checks.into_iter().enumerate() {
            let cpath = format!("{path}.checks[{i}]");
            if let Some(c) = super::guardrail_checks::check(c, &cpath, known_models, issues) {
                if !seen.insert(c.name.clone()) {
                    issue(
                        issues,
                        format!("{cpath}.name"),
                        format!("another check of this policy is named `{}`", c.name),
                        "give each check its own name = \"...\"",
                    );
                }
                checks.push(c);
            }
        }
        out.push(PolicyConfig {
            name,
            functions,
            models,
            keys,
            default,
            stream,
            checks,
        });
    }
    out
}
