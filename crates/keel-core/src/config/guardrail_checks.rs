//! One guardrail check's keys, validated for its kind (`check = "..."`) into a
//! [`CheckConfig`]: which keys apply, the default stage and action, and which actions the
//! kind allows. The policy around it is validated in [`super::guardrails`].

use std::collections::{BTreeMap, BTreeSet};

use keel_guardrails::Kind;
use serde_json::Value;

use super::error::ConfigIssue;
use super::guardrails::{
    issue, CheckConfig, CheckKind, GuardAction, RawCheck, SchemaFailure, Stage,
};

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

const CHECKS: &str =
    "pii, secrets, banned, max_length, injection, injection_judge, leak, json_schema, tools";

pub(super) fn check(
    c: RawCheck,
    path: &str,
    models: &BTreeSet<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<CheckConfig> {
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
        "injection_judge" => {
            let t = threshold(
                issues,
                path,
                c.threshold,
                keel_guardrails::DEFAULT_INJECTION_THRESHOLD,
            );
            (
                CheckKind::InjectionJudge(super::injection_judge::validate(
                    &c, path, t, models, issues,
                )),
                Stage::Input,
                GuardAction::Block,
                &[GuardAction::Block, GuardAction::Log],
            )
        }
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
    if !matches!(kind, CheckKind::InjectionJudge(_)) {
        for (key, present) in super::injection_judge::unused_keys(&c) {
            unused(issues, key, present);
        }
    }
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
    if matches!(kind, CheckKind::InjectionJudge(_)) && on != Stage::Input {
        issue(
            issues,
            format!("{path}.on"),
            "check = \"injection_judge\" looks at the caller's input only".into(),
            "use on = \"input\" (or leave it out)",
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
