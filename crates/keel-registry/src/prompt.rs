//! The prompt model: what one prompt file means once parsed, independent of the file's
//! layout, and the two things derived from it that the store keeps per version — a
//! canonical JSON snapshot and its SHA-256 content hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// One prompt: a chat (role messages) or text template, its declared variables and the
/// default model parameters, tools and output schema that travel with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// The path under the prompts folder without `.toml` (`support/answer`). Not part of
    /// the content: renaming a file does not change its hash.
    #[serde(skip)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(flatten)]
    pub body: PromptBody,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

/// What is rendered: a list of role messages, or one text (rendered as a user message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PromptBody {
    #[serde(rename = "messages")]
    Chat(Vec<MessageTemplate>),
    #[serde(rename = "template")]
    Text(String),
}

/// One message of a chat prompt; `content` is a MiniJinja template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// A declared template variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(rename = "type")]
    pub ty: VarType,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

fn yes() -> bool {
    true
}

/// The JSON type a variable's value must have. `integer` and `number` are distinct:
/// `3` is both, `3.5` only a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
}

impl VarType {
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Number => "number",
            VarType::Integer => "integer",
            VarType::Boolean => "boolean",
            VarType::Array => "array",
            VarType::Object => "object",
        }
    }

    /// Whether `v` has this type.
    pub fn accepts(self, v: &Value) -> bool {
        match self {
            VarType::String => v.is_string(),
            VarType::Number => v.is_number(),
            VarType::Integer => v.is_i64() || v.is_u64(),
            VarType::Boolean => v.is_boolean(),
            VarType::Array => v.is_array(),
            VarType::Object => v.is_object(),
        }
    }
}

/// The JSON type name of a value, for messages ("got string").
pub(crate) fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A stored snapshot that does not parse back into a prompt.
#[derive(Debug, thiserror::Error)]
#[error("prompt snapshot of `{name}` is not valid: {source}")]
pub struct SnapshotError {
    pub name: String,
    #[source]
    pub source: serde_json::Error,
}

impl Prompt {
    /// The content as JSON: the snapshot the store keeps per version (no name).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A prompt back from a stored snapshot.
    pub fn from_json(name: &str, v: &Value) -> Result<Prompt, SnapshotError> {
        let mut p: Prompt = serde_json::from_value(v.clone()).map_err(|source| SnapshotError {
            name: name.to_string(),
            source,
        })?;
        p.name = name.to_string();
        Ok(p)
    }

    /// The content as canonical JSON: object keys sorted at every depth, no whitespace.
    /// Two files that parse to the same content (whatever their key order, quoting or
    /// spacing) give the same text.
    pub fn canonical_json(&self) -> String {
        let mut out = String::new();
        write_canonical(&self.to_json(), &mut out);
        out
    }

    /// SHA-256 (hex) of [`Prompt::canonical_json`]: what decides whether a push is a new
    /// version.
    pub fn content_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(child) = m.get(k) {
                    write_canonical(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
