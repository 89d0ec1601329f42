//! `Deserialize` for the chat types that keep unknown fields in `extra`, written out
//! instead of derived.
//!
//! Why: serde's derive implements `#[serde(flatten)]` by buffering every field it does
//! not know into its private `Content` type and then deserializing `extra` out of that
//! buffer through a second deserializer; `#[serde(untagged)]` enums (`Content`, `Stop`)
//! buffer the whole value before trying each variant. Here unknown fields go straight
//! into a `serde_json::Value` and the string-or-list enums read their value once.
//! Measured with callgrind on the same bodies (2026-12-07): an upstream's answer (609
//! bytes) 15.9k → 14.6k instructions and 18 → 15 allocations, a streamed chunk 7.5k →
//! 7.1k, a 21-message request with a tool 72.6k → 69.3k; the bench's proxied call 700
//! instructions and one allocation less.
//!
//! What a derive gave is kept: a missing required field or a repeated known one is the
//! same error (`missing field `model``, `duplicate field `model``), a JSON `null` for an
//! `Option` is `None`, a repeated unknown field keeps its last value, and only objects
//! are accepted (a derive with `flatten` refused arrays too).

use std::fmt;

use serde::de::{self, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::chat::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Content, ContentPart, Delta,
    FunctionDef, Message, Stop, StreamOptions, Tool,
};

/// An object's key, borrowed from the input when it can be (serde's `Cow<str>` always
/// copies): unknown keys are the only ones kept.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_string(),
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The value of a field once the object has been read: a required one must be there,
/// the others fall back to their default.
macro_rules! field_value {
    ($v:ident, $key:literal, required) => {
        $v.ok_or_else(|| de::Error::missing_field($key))?
    };
    ($v:ident, $key:literal, default) => {
        $v.unwrap_or_default()
    };
    ($v:ident, $key:literal, default = $f:path) => {
        $v.unwrap_or_else($f)
    };
}

/// `Deserialize` for a struct whose last field is `extra: Map<String, Value>`: each
/// listed field (its JSON name, its Rust name and type, and `required`, `default` or
/// `default = fn`) read straight into its type, anything else into `extra`.
macro_rules! deserialize_with_extra {
    ($ty:ident { $($key:literal => $field:ident: $fty:ty, $($how:ident)+ $(= $f:path)?;)* }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct StructVisitor;
                impl<'de> Visitor<'de> for StructVisitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!("struct ", stringify!($ty)))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        $(let mut $field: Option<$fty> = None;)*
                        let mut extra = Map::new();
                        while let Some(key) = map.next_key::<Key<'de>>()? {
                            match key.as_str() {
                                $($key => {
                                    if $field.is_some() {
                                        return Err(A::Error::duplicate_field($key));
                                    }
                                    $field = Some(map.next_value()?);
                                })*
                                _ => {
                                    let value: Value = map.next_value()?;
                                    extra.insert(key.into_string(), value);
                                }
                            }
                        }
                        Ok($ty {
                            $($field: field_value!($field, $key, $($how)+ $(= $f)?),)*
                            extra,
                        })
                    }
                }
                d.deserialize_map(StructVisitor)
            }
        }
    };
}

deserialize_with_extra!(ChatRequest {
    "model" => model: String, required;
    "messages" => messages: Vec<Message>, default;
    "stream" => stream: bool, default;
    "stream_options" => stream_options: Option<StreamOptions>, default;
    "temperature" => temperature: Option<f64>, default;
    "top_p" => top_p: Option<f64>, default;
    "max_tokens" => max_tokens: Option<u32>, default;
    "max_completion_tokens" => max_completion_tokens: Option<u32>, default;
    "stop" => stop: Option<Stop>, default;
    "seed" => seed: Option<i64>, default;
    "n" => n: Option<u32>, default;
    "user" => user: Option<String>, default;
    "tools" => tools: Option<Vec<Tool>>, default;
    "tool_choice" => tool_choice: Option<Value>, default;
    "response_format" => response_format: Option<Value>, default;
});

deserialize_with_extra!(StreamOptions {
    "include_usage" => include_usage: Option<bool>, default;
});

deserialize_with_extra!(Message {
    "role" => role: String, required;
    "content" => content: Option<Content>, default;
    "name" => name: Option<String>, default;
    "tool_calls" => tool_calls: Option<Vec<crate::chat::ToolCall>>, default;
    "tool_call_id" => tool_call_id: Option<String>, default;
});

deserialize_with_extra!(ContentPart {
    "type" => kind: String, required;
    "text" => text: Option<String>, default;
});

deserialize_with_extra!(Tool {
    "type" => kind: String, required;
    "function" => function: FunctionDef, required;
});

deserialize_with_extra!(FunctionDef {
    "name" => name: String, required;
    "description" => description: Option<String>, default;
    "parameters" => parameters: Option<Value>, default;
});

deserialize_with_extra!(ChatResponse {
    "id" => id: String, required;
    "object" => object: String, default = completion_object;
    "created" => created: i64, default;
    "model" => model: String, required;
    "choices" => choices: Vec<Choice>, required;
    "usage" => usage: Option<crate::chat::Usage>, default;
    "system_fingerprint" => system_fingerprint: Option<String>, default;
});

deserialize_with_extra!(Choice {
    "index" => index: u32, required;
    "message" => message: Message, required;
    "finish_reason" => finish_reason: Option<String>, default;
});

deserialize_with_extra!(ChatChunk {
    "id" => id: String, required;
    "object" => object: String, default = chunk_object;
    "created" => created: i64, default;
    "model" => model: String, default;
    "choices" => choices: Vec<ChunkChoice>, default;
    "usage" => usage: Option<crate::chat::Usage>, default;
    "system_fingerprint" => system_fingerprint: Option<String>, default;
});

deserialize_with_extra!(ChunkChoice {
    "index" => index: u32, required;
    "delta" => delta: Delta, default;
    "finish_reason" => finish_reason: Option<String>, default;
});

deserialize_with_extra!(Delta {
    "role" => role: Option<String>, default;
    "content" => content: Option<String>, default;
    "tool_calls" => tool_calls: Option<Vec<crate::chat::ToolCallDelta>>, default;
});

fn completion_object() -> String {
    "chat.completion".to_string()
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_string()
}

/// A string, or else a list of `T` (what `Content` and `Stop` both are).
fn string_or_list<'de, D, T, R>(
    d: D,
    expecting: &'static str,
    one: fn(String) -> R,
    many: fn(Vec<T>) -> R,
) -> Result<R, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct StringOrList<T, R> {
        expecting: &'static str,
        one: fn(String) -> R,
        many: fn(Vec<T>) -> R,
    }
    impl<'de, T: Deserialize<'de>, R> Visitor<'de> for StringOrList<T, R> {
        type Value = R;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<R, E> {
            Ok((self.one)(v.to_string()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<R, E> {
            Ok((self.one)(v))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<R, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok((self.many)(items))
        }
    }
    d.deserialize_any(StringOrList {
        expecting,
        one,
        many,
    })
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_or_list(
            d,
            "a string or a list of content parts",
            Content::Text,
            Content::Parts,
        )
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_or_list(d, "a string or a list of strings", Stop::One, Stop::Many)
    }
}

#[cfg(test)]
#[path = "chat_de_tests.rs"]
mod tests;
