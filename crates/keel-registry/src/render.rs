//! Rendering a prompt with the caller's variables into chat messages. Variables are
//! checked against the declarations first (required present, types right, no unknown
//! names), so the error a caller sees names the variable and the problem — these
//! messages become the gateway's 400 responses.

use keel_core::chat::Message;
use serde_json::{Map, Value};

use crate::prompt::{json_type_name, Prompt, PromptBody};
use crate::validate::{article, environment, render_message};

/// Why a prompt could not be rendered with the given variables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("variable `{name}` is required ({ty})")]
    Missing { name: String, ty: &'static str },
    #[error(
        "variable `{name}` must be {} {expected}, got {got}",
        article(expected)
    )]
    WrongType {
        name: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("unknown variable `{name}` (this prompt declares: {declared})")]
    Unknown { name: String, declared: String },
    #[error("cannot render {path}: {message}")]
    Template { path: String, message: String },
}

impl Prompt {
    /// Render with `vars`. A text prompt renders to one user message.
    pub fn render(&self, vars: &Map<String, Value>) -> Result<Vec<Message>, RenderError> {
        let ctx = self.context(vars)?;
        let env = environment();
        let one = |path: String, source: &str| -> Result<String, RenderError> {
            let fail = |e: minijinja::Error| RenderError::Template {
                path: path.clone(),
                message: render_message(&e),
            };
            env.template_from_str(source)
                .map_err(fail)?
                .render(&ctx)
                .map_err(fail)
        };
        match &self.body {
            PromptBody::Chat(msgs) => msgs
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    one(format!("messages[{i}].content"), &m.content)
                        .map(|text| Message::text(m.role.as_str(), text))
                })
                .collect(),
            PromptBody::Text(t) => Ok(vec![Message::text("user", one("template".into(), t)?)]),
        }
    }

    /// The checked variables with defaults applied.
    pub(crate) fn context(
        &self,
        vars: &Map<String, Value>,
    ) -> Result<Map<String, Value>, RenderError> {
        for (name, value) in vars {
            let Some(decl) = self.variables.get(name) else {
                let declared: Vec<&str> = self.variables.keys().map(String::as_str).collect();
                return Err(RenderError::Unknown {
                    name: name.clone(),
                    declared: if declared.is_empty() {
                        "none".into()
                    } else {
                        declared.join(", ")
                    },
                });
            };
            if !decl.ty.accepts(value) {
                return Err(RenderError::WrongType {
                    name: name.clone(),
                    expected: decl.ty.as_str(),
                    got: json_type_name(value),
                });
            }
        }
        let mut ctx = vars.clone();
        for (name, decl) in &self.variables {
            if ctx.contains_key(name) {
                continue;
            }
            if decl.required {
                return Err(RenderError::Missing {
                    name: name.clone(),
                    ty: decl.ty.as_str(),
                });
            }
            if let Some(d) = &decl.default {
                ctx.insert(name.clone(), d.clone());
            }
        }
        Ok(ctx)
    }
}
