//! What a provider bills as input beyond plain text, counted for the pre-call estimate
//! (`keel-governance`'s budget reservation) and for `keel prompt impact`:
//!
//! - **tool calls** an assistant turn made: the function name and its JSON arguments,
//!   plus a few framing tokens each — a 40k-word argument is 40k words of input;
//! - **tool results** (`role = "tool"`): their content, like any message's;
//! - **images**: each provider's published formula at the worst case of the part's
//!   `detail` level, because Keel does not decode images (a data URL's pixels or a remote
//!   URL's size are unknown before the call):
//!   - OpenAI (`gpt-*`, `o*`): `low` is the base cost; `high`/`auto` is the base plus
//!     the largest tile count an image can reach after OpenAI's resize (fit in
//!     2048×2048, shortest side to 768: 2×4 = 8 tiles of 512 px). Base/tile are 85/170
//!     tokens, and 2,833/5,667 on `gpt-4o-mini` (billed as more tokens at a lower price);
//!   - Anthropic and every other model: (width × height) / 750 tokens after the
//!     provider's resize to at most ~1.15 megapixels, about 1,600 tokens, whatever the
//!     detail;
//! - **any other part** (`input_audio`, `file`…): its JSON, counted as text — an
//!   over-count for base64 payloads, never an under-count.

use keel_core::chat::{Content, ContentPart, Message};

use crate::tokens::Encoding;

/// Framing tokens per tool call (its id, type and the JSON around the arguments).
pub const TOKENS_PER_TOOL_CALL: u64 = 8;
/// The most 512-px tiles an OpenAI `high`/`auto` image is cut into after its resize.
pub const OPENAI_MAX_TILES: u64 = 8;
/// Anthropic's ceiling for one image (≈ 1.15 MP / 750).
pub const PER_IMAGE_CEILING: u64 = 1_600;

/// How a model's provider bills an image part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRule {
    /// OpenAI: `base` for `low`, plus `per_tile` × tiles for `high`/`auto`.
    Tiles { base: u64, per_tile: u64 },
    /// A flat worst case per image (Anthropic, Gemini, unknown providers).
    PerImage(u64),
}

impl ImageRule {
    /// The rule for an upstream model id.
    pub fn for_model(upstream_model: &str) -> ImageRule {
        let lower = upstream_model.to_ascii_lowercase();
        let m = lower.rsplit('/').next().unwrap_or(&lower);
        if m.starts_with("gpt-4o-mini") {
            ImageRule::Tiles {
                base: 2_833,
                per_tile: 5_667,
            }
        } else {
            ImageRule::for_encoding(Encoding::for_model(upstream_model))
        }
    }

    /// The rule when only the encoding is known: OpenAI's for OpenAI encodings.
    pub fn for_encoding(enc: Encoding) -> ImageRule {
        match enc {
            Encoding::O200kBase | Encoding::Cl100kBase => ImageRule::Tiles {
                base: 85,
                per_tile: 170,
            },
            Encoding::Estimate => ImageRule::PerImage(PER_IMAGE_CEILING),
        }
    }

    /// Tokens of one image at `detail` (`low`, `high`, `auto`; absent means `auto`).
    pub fn tokens(self, detail: Option<&str>) -> u64 {
        match self {
            ImageRule::Tiles { base, .. } if detail == Some("low") => base,
            ImageRule::Tiles { base, per_tile } => base + per_tile * OPENAI_MAX_TILES,
            ImageRule::PerImage(n) => n,
        }
    }
}

/// Tokens of a message's content and tool calls (not its framing or role).
pub(crate) fn message_body(enc: Encoding, images: ImageRule, m: &Message) -> u64 {
    let content = match &m.content {
        None => 0,
        Some(Content::Text(t)) => enc.count_text(t),
        Some(Content::Parts(parts)) => parts.iter().map(|p| part(enc, images, p)).sum(),
    };
    let calls: u64 = m
        .tool_calls
        .iter()
        .flatten()
        .map(|c| {
            TOKENS_PER_TOOL_CALL
                + enc.count_text(&c.function.name)
                + enc.count_text(&c.function.arguments)
        })
        .sum();
    content + calls
}

fn part(enc: Encoding, images: ImageRule, p: &ContentPart) -> u64 {
    if let Some(t) = &p.text {
        return enc.count_text(t);
    }
    match p.kind.as_str() {
        "image_url" | "image" => {
            let detail = p
                .extra
                .get("image_url")
                .and_then(|u| u.get("detail"))
                .and_then(|d| d.as_str());
            images.tokens(detail)
        }
        _ => serde_json::to_string(p).map_or(0, |j| enc.count_text(&j)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::chat::{FunctionCall, ToolCall};
    use serde_json::json;

    fn msg(v: serde_json::Value) -> Message {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tool_call_arguments_count_like_the_same_words_as_text() {
        let words = "refund ".repeat(2_000);
        let as_text = Encoding::O200kBase.count_messages(&[Message::text("user", &words)]);
        let mut call = Message::text("assistant", "");
        call.content = None;
        call.tool_calls = Some(vec![ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "lookup".into(),
                arguments: words.clone(),
            },
        }]);
        let as_call = Encoding::O200kBase.count_messages(&[call]);
        assert!(as_call >= as_text, "{as_call} < {as_text}");
        // The tool's result is counted as its content.
        let result = msg(json!({"role": "tool", "tool_call_id": "call_1", "content": words}));
        assert!(Encoding::O200kBase.count_messages(&[result]) >= as_text - 1);
    }

    #[test]
    fn images_follow_each_providers_formula_by_detail() {
        let image = |detail: &str| {
            msg(json!({"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": detail}}
            ]}))
        };
        let text_only =
            Encoding::O200kBase.count_messages(&[Message::text("user", "What is this?")]);
        let low = Encoding::O200kBase.count_messages(&[image("low")]);
        let high = Encoding::O200kBase.count_messages(&[image("high")]);
        assert_eq!(low - text_only, 85);
        assert_eq!(high - text_only, 85 + 170 * 8);
        let mini = ImageRule::for_model("gpt-4o-mini-2024-07-18");
        assert_eq!(mini.tokens(Some("low")), 2_833);
        assert_eq!(mini.tokens(None), 2_833 + 5_667 * 8);
        assert_eq!(
            ImageRule::for_model("claude-sonnet-4-5").tokens(Some("low")),
            PER_IMAGE_CEILING
        );
    }

    #[test]
    fn other_parts_count_as_their_json() {
        let audio = msg(json!({"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZFZm10IBAAAAABAAEA", "format": "wav"}}
        ]}));
        assert!(Encoding::O200kBase.count_messages(&[audio]) > 10);
    }
}
