//! The small correspondences both directions share: stop reason ⇄ finish reason,
//! Anthropic usage ⇄ canonical usage, data URLs ⇄ base64 sources, tool arguments ⇄
//! tool input, and message ids. Kept in one place so the inbound and the upstream
//! translations cannot drift apart.

use keel_core::chat::{PromptTokensDetails, Usage};
use serde_json::{json, Value};

use super::wire::MessagesUsage;

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub(crate) fn finish_reason_for(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything newer.
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`. `stop_sequence` is the matched
/// stop string when the upstream said which one (vLLM's `stop_reason` convention).
pub(crate) fn stop_reason_for(finish_reason: Option<&str>, stop_sequence: Option<&str>) -> String {
    let reason = match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        Some("stop") if stop_sequence.is_some() => "stop_sequence",
        _ => "end_turn",
    };
    reason.to_string()
}

/// Anthropic usage → canonical: `prompt_tokens` counts every input token (fresh, read
/// from cache and written to cache); `cached_tokens` is the cache reads. The counts come
/// from upstream bytes: sums saturate rather than overflow.
pub(crate) fn usage_to_canonical(u: &MessagesUsage) -> Usage {
    let cache_read = u.cache_read_input_tokens.unwrap_or(0);
    let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
    let prompt = u
        .input_tokens
        .saturating_add(cache_read)
        .saturating_add(cache_write);
    let mut usage = Usage::new(prompt, u.output_tokens);
    usage.prompt_tokens_details = Some(PromptTokensDetails {
        cached_tokens: cache_read,
    });
    usage
}

/// Canonical usage → Anthropic: cached tokens move out of `input_tokens` into
/// `cache_read_input_tokens`. Cache writes are not known canonically (reported as 0).
pub(crate) fn usage_from_canonical(u: &Usage) -> MessagesUsage {
    let cached = u.cached_tokens().min(u.prompt_tokens);
    MessagesUsage {
        input_tokens: u.prompt_tokens - cached,
        output_tokens: u.completion_tokens,
        cache_creation_input_tokens: Some(0),
        cache_read_input_tokens: Some(cached),
        extra: Default::default(),
    }
}

/// `data:image/png;base64,AAAA` → (`image/png`, `AAAA`). Only base64 data URLs.
pub(crate) fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    if media_type.is_empty() {
        return None;
    }
    Some((media_type.to_string(), data.to_string()))
}

pub(crate) fn data_url(media_type: &str, data: &str) -> String {
    format!("data:{media_type};base64,{data}")
}

/// A tool call's JSON-string arguments as an Anthropic `input` object. Arguments that
/// are not JSON are kept, not lost: `{"_raw": "<string>"}`. Empty means `{}`.
pub(crate) fn tool_input_from_arguments(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v) => v,
        Err(_) => json!({ "_raw": arguments }),
    }
}

/// A tool_use `input` as OpenAI's JSON-string arguments.
pub(crate) fn arguments_from_tool_input(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    }
}

/// An Anthropic-looking message id (`msg_...`) for a canonical response id.
pub(crate) fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        return id.to_string();
    }
    let core = id.strip_prefix("chatcmpl-").unwrap_or(id);
    if core.is_empty() {
        format!("msg_{}", uuid::Uuid::new_v4().simple())
    } else {
        format!("msg_{core}")
    }
}

/// Seconds since the Unix epoch, for the `created` field of canonical responses.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_map_both_ways() {
        assert_eq!(finish_reason_for("end_turn"), "stop");
        assert_eq!(finish_reason_for("stop_sequence"), "stop");
        assert_eq!(finish_reason_for("max_tokens"), "length");
        assert_eq!(finish_reason_for("tool_use"), "tool_calls");
        assert_eq!(finish_reason_for("refusal"), "content_filter");
        assert_eq!(stop_reason_for(Some("stop"), None), "end_turn");
        assert_eq!(
            stop_reason_for(Some("stop"), Some("\n\nHuman:")),
            "stop_sequence"
        );
        assert_eq!(stop_reason_for(Some("length"), None), "max_tokens");
        assert_eq!(stop_reason_for(Some("tool_calls"), None), "tool_use");
        assert_eq!(stop_reason_for(Some("content_filter"), None), "refusal");
        assert_eq!(stop_reason_for(None, None), "end_turn");
    }

    #[test]
    fn usage_counts_cache_as_input() {
        let u = MessagesUsage {
            input_tokens: 10,
            output_tokens: 7,
            cache_creation_input_tokens: Some(100),
            cache_read_input_tokens: Some(2000),
            extra: Default::default(),
        };
        let c = usage_to_canonical(&u);
        assert_eq!(
            (c.prompt_tokens, c.completion_tokens, c.total_tokens),
            (2110, 7, 2117)
        );
        assert_eq!(c.cached_tokens(), 2000);
        let back = usage_from_canonical(&c);
        // Cache writes are not representable canonically: they come back as fresh input.
        assert_eq!(back.input_tokens, 110);
        assert_eq!(back.cache_read_input_tokens, Some(2000));
        assert_eq!(back.output_tokens, 7);
    }

    #[test]
    fn data_urls_and_arguments() {
        assert_eq!(
            parse_data_url("data:image/jpeg;base64,/9j/4AAQ"),
            Some(("image/jpeg".into(), "/9j/4AAQ".into()))
        );
        assert_eq!(parse_data_url("https://example.com/a.png"), None);
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
        assert_eq!(data_url("image/png", "iVBO"), "data:image/png;base64,iVBO");
        assert_eq!(tool_input_from_arguments(r#"{"a":1}"#), json!({"a":1}));
        assert_eq!(tool_input_from_arguments(""), json!({}));
        assert_eq!(tool_input_from_arguments("{oops"), json!({"_raw":"{oops"}));
        assert_eq!(arguments_from_tool_input(&Value::Null), "{}");
        assert_eq!(message_id("chatcmpl-abc"), "msg_abc");
        assert_eq!(message_id("msg_01X"), "msg_01X");
        assert!(message_id("").starts_with("msg_"));
    }
}
