//! The embeddings wire format (`POST /v1/embeddings`, OpenAI's shape), shared by the
//! gateway's endpoint and every provider that can embed.
//!
//! `input` is a string, a list of strings, a list of token ids, or a list of token-id
//! lists; `encoding_format` is `float` (default) or `base64` (each vector as the base64
//! of its little-endian f32 bytes, what OpenAI's SDKs ask for by default).

use serde::{Deserialize, Serialize};

/// Most inputs in one request (OpenAI's documented limit).
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// The inputs as texts, one per vector (token ids are written as numbers: what the
    /// mock embeds and Keel's estimate counts).
    pub fn texts(&self) -> Vec<String> {
        let ids = |t: &[u32]| t.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
        match self {
            EmbeddingInput::Text(s) => vec![s.clone()],
            EmbeddingInput::Texts(v) => v.clone(),
            EmbeddingInput::Tokens(t) => vec![ids(t)],
            EmbeddingInput::TokenLists(l) => l.iter().map(|t| ids(t)).collect(),
        }
    }

    /// How many vectors the request asks for.
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Text(_) | EmbeddingInput::Tokens(_) => 1,
            EmbeddingInput::Texts(v) => v.len(),
            EmbeddingInput::TokenLists(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl EmbeddingRequest {
    /// Whether vectors go back as base64.
    pub fn wants_base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }

    /// The problem with this request, if any, as (message, fix).
    pub fn problem(&self) -> Option<(String, &'static str)> {
        if self.model.trim().is_empty() {
            return Some(("`model` is empty".into(), "name a configured model"));
        }
        if self.input.is_empty() {
            return Some((
                "`input` is empty".into(),
                "send a string or a non-empty list",
            ));
        }
        if self.input.len() > MAX_INPUTS {
            return Some((
                format!("{} inputs, more than {MAX_INPUTS}", self.input.len()),
                "split the request",
            ));
        }
        let empty = match &self.input {
            EmbeddingInput::Text(s) => s.is_empty(),
            EmbeddingInput::Texts(v) => v.iter().any(String::is_empty),
            EmbeddingInput::Tokens(t) => t.is_empty(),
            EmbeddingInput::TokenLists(l) => l.iter().any(Vec::is_empty),
        };
        if empty {
            return Some((
                "an input is empty".into(),
                "remove empty strings and token lists",
            ));
        }
        if self.dimensions == Some(0) {
            return Some((
                "`dimensions` is 0".into(),
                "leave it out or give a positive size",
            ));
        }
        match self.encoding_format.as_deref() {
            None | Some("float") | Some("base64") => None,
            Some(other) => Some((
                format!("unknown encoding_format `{other}`"),
                "use \"float\" or \"base64\"",
            )),
        }
    }
}

/// One vector: floats, or base64 of little-endian f32 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

impl Embedding {
    /// The `index`-th vector of an answer, encoded as the request asked.
    pub fn new(index: usize, values: Vec<f32>, base64: bool) -> Self {
        Embedding {
            object: embedding_object(),
            index: u32::try_from(index).unwrap_or(u32::MAX),
            embedding: if base64 {
                Vector::Base64(to_base64(&values))
            } else {
                Vector::Float(values)
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    #[serde(default = "embedding_object")]
    pub object: String,
    pub index: u32,
    pub embedding: Vector,
}

fn embedding_object() -> String {
    "embedding".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    #[serde(default = "list_object")]
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    #[serde(default)]
    pub usage: EmbeddingUsage,
}

fn list_object() -> String {
    "list".into()
}

/// A vector as base64 of its little-endian f32 bytes.
pub fn to_base64(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: serde_json::Value) -> EmbeddingRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn every_input_shape_parses() {
        let r = req(serde_json::json!({"model": "e", "input": "hi"}));
        assert_eq!(r.input.texts(), ["hi"]);
        let r = req(serde_json::json!({"model": "e", "input": ["a", "b"]}));
        assert_eq!(r.input.len(), 2);
        let r = req(serde_json::json!({"model": "e", "input": [1, 2, 3]}));
        assert_eq!(r.input.texts(), ["1 2 3"]);
        let r = req(serde_json::json!({"model": "e", "input": [[1], [2, 3]]}));
        assert_eq!(r.input.texts(), ["1", "2 3"]);
        assert!(r.problem().is_none());
    }

    #[test]
    fn problems_name_the_fix() {
        for (body, needle) in [
            (serde_json::json!({"model": "e", "input": []}), "empty"),
            (
                serde_json::json!({"model": "e", "input": ["a", ""]}),
                "empty",
            ),
            (
                serde_json::json!({"model": "e", "input": "a", "dimensions": 0}),
                "dimensions",
            ),
            (
                serde_json::json!({"model": "e", "input": "a", "encoding_format": "hex"}),
                "hex",
            ),
            (serde_json::json!({"model": " ", "input": "a"}), "model"),
        ] {
            let (msg, _) = req(body.clone())
                .problem()
                .unwrap_or_else(|| panic!("{body}"));
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(to_base64(&[1.0]), "AACAPw==");
    }
}
