//! Prompt tokens: how many input tokens a rendered prompt costs, and how that number moves
//! between two versions of a prompt — what `keel prompt impact` and `keel prompt diff`
//! turn into dollars before a change merges.
//!
//! Counting follows the upstream model id ([`Encoding::for_model`]):
//! - `tiktoken o200k_base` for `gpt-4o*`, `chatgpt-4o*`, `gpt-4.1*`, `gpt-4.5*`, `gpt-5*`
//!   and the `o1`/`o3`/`o4` families; `tiktoken cl100k_base` for the other `gpt-4*` and
//!   `gpt-3.5*` models. These are exact for the text (the BPE files are bundled with
//!   `tiktoken-rs`, loaded once per process).
//! - Every other model (Claude, Gemini, mock and unknown models) is an **estimate**: its
//!   tokenizer is not public, so the text is counted with `cl100k_base`, which lands
//!   within roughly ±20% of those tokenizers on English prose (Claude's usually counts
//!   more). Should the bundled BPE ever fail to load, the estimate falls back to
//!   characters ÷ 4. Output labels such counts `estimate`.
//!
//! A chat adds framing to every message: OpenAI documents 3 tokens per message (plus the
//! role and content), 1 more for a `name`, and 3 that prime the reply — counted here the
//! same way for every encoding. Tools and the output schema are counted as their compact
//! JSON (the provider's own rendering of them differs a little; the delta is what matters).

use std::sync::OnceLock;

use keel_core::chat::Message;
use serde_json::{Map, Value};
use tiktoken_rs::CoreBPE;

use crate::billed::ImageRule;
use crate::prompt::{Prompt, VarType};
use crate::render::RenderError;

/// Framing tokens per chat message (OpenAI's cookbook, current models).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Extra tokens when a message carries a `name`.
pub const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the assistant's reply, once per request.
pub const REPLY_PRIMER_TOKENS: u64 = 3;
/// Most recorded variable sets a comparison renders.
pub const MAX_SAMPLES: usize = 200;

/// How tokens are counted for one upstream model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
    /// Not the model's own tokenizer: see the module doc.
    Estimate,
}

static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();

fn o200k() -> Option<&'static CoreBPE> {
    O200K
        .get_or_init(|| tiktoken_rs::o200k_base().ok())
        .as_ref()
}

fn cl100k() -> Option<&'static CoreBPE> {
    CL100K
        .get_or_init(|| tiktoken_rs::cl100k_base().ok())
        .as_ref()
}

/// Load the BPE tables that `upstream_models` are counted with ([`tables_for`]), so that
/// no call waits for them. A table loads on first use, ~100 ms of one core, and every
/// call that needs a count meanwhile waits for it: at 2,000 calls a second the first
/// governed or streamed calls after a start stalled 14–146 ms (bench/RESULTS.md
/// 2026-12-07). The gateway calls this on a thread of its own at start.
pub fn warm_encodings<'a>(upstream_models: impl IntoIterator<Item = &'a str>) {
    for table in tables_for(upstream_models) {
        let _ = match table {
            Encoding::O200kBase => o200k(),
            Encoding::Cl100kBase | Encoding::Estimate => cl100k(),
        };
    }
}

/// The tables `upstream_models` are counted with, each once: `o200k_base`, and
/// `cl100k_base` (which also counts the estimated models).
pub fn tables_for<'a>(upstream_models: impl IntoIterator<Item = &'a str>) -> Vec<Encoding> {
    let mut tables = Vec::new();
    for m in upstream_models {
        let table = match Encoding::wanted_for(m) {
            Encoding::O200kBase => Encoding::O200kBase,
            Encoding::Cl100kBase | Encoding::Estimate => Encoding::Cl100kBase,
        };
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    tables
}

impl Encoding {
    /// The encoding for an upstream model id (`gpt-4o-mini-2024-07-18`,
    /// `openai/gpt-4.1`, `claude-sonnet-4-5`); case and a `vendor/` prefix are ignored.
    pub fn for_model(upstream_model: &str) -> Encoding {
        // An exact encoding whose BPE does not load is honestly an estimate.
        match Encoding::wanted_for(upstream_model) {
            Encoding::O200kBase if o200k().is_none() => Encoding::Estimate,
            Encoding::Cl100kBase if cl100k().is_none() => Encoding::Estimate,
            other => other,
        }
    }

    /// The encoding the model's family is counted with, whether or not its table loads.
    fn wanted_for(upstream_model: &str) -> Encoding {
        // Called per counted call: no copy unless the id has capitals.
        let lower: std::borrow::Cow<'_, str> =
            if upstream_model.bytes().any(|b| b.is_ascii_uppercase()) {
                upstream_model.to_ascii_lowercase().into()
            } else {
                upstream_model.into()
            };
        let m = lower.rsplit('/').next().unwrap_or(&lower);
        let family = |p: &str| {
            m.strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with('-'))
        };
        if ["gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5"]
            .iter()
            .any(|p| m.starts_with(p))
            || ["o1", "o3", "o4"].iter().any(|p| family(p))
        {
            Encoding::O200kBase
        } else if m.starts_with("gpt-4") || m.starts_with("gpt-3.5") {
            Encoding::Cl100kBase
        } else {
            Encoding::Estimate
        }
    }

    /// `tiktoken o200k_base`, `tiktoken cl100k_base` or `estimate`.
    pub fn label(self) -> &'static str {
        match self {
            Encoding::O200kBase => "tiktoken o200k_base",
            Encoding::Cl100kBase => "tiktoken cl100k_base",
            Encoding::Estimate => "estimate",
        }
    }

    /// Whether counts are the model's own tokenizer's.
    pub fn is_exact(self) -> bool {
        !matches!(self, Encoding::Estimate)
    }

    /// Tokens of plain text (special-token text counts as ordinary text).
    pub fn count_text(self, text: &str) -> u64 {
        let bpe = match self {
            Encoding::O200kBase => o200k(),
            Encoding::Cl100kBase | Encoding::Estimate => cl100k(),
        };
        match bpe {
            Some(bpe) => bpe.count_ordinary(text) as u64,
            None => (text.chars().count() as u64).div_ceil(4),
        }
    }

    /// Input tokens of a chat: each message's framing, role, name, content (every billed
    /// part: see `billed`) and tool calls, and the reply primer. Images are counted by the
    /// encoding's provider ([`ImageRule::for_encoding`]).
    pub fn count_messages(self, messages: &[Message]) -> u64 {
        self.count_messages_with(messages, ImageRule::for_encoding(self))
    }

    /// [`Encoding::count_messages`] with the image rule of a known model
    /// ([`ImageRule::for_model`]).
    pub fn count_messages_with(self, messages: &[Message], images: ImageRule) -> u64 {
        let body: u64 = messages
            .iter()
            .map(|m| {
                let name = m
                    .name
                    .as_deref()
                    .map_or(0, |n| self.count_text(n) + TOKENS_PER_NAME);
                TOKENS_PER_MESSAGE
                    + self.count_text(&m.role)
                    + crate::billed::message_body(self, images, m)
                    + name
            })
            .sum();
        body + REPLY_PRIMER_TOKENS
    }

    /// Tokens of a JSON value written compactly (tools, an output schema).
    pub fn count_json(self, value: &Value) -> u64 {
        self.count_text(&value.to_string())
    }
}

/// Where the variables a comparison rendered with came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableSource {
    /// Recorded inputs of real calls; `skipped` did not render for one of the versions.
    Recorded { used: usize, skipped: usize },
    /// No recorded input rendered for both versions (`skipped` tried and failed):
    /// declared defaults, else a placeholder per type.
    Synthetic { skipped: usize },
}

impl VariableSource {
    /// One line for people: `120 recorded inputs` or `no recorded inputs; synthetic variables`.
    pub fn describe(&self) -> String {
        match self {
            VariableSource::Recorded { used, skipped } => {
                let s = if *used == 1 { "" } else { "s" };
                match skipped {
                    0 => format!("{used} recorded input{s}"),
                    k => format!("{used} recorded input{s} ({k} skipped: did not render)"),
                }
            }
            VariableSource::Synthetic { skipped: 0 } => {
                "no recorded inputs; synthetic variables".to_string()
            }
            VariableSource::Synthetic { skipped } => format!(
                "no recorded input rendered for both versions ({skipped} tried); synthetic variables"
            ),
        }
    }
}

/// Both versions rendered with the same variables, ready to be counted per encoding.
#[derive(Debug, Clone)]
pub struct RenderedPair {
    old: Vec<Vec<Message>>,
    new: Vec<Vec<Message>>,
    old_extras: (Option<Value>, Option<Value>),
    new_extras: (Option<Value>, Option<Value>),
    pub source: VariableSource,
}

/// Render `old` and `new` with each of the first [`MAX_SAMPLES`] of `recorded`, keeping
/// the sets that render for both; with none left, render each with
/// [`synthetic_variables`]. Fails only when the synthetic render fails.
pub fn render_pair(
    old: &Prompt,
    new: &Prompt,
    recorded: &[Map<String, Value>],
) -> Result<RenderedPair, RenderError> {
    let tried = recorded.len().min(MAX_SAMPLES);
    let (mut olds, mut news) = (Vec::new(), Vec::new());
    for vars in recorded.iter().take(MAX_SAMPLES) {
        if let (Ok(a), Ok(b)) = (old.render(vars), new.render(vars)) {
            olds.push(a);
            news.push(b);
        }
    }
    let source = if olds.is_empty() {
        olds.push(old.render(&synthetic_variables(old))?);
        news.push(new.render(&synthetic_variables(new))?);
        VariableSource::Synthetic { skipped: tried }
    } else {
        VariableSource::Recorded {
            used: olds.len(),
            skipped: tried - olds.len(),
        }
    };
    let extras = |p: &Prompt| {
        let tools = p.tools.as_ref().map(|t| Value::Array(t.clone()));
        (tools, p.output_schema.clone())
    };
    Ok(RenderedPair {
        old: olds,
        new: news,
        old_extras: extras(old),
        new_extras: extras(new),
        source,
    })
}

/// A value for every declared variable: its default, else a placeholder of its type
/// (string `"x"`, number and integer `0`, boolean `false`, `[]`, `{}`).
pub fn synthetic_variables(prompt: &Prompt) -> Map<String, Value> {
    prompt
        .variables
        .iter()
        .map(|(name, decl)| {
            let value = decl.default.clone().unwrap_or_else(|| match decl.ty {
                VarType::String => Value::from("x"),
                VarType::Number | VarType::Integer => Value::from(0),
                VarType::Boolean => Value::Bool(false),
                VarType::Array => Value::Array(Vec::new()),
                VarType::Object => Value::Object(Map::new()),
            });
            (name.clone(), value)
        })
        .collect()
}

/// The input tokens of two versions under one encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenDelta {
    pub encoding: Encoding,
    /// Mean tokens of the rendered messages (framing included).
    pub old_messages: f64,
    pub new_messages: f64,
    /// Tokens of the tools' JSON, when either version has tools.
    pub tools: Option<(u64, u64)>,
    /// Tokens of the output schema's JSON, when either version has one.
    pub output_schema: Option<(u64, u64)>,
}

impl TokenDelta {
    /// Everything a call sends: messages, tools and output schema (old, new).
    pub fn totals(&self) -> (f64, f64) {
        let (t_old, t_new) = self.tools.unwrap_or((0, 0));
        let (s_old, s_new) = self.output_schema.unwrap_or((0, 0));
        (
            self.old_messages + (t_old + s_old) as f64,
            self.new_messages + (t_new + s_new) as f64,
        )
    }

    /// New minus old, per call.
    pub fn delta(&self) -> f64 {
        let (old, new) = self.totals();
        new - old
    }

    /// The delta as a percentage of the old total (`None` when the old total is 0).
    pub fn delta_pct(&self) -> Option<f64> {
        let (old, _) = self.totals();
        (old > 0.0).then(|| self.delta() / old * 100.0)
    }
}

impl RenderedPair {
    /// How many variable sets were rendered.
    pub fn samples(&self) -> usize {
        self.old.len()
    }

    /// Count both sides under `encoding`.
    pub fn measure(&self, encoding: Encoding) -> TokenDelta {
        let mean = |sets: &[Vec<Message>]| {
            let total: u64 = sets.iter().map(|m| encoding.count_messages(m)).sum();
            total as f64 / sets.len().max(1) as f64
        };
        let pair = |a: &Option<Value>, b: &Option<Value>| {
            let count = |v: &Option<Value>| v.as_ref().map_or(0, |v| encoding.count_json(v));
            (a.is_some() || b.is_some()).then(|| (count(a), count(b)))
        };
        TokenDelta {
            encoding,
            old_messages: mean(&self.old),
            new_messages: mean(&self.new),
            tools: pair(&self.old_extras.0, &self.new_extras.0),
            output_schema: pair(&self.old_extras.1, &self.new_extras.1),
        }
    }
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
