//! A canonical chat request as a Gemini `generateContent` body.
//!
//! System and developer messages become `systemInstruction`; assistant turns are role
//! `model`, their tool calls `functionCall` parts (arguments parsed to the `args`
//! object; a thought signature Keel carried in the call id goes back as the part's
//! `thoughtSignature`); tool results `functionResponse` parts of a `user` turn, named after the call
//! they answer. Consecutive turns of one role are merged (Gemini wants them alternating).
//! Tools go as `functionDeclarations` with `parametersJsonSchema` (full JSON Schema, no
//! translation to Gemini's OpenAPI subset), `tool_choice` as `toolConfig`, sampling and
//! JSON output as `generationConfig` (`responseMimeType` + `responseJsonSchema`). Chat
//! parameters with no Gemini equivalent (`logprobs`, `logit_bias`) are refused by name.

use std::collections::HashMap;

use keel_core::chat::{ChatRequest, Content, Message};
use serde_json::{json, Map, Value};

use crate::ProviderError;

fn unsupported(what: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unsupported(format!("{what} (the provider is kind = \"gemini\")"))
}

/// The body for `POST …/models/{model}:generateContent` (or `:streamGenerateContent`).
pub fn chat_request_to_gemini(req: &ChatRequest) -> Result<Value, ProviderError> {
    for name in ["logprobs", "top_logprobs", "logit_bias"] {
        if req
            .extra
            .get(name)
            .is_some_and(|v| !v.is_null() && v != &json!(false))
        {
            return Err(unsupported(format!(
                "`{name}` has no Gemini equivalent; remove it"
            )));
        }
    }
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // Tool call id → function name: a functionResponse must name its function.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, parts) = match m.role.as_str() {
            "system" | "developer" => {
                system.push(json!({"text": m.text_content()}));
                continue;
            }
            "user" => ("user", user_parts(m, i)?),
            "assistant" => {
                let mut parts = Vec::new();
                let text = m.text_content();
                if !text.is_empty() {
                    parts.push(json!({"text": text}));
                }
                for c in m.tool_calls.iter().flatten() {
                    names.insert(&c.id, &c.function.name);
                    let args: Value = if c.function.arguments.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&c.function.arguments).map_err(|e| {
                            unsupported(format!(
                                "messages[{i}].tool_calls: arguments of `{}` are not JSON ({e})",
                                c.function.name
                            ))
                        })?
                    };
                    let (id, signature) = split_signature(&c.id);
                    let mut part =
                        json!({"functionCall": {"id": id, "name": c.function.name, "args": args}});
                    if let Some(sig) = signature {
                        part["thoughtSignature"] = json!(sig);
                    }
                    parts.push(part);
                }
                ("model", parts)
            }
            "tool" => {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                let name = names.get(id).copied().ok_or_else(|| {
                    unsupported(format!(
                        "messages[{i}]: tool result for `{id}`, which no earlier assistant turn called"
                    ))
                })?;
                let text = m.text_content();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"content": text}),
                };
                let id = split_signature(id).0;
                let part =
                    json!({"functionResponse": {"id": id, "name": name, "response": response}});
                ("user", vec![part])
            }
            other => return Err(unsupported(format!("messages[{i}].role {other:?}"))),
        };
        match contents.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(p) = last["parts"].as_array_mut() {
                    p.extend(parts);
                }
            }
            _ => contents.push(json!({"role": role, "parts": parts})),
        }
    }
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if let Some(tools) = &req.tools {
        let declarations: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t.function.name});
                if let Some(desc) = &t.function.description {
                    d["description"] = json!(desc);
                }
                if let Some(p) = &t.function.parameters {
                    d["parametersJsonSchema"] = p.clone();
                }
                d
            })
            .collect();
        body.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
    }
    if let Some(choice) = &req.tool_choice {
        body.insert("toolConfig".into(), tool_config(choice)?);
    }
    let config = generation_config(req)?;
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// A tool call id as Keel gave it out: Gemini's id, and its thought signature if any.
fn split_signature(id: &str) -> (&str, Option<&str>) {
    match id.split_once(super::response::SIGNATURE_SEP) {
        Some((id, sig)) => (id, Some(sig)),
        None => (id, None),
    }
}

fn user_parts(m: &Message, i: usize) -> Result<Vec<Value>, ProviderError> {
    match &m.content {
        None => Ok(vec![json!({"text": ""})]),
        Some(Content::Text(t)) => Ok(vec![json!({"text": t})]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| match p.kind.as_str() {
                "text" => Ok(json!({"text": p.text.clone().unwrap_or_default()})),
                "image_url" => image_part(p.extra.get("image_url"), i, j),
                other => Err(unsupported(format!(
                    "messages[{i}].content[{j}]: {other:?} parts"
                ))),
            })
            .collect(),
    }
}

/// An `image_url` as inline data (a `data:` URL) or a file reference (any other URL).
fn image_part(image: Option<&Value>, i: usize, j: usize) -> Result<Value, ProviderError> {
    let url = image
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').unwrap_or((rest, ""));
        let mime = meta.strip_suffix(";base64").ok_or_else(|| {
            unsupported(format!(
                "messages[{i}].content[{j}]: a data: URL must be base64"
            ))
        })?;
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    let lower = url.to_ascii_lowercase();
    let mime = match lower.rsplit('.').next() {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("heic") => "image/heic",
        _ => "image/jpeg",
    };
    Ok(json!({"fileData": {"mimeType": mime, "fileUri": url}}))
}

fn tool_config(choice: &Value) -> Result<Value, ProviderError> {
    let mode = |m: &str| json!({"functionCallingConfig": {"mode": m}});
    match choice {
        Value::String(s) if s == "auto" => Ok(mode("AUTO")),
        Value::String(s) if s == "none" => Ok(mode("NONE")),
        Value::String(s) if s == "required" => Ok(mode("ANY")),
        _ => match choice.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Ok(
                json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}),
            ),
            None => Err(unsupported(format!("tool_choice {choice}"))),
        },
    }
}

fn generation_config(req: &ChatRequest) -> Result<Map<String, Value>, ProviderError> {
    let mut c = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            c.insert(k.to_string(), v);
        }
    };
    put("temperature", req.temperature.map(|t| json!(t)));
    put("topP", req.top_p.map(|t| json!(t)));
    put("maxOutputTokens", req.max_output_tokens().map(|t| json!(t)));
    put(
        "stopSequences",
        req.stop.as_ref().map(|s| json!(s.to_vec())),
    );
    put("candidateCount", req.n.map(|n| json!(n)));
    put("seed", req.seed.map(|s| json!(s)));
    put(
        "presencePenalty",
        req.extra.get("presence_penalty").cloned(),
    );
    put(
        "frequencyPenalty",
        req.extra.get("frequency_penalty").cloned(),
    );
    match req
        .response_format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        Some("json_object") => put("responseMimeType", Some(json!("application/json"))),
        Some("json_schema") => {
            put("responseMimeType", Some(json!("application/json")));
            let schema = req
                .response_format
                .as_ref()
                .and_then(|f| f.pointer("/json_schema/schema"))
                .cloned();
            if schema.is_none() {
                return Err(unsupported("response_format json_schema without `schema`"));
            }
            put("responseJsonSchema", schema);
        }
        _ => {}
    }
    Ok(c)
}
