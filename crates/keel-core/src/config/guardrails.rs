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
//! check = "pii"                    # pii | secrets | banned | max_length | injection | leak | json_schema | tools
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
//! (tools). `name` names a check in traces and errors (default: its `check`).

use std::collections::{BTreeMap, BTreeSet};

use keel_guardrails::Kind;
use serde::Deserialize;
use serde_json::Value;

use super::error::ConfigIssue;

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

fn issue(issues: &mut Vec<ConfigIssue>, path: String, message: String, hint: &str) {
    issues.push(ConfigIssue {
        path,
        message,
        hint: (!hint.is_empty()).then(|| hint.to_string()),
    });
}

fn threshold(issues: &mut Vec<ConfigIssue>, path: &str, v: Option<f64>, default: f64) -> f64 {
    let t = v.unwrap_or(default);
    if !(t > 0.0 && t <= 1.0) {
        issue(
            issues,
            format!("{path}.threshold"),
            format!("{t} is not a score threshold"),
            "use a number above 0 and at most 1 (e.g. 0.7)",
        );
    }
    t
}

/// Validate every policy: names resolve, each check's keys fit its kind, regexes compile.
pub(crate) fn validate_guardrails(
    raw: RawGuardrails,
    functions: &BTreeSet<String>,
    models: &BTreeSet<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<PolicyConfig> {
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
            if let Some(c) = check(c, &cpath, issues) {
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

const CHECKS: &str = "pii, secrets, banned, max_length, injection, leak, json_schema, tools";

fn check(c: RawCheck, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<CheckConfig> {
    let on = match c.on.as_deref() {
        None => None,
        Some("input") => Some(Stage::Input),
        Some("output") => Some(Stage::Output),
        Some("both") => Some(Stage::Both),
        Some(other) => {
            issue(
                issues,
                format!("{path}.on"),
                format!("unknown stage `{other}`"),
                "use \"input\", \"output\" or \"both\"",
            );
            None
        }
    };
    let action = match c.action.as_deref() {
        None => None,
        Some("redact") => Some(GuardAction::Redact),
        Some("block") => Some(GuardAction::Block),
        Some("log") => Some(GuardAction::Log),
        Some("strip") => Some(GuardAction::Strip),
        Some(other) => {
            issue(
                issues,
                format!("{path}.action"),
                format!("unknown action `{other}`"),
                "use \"redact\", \"block\" or \"log\" (tools: \"block\" or \"strip\")",
            );
            None
        }
    };
    let name = c.name.clone().unwrap_or_else(|| c.check.clone());
    let unused = |issues: &mut Vec<ConfigIssue>, key: &str, present: bool| {
        if present {
            issue(
                issues,
                format!("{path}.{key}"),
                format!("does not apply to check = \"{}\"", c.check),
                "remove it, or use the check it belongs to",
            );
        }
    };
    let (kind, default_on, default_action, allowed): (
        CheckKind,
        Stage,
        GuardAction,
        &[GuardAction],
    ) = match c.check.as_str() {
        "pii" | "secrets" => {
            let secrets = c.check == "secrets";
            let family: Vec<Kind> = Kind::ALL
                .iter()
                .copied()
                .filter(|k| k.is_secret() == secrets)
                .collect();
            let kinds = match &c.kinds {
                None => family.clone(),
                Some(list) => {
                    let mut ks = Vec::new();
                    for k in list {
                        match Kind::parse(k).filter(|k| family.contains(k)) {
                            Some(k) => ks.push(k),
                            None => {
                                let names: Vec<_> = family.iter().map(|k| k.as_str()).collect();
                                issue(
                                    issues,
                                    format!("{path}.kinds"),
                                    format!("`{k}` is not a {} detector", c.check),
                                    &format!("known: {}", names.join(", ")),
                                );
                            }
                        }
                    }
                    ks
                }
            };
            unused(issues, "terms", c.terms.is_some());
            unused(issues, "threshold", c.threshold.is_some());
            (
                CheckKind::Detect {
                    kinds,
                    restore: c.restore.unwrap_or(false),
                },
                Stage::Both,
                if secrets {
                    GuardAction::Block
                } else {
                    GuardAction::Redact
                },
                &[GuardAction::Redact, GuardAction::Block, GuardAction::Log],
            )
        }
        "banned" => {
            let terms = c.terms.clone().unwrap_or_default();
            let regexes = c.regexes.clone().unwrap_or_default();
            if terms.is_empty() && regexes.is_empty() {
                issue(
                    issues,
                    path.to_string(),
                    "a banned check needs terms or regexes".into(),
                    "add terms = [\"...\"] and/or regexes = [\"...\"]",
                );
            }
            if let Err(e) = keel_guardrails::TermMatcher::new(&terms, &regexes) {
                issue(
                    issues,
                    format!("{path}.regexes"),
                    e.to_string(),
                    "fix the pattern (Rust regex syntax)",
                );
            }
            (
                CheckKind::Banned { terms, regexes },
                Stage::Both,
                GuardAction::Block,
                &[GuardAction::Block, GuardAction::Log],
            )
        }
        "max_length" => {
            let max = c.max_chars.unwrap_or(0);
            if max == 0 {
                issue(
                    issues,
                    format!("{path}.max_chars"),
                    "a max_length check needs max_chars above 0".into(),
                    "e.g. max_chars = 20000",
                );
            }
            (
                CheckKind::MaxLength { max_chars: max },
                Stage::Input,
                GuardAction::Block,
                &[GuardAction::Block, GuardAction::Log],
            )
        }
        "injection" => (
            CheckKind::Injection {
                threshold: threshold(
                    issues,
                    path,
                    c.threshold,
                    keel_guardrails::DEFAULT_INJECTION_THRESHOLD,
                ),
            },
            Stage::Input,
            GuardAction::Block,
            &[GuardAction::Block, GuardAction::Log],
        ),
        "leak" => (
            CheckKind::Leak {
                threshold: threshold(
                    issues,
                    path,
                    c.threshold,
                    keel_guardrails::DEFAULT_LEAK_THRESHOLD,
                ),
            },
            Stage::Output,
            GuardAction::Block,
            &[GuardAction::Block, GuardAction::Log],
        ),
        "json_schema" => {
            let on_fail = match c.on_fail.as_deref().unwrap_or("retry") {
                "retry" => SchemaFailure::Retry,
                "fallback" => SchemaFailure::Fallback,
                "error" => SchemaFailure::Error,
                other => {
                    issue(
                        issues,
                        format!("{path}.on_fail"),
                        format!("unknown on_fail `{other}`"),
                        "use \"retry\", \"fallback\" or \"error\"",
                    );
                    SchemaFailure::Error
                }
            };
            if let Some(s) = &c.schema {
                if !s.is_object() {
                    issue(
                        issues,
                        format!("{path}.schema"),
                        "must be a JSON schema object".into(),
                        "e.g. schema = { type = \"object\", required = [\"answer\"] }",
                    );
                }
            }
            (
                CheckKind::JsonSchema {
                    schema: c.schema.clone(),
                    on_fail,
                },
                Stage::Output,
                GuardAction::Block,
                &[GuardAction::Block, GuardAction::Log],
            )
        }
        "tools" => {
            let mut allow: BTreeMap<String, Option<Value>> = c
                .allow
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t, None))
                .collect();
            for (tool, schema) in c.arguments.clone().unwrap_or_default() {
                if !schema.is_object() {
                    issue(
                        issues,
                        format!("{path}.arguments.{tool}"),
                        "must be a JSON schema object".into(),
                        "e.g. { type = \"object\", required = [\"order_id\"] }",
                    );
                }
                allow.insert(tool, Some(schema));
            }
            (
                CheckKind::Tools { allow },
                Stage::Output,
                GuardAction::Block,
                &[GuardAction::Block, GuardAction::Strip, GuardAction::Log],
            )
        }
        other => {
            issue(
                issues,
                format!("{path}.check"),
                format!("unknown check `{other}`"),
                &format!("use one of: {CHECKS}"),
            );
            return None;
        }
    };
    let on = on.unwrap_or(default_on);
    let action = action.unwrap_or(default_action);
    if !allowed.contains(&action) {
        let names: Vec<_> = allowed.iter().map(|a| a.as_str()).collect();
        issue(
            issues,
            format!("{path}.action"),
            format!(
                "`{}` does not apply to check = \"{}\"",
                action.as_str(),
                c.check
            ),
            &format!("use one of: {}", names.join(", ")),
        );
    }
    let output_only = matches!(
        kind,
        CheckKind::Leak { .. } | CheckKind::JsonSchema { .. } | CheckKind::Tools { .. }
    );
    if output_only && on != Stage::Output {
        issue(
            issues,
            format!("{path}.on"),
            format!("check = \"{}\" looks at the model's answer only", c.check),
            "use on = \"output\" (or leave it out)",
        );
    }
    if let CheckKind::Detect { restore: true, .. } = kind {
        if !(action == GuardAction::Redact && on.input()) {
            issue(
                issues,
                format!("{path}.restore"),
                "restore puts redacted input back in the answer, so it needs action = \"redact\" on input".into(),
                "set action = \"redact\" and on = \"input\" (or \"both\"), or remove restore",
            );
        }
    }
    Some(CheckConfig {
        name,
        on,
        action,
        kind,
    })
}
