//! Checks that need more than the file's shape: every template compiles, every variable
//! a template uses is declared (error), every declared variable is used (warning), and
//! defaults are consistent with `required` and `type`.

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};

use crate::load::PromptIssue;
use crate::prompt::{json_type_name, Prompt, PromptBody};

/// The environment every prompt is compiled and rendered in: strict undefined, so a
/// missing variable is an error rather than empty text.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Each template of a prompt with its key path (`messages[1].content`, `template`).
pub(crate) fn templates(p: &Prompt) -> Vec<(String, &str)> {
    match &p.body {
        PromptBody::Chat(msgs) => msgs
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("messages[{i}].content"), m.content.as_str()))
            .collect(),
        PromptBody::Text(t) => vec![("template".to_string(), t.as_str())],
    }
}

/// `(errors, warnings)` for one parsed prompt.
pub(crate) fn validate(p: &Prompt, file: &Path) -> (Vec<PromptIssue>, Vec<PromptIssue>) {
    let issue = |path: String, message: String, hint: Option<String>| PromptIssue {
        file: file.to_path_buf(),
        path,
        message,
        hint,
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let env = environment();
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut used = BTreeSet::new();

    for (path, source) in templates(p) {
        match env.template_from_str(source) {
            Ok(t) => {
                let mut vars: Vec<String> = t
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !globals.contains(v.as_str()))
                    .collect();
                vars.sort();
                for v in vars {
                    if !p.variables.contains_key(&v) {
                        errors.push(issue(
                            path.clone(),
                            format!("variable `{v}` is used but not declared"),
                            Some(format!(
                                "add [variables.{v}] with a type, e.g. type = \"string\""
                            )),
                        ));
                    }
                    used.insert(v);
                }
            }
            Err(e) => {
                let at = e
                    .line()
                    .map(|l| format!(" on line {l}"))
                    .unwrap_or_default();
                let detail = e
                    .detail()
                    .map_or_else(|| e.kind().to_string(), str::to_string);
                errors.push(issue(
                    path,
                    format!("template syntax error{at}: {detail}"),
                    None,
                ));
            }
        }
    }

    for (name, decl) in &p.variables {
        let path = format!("variables.{name}");
        if let Some(default) = &decl.default {
            if decl.required {
                errors.push(issue(
                    format!("{path}.default"),
                    format!("variable `{name}` is required, so a default would never be used"),
                    Some("set required = false, or remove default".into()),
                ));
            } else if !decl.ty.accepts(default) {
                errors.push(issue(
                    format!("{path}.default"),
                    format!(
                        "default of `{name}` must be {} {}, got {}",
                        article(decl.ty.as_str()),
                        decl.ty.as_str(),
                        json_type_name(default)
                    ),
                    None,
                ));
            }
        }
        if !used.contains(name) {
            warnings.push(issue(
                path,
                format!("variable `{name}` is declared but no template uses it"),
                Some("remove it, or use it in a template".into()),
            ));
        }
    }
    (errors, warnings)
}

pub(crate) fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}
