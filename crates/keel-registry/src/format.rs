//! The prompt file format: the TOML a team writes, mirrored by raw structs that reject
//! unknown keys, turned into a [`Prompt`]. Errors name the file and the key path.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::load::PromptIssue;
use crate::prompt::{MessageTemplate, Prompt, PromptBody, VariableDecl};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrompt {
    description: Option<String>,
    messages: Option<Vec<MessageTemplate>>,
    template: Option<String>,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    params: Map<String, Value>,
    tools: Option<Vec<Value>>,
    output_schema: Option<Map<String, Value>>,
}

const KEYS: &[&str] = &[
    "description",
    "messages",
    "template",
    "variables",
    "params",
    "tools",
    "output_schema",
];

/// Parse one prompt file's text. `file` is only used in issues. This checks the shape;
/// [`crate::check_prompts`] also checks the templates against the variables.
pub fn parse_prompt(name: &str, file: &Path, text: &str) -> Result<Prompt, Vec<PromptIssue>> {
    let issue = |path: &str, message: String, hint: Option<String>| PromptIssue {
        file: file.to_path_buf(),
        path: path.to_string(),
        message,
        hint,
    };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        vec![issue(
            "",
            format!("not valid TOML: {}", e.message().trim()),
            e.span().map(|s| format!("at {}", line_col(text, s.start))),
        )]
    })?;
    let raw: RawPrompt = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().trim().to_string();
        let hint = did_you_mean(&message).or_else(|| {
            inner
                .span()
                .map(|s| format!("at {}", line_col(text, s.start)))
        });
        vec![issue(if path == "." { "" } else { &path }, message, hint)]
    })?;
    let body = match (raw.messages, raw.template) {
        (Some(m), None) if !m.is_empty() => PromptBody::Chat(m),
        (Some(_), None) => {
            return Err(vec![issue(
                "messages",
                "a chat prompt needs at least one message".into(),
                Some("add a [[messages]] table with role and content".into()),
            )])
        }
        (None, Some(t)) => PromptBody::Text(t),
        (Some(_), Some(_)) => {
            return Err(vec![issue(
                "",
                "both `messages` and `template` are set".into(),
                Some("a prompt is either a chat ([[messages]]) or a text (template = \"...\"): keep one".into()),
            )])
        }
        (None, None) => {
            return Err(vec![issue(
                "",
                "the prompt has neither `messages` nor `template`".into(),
                Some("add [[messages]] (role, content) for a chat prompt, or template = \"...\" for a text prompt".into()),
            )])
        }
    };
    Ok(Prompt {
        name: name.to_string(),
        description: raw.description,
        body,
        variables: raw.variables,
        params: raw.params,
        tools: raw.tools,
        output_schema: raw.output_schema.map(Value::Object),
    })
}

/// "unknown field `templte`, expected one of ..." → "did you mean `template`?"
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let unknown = rest.split('`').next()?;
    let candidates: Vec<&str> = match rest.split_once("expected ") {
        Some((_, expected)) => expected.split('`').skip(1).step_by(2).collect(),
        None => KEYS.to_vec(),
    };
    candidates
        .into_iter()
        .map(|c| (c, edit_distance(unknown, c)))
        .filter(|(_, d)| *d <= 3)
        .min_by_key(|(_, d)| *d)
        .map(|(c, _)| format!("did you mean `{c}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn line_col(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}
