//! A planned mock reply and how it is streamed: the chunk sequence OpenAI sends for a
//! completion, built from the whole response so the streamed and non-streamed answers
//! to a request always agree.
//!
//! Per choice: a role chunk (`{"role":"assistant","content":""}`, or the tool call's id
//! and name with empty arguments), then content deltas of [`TOKENS_PER_CHUNK`] tokens
//! (argument fragments for a tool call); then one finish chunk per choice; then, when
//! asked, the usage chunk (empty `choices`, `usage` set). A cut reply stops after the
//! role chunks and half of the content chunks, with no finish and no usage chunk.

use std::time::Duration;

use keel_core::chat::{
    ChatChunk, ChatResponse, ChunkChoice, Content, Delta, FunctionCallDelta, ToolCallDelta,
};

use super::tokens;

/// Tokens per streamed content delta.
pub const TOKENS_PER_CHUNK: usize = 4;

/// A completion the mock decided to give, with how to deliver it.
#[derive(Debug, Clone, PartialEq)]
pub struct MockReply {
    /// The whole completion (what a non-streamed call returns).
    pub response: ChatResponse,
    /// The latency before the answer. `MockServerState::respond` has already waited it:
    /// callers must not sleep it again.
    pub latency: Duration,
    /// The pause between two streamed chunks; the caller sleeps it (not before the first).
    pub chunk_delay: Duration,
    /// Break the answer half-way: for a stream, send [`MockReply::chunks`] (already cut
    /// short) then close the connection without `[DONE]`; for a whole response, send
    /// only the first half of the JSON body.
    pub cut: bool,
}

impl MockReply {
    /// The chunks to stream, in order. The usage chunk comes last when `include_usage`.
    /// When `cut`, this is only the part sent before the connection breaks.
    pub fn chunks(&self, include_usage: bool) -> Vec<ChatChunk> {
        let r = &self.response;
        let chunk = |choices: Vec<ChunkChoice>| ChatChunk {
            id: r.id.clone(),
            object: "chat.completion.chunk".to_string(),
            created: r.created,
            model: r.model.clone(),
            choices,
            usage: None,
            system_fingerprint: r.system_fingerprint.clone(),
            extra: Default::default(),
        };
        let one = |index: u32, delta: Delta, finish: Option<String>| {
            chunk(vec![ChunkChoice {
                index,
                delta,
                finish_reason: finish,
                extra: Default::default(),
            }])
        };

        let mut heads = Vec::with_capacity(r.choices.len());
        let mut bodies = Vec::new();
        for c in &r.choices {
            let calls = c.message.tool_calls.as_deref().unwrap_or_default();
            if calls.is_empty() {
                let text = match &c.message.content {
                    Some(Content::Text(t)) => t.clone(),
                    Some(parts) => parts.joined_text(),
                    None => String::new(),
                };
                heads.push(one(c.index, delta(Some(String::new()), None, true), None));
                for piece in tokens::split(&text, TOKENS_PER_CHUNK) {
                    bodies.push(one(
                        c.index,
                        delta(Some(piece.to_string()), None, false),
                        None,
                    ));
                }
            } else {
                let mut head_calls = Vec::with_capacity(calls.len());
                let mut pieces = Vec::new();
                for (i, call) in (0u32..).zip(calls) {
                    head_calls.push(ToolCallDelta {
                        index: i,
                        id: Some(call.id.clone()),
                        kind: Some(call.kind.clone()),
                        function: Some(FunctionCallDelta {
                            name: Some(call.function.name.clone()),
                            arguments: Some(String::new()),
                        }),
                    });
                    for piece in tokens::split(&call.function.arguments, TOKENS_PER_CHUNK) {
                        pieces.push(ToolCallDelta {
                            index: i,
                            function: Some(FunctionCallDelta {
                                name: None,
                                arguments: Some(piece.to_string()),
                            }),
                            ..Default::default()
                        });
                    }
                }
                heads.push(one(c.index, delta(None, Some(head_calls), true), None));
                for piece in pieces {
                    bodies.push(one(c.index, delta(None, Some(vec![piece]), false), None));
                }
            }
        }

        let mut out = heads;
        if self.cut {
            let half = bodies.len() / 2;
            out.extend(bodies.into_iter().take(half));
            return out;
        }
        out.extend(bodies);
        for c in &r.choices {
            out.push(one(c.index, Delta::default(), c.finish_reason.clone()));
        }
        if include_usage {
            if let Some(usage) = r.usage {
                let mut last = chunk(Vec::new());
                last.usage = Some(usage);
                out.push(last);
            }
        }
        out
    }
}

fn delta(content: Option<String>, tool_calls: Option<Vec<ToolCallDelta>>, head: bool) -> Delta {
    Delta {
        role: head.then(|| "assistant".to_string()),
        content,
        tool_calls,
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::chat::{Choice, FunctionCall, Message, ToolCall, Usage};

    fn reply(message: Message, finish: &str, n: u32, cut: bool) -> MockReply {
        MockReply {
            response: ChatResponse {
                id: "chatcmpl-mock-1".into(),
                object: "chat.completion".into(),
                created: 1,
                model: "mock-1".into(),
                choices: (0..n)
                    .map(|index| Choice {
                        index,
                        message: message.clone(),
                        finish_reason: Some(finish.into()),
                        extra: Default::default(),
                    })
                    .collect(),
                usage: Some(Usage::new(10, 9)),
                system_fingerprint: Some("fp_mock".into()),
                extra: Default::default(),
            },
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            cut,
        }
    }

    fn content_of(chunks: &[ChatChunk]) -> String {
        chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.clone())
            .collect()
    }

    const TEXT: &str = "Mock reply to: one two three four five six";

    #[test]
    fn text_stream_has_role_content_finish_and_usage() {
        let r = reply(Message::text("assistant", TEXT), "stop", 1, false);
        let chunks = r.chunks(true);
        // role, 3 content chunks (10 tokens, 4 per chunk), finish, usage
        assert_eq!(chunks.len(), 6);
        assert_eq!(
            chunks[0].choices[0].delta.role.as_deref(),
            Some("assistant")
        );
        assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some(""));
        assert_eq!(content_of(&chunks), TEXT);
        assert_eq!(chunks[4].choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(chunks[4].choices[0].delta.content.is_none());
        assert!(chunks[5].choices.is_empty());
        assert_eq!(chunks[5].usage, Some(Usage::new(10, 9)));
        assert!(chunks
            .iter()
            .all(|c| c.id == "chatcmpl-mock-1" && c.object == "chat.completion.chunk"));
        assert_eq!(r.chunks(false).len(), 5);
        assert!(r.chunks(false).iter().all(|c| c.usage.is_none()));
    }

    #[test]
    fn cut_stream_stops_after_half_the_content() {
        let r = reply(Message::text("assistant", TEXT), "stop", 1, true);
        let chunks = r.chunks(true);
        assert_eq!(chunks.len(), 2, "role + 1 of 3 content chunks");
        assert_eq!(content_of(&chunks), "Mock reply to:");
        assert!(chunks.iter().all(|c| c.usage.is_none()));
        assert!(chunks
            .iter()
            .flat_map(|c| &c.choices)
            .all(|c| c.finish_reason.is_none()));
    }

    #[test]
    fn tool_call_stream_sends_name_then_argument_fragments() {
        let args = r#"{"city":"mock","days":1}"#;
        let message = Message {
            role: "assistant".into(),
            tool_calls: Some(vec![ToolCall {
                id: "call_mock_x_0".into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "get_weather".into(),
                    arguments: args.into(),
                },
            }]),
            ..Default::default()
        };
        let chunks = reply(message, "tool_calls", 1, false).chunks(false);
        let head = &chunks[0].choices[0].delta;
        let call = &head.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.id.as_deref(), Some("call_mock_x_0"));
        assert_eq!(
            call.function.as_ref().unwrap().name.as_deref(),
            Some("get_weather")
        );
        let joined: String = chunks[1..]
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.tool_calls.as_ref())
            .flatten()
            .filter_map(|t| t.function.as_ref().and_then(|f| f.arguments.clone()))
            .collect();
        assert_eq!(joined, args);
        assert!(chunks.len() > 3, "arguments come in several fragments");
        let last = chunks.last().unwrap();
        assert_eq!(last.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn every_choice_is_streamed() {
        let chunks = reply(Message::text("assistant", "a b"), "stop", 2, false).chunks(true);
        // 2 role, 2 content, 2 finish, 1 usage
        assert_eq!(chunks.len(), 7);
        let indices: Vec<u32> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter(|c| c.finish_reason.is_some())
            .map(|c| c.index)
            .collect();
        assert_eq!(indices, vec![0, 1]);
    }
}
