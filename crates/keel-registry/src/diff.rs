//! What changed between two versions of a prompt, section by section (messages or
//! template, variables, params, tools, output schema), as unified text diffs.

use std::fmt;

use serde_json::Value;
use similar::TextDiff;

use crate::prompt::{Prompt, PromptBody};

/// One changed section and its unified diff.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SectionDiff {
    pub section: &'static str,
    pub unified: String,
}

/// The changed sections; empty when the two prompts have the same content.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PromptDiff {
    pub sections: Vec<SectionDiff>,
}

impl PromptDiff {
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }
}

impl fmt::Display for PromptDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sections {
            writeln!(f, "## {}", s.section)?;
            write!(f, "{}", s.unified)?;
        }
        Ok(())
    }
}

/// How one section of a prompt is shown as text.
type SectionText = fn(&Prompt) -> String;

/// Diff `a` (old) against `b` (new).
pub fn diff(a: &Prompt, b: &Prompt) -> PromptDiff {
    let sections: [(&'static str, SectionText); 6] = [
        ("description", |p| p.description.clone().unwrap_or_default()),
        ("messages", body_text),
        ("variables", |p| {
            pretty(&serde_json::to_value(&p.variables).unwrap_or(Value::Null))
        }),
        ("params", |p| pretty(&Value::Object(p.params.clone()))),
        ("tools", |p| {
            p.tools
                .as_ref()
                .map(|t| pretty(&Value::Array(t.clone())))
                .unwrap_or_default()
        }),
        ("output_schema", |p| {
            p.output_schema.as_ref().map(pretty).unwrap_or_default()
        }),
    ];
    let mut out = PromptDiff::default();
    for (section, text) in sections {
        let (old, new) = (text(a), text(b));
        if old == new {
            continue;
        }
        let unified = TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header("a", "b")
            .to_string();
        out.sections.push(SectionDiff { section, unified });
    }
    out
}

fn body_text(p: &Prompt) -> String {
    match &p.body {
        PromptBody::Chat(msgs) => msgs
            .iter()
            .map(|m| format!("[{}]\n{}\n", m.role.as_str(), m.content))
            .collect::<Vec<_>>()
            .join("\n"),
        PromptBody::Text(t) => format!("[template]\n{t}\n"),
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
