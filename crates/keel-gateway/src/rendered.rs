//! What a call sent to its provider, for the trace page and `keel traces show`.
//!
//! A trace keeps the request as the client sent it. For a function call that is a set of
//! `variables`, not the messages the model saw; those are rebuilt here, exactly as the
//! request path builds them (`pipeline::function::render_into`): the trace's prompt
//! version, rendered with the recorded variables, then the caller's own messages.
//! Rendering is deterministic, so the rebuild is what was sent — before input guardrails
//! redacted anything (a trace stored redacted has its variables redacted too). A raw
//! model call sent its own messages.

use keel_core::chat::{ChatRequest, Message};
use keel_core::trace::TraceRecord;
use keel_registry::Prompt;
use keel_store::sql::Db;
use serde_json::{Map, Value};

/// The messages `trace`'s call sent, or why they cannot be shown.
pub fn sent_messages(conn: Db<'_>, trace: &TraceRecord) -> Result<Vec<Message>, String> {
    let input = trace
        .input
        .as_deref()
        .ok_or("the request was not captured ([gateway] capture = \"none\")")?;
    let req: ChatRequest = serde_json::from_str(input)
        .map_err(|e| format!("the captured request is not a chat request: {e}"))?;
    let (Some(name), Some(version)) = (&trace.prompt_name, trace.prompt_version) else {
        return Ok(req.messages);
    };
    let stored = keel_store::get_version(conn, name, version)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("prompt `{name}` v{version} is no longer in the store"))?;
    let prompt = serde_json::from_str::<Value>(&stored.content_json)
        .map_err(|e| e.to_string())
        .and_then(|json| Prompt::from_json(name, &json).map_err(|e| e.to_string()))?;
    let variables = match req.extra.get("variables") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let mut messages = prompt
        .render(&variables)
        .map_err(|e| format!("prompt `{name}` v{version}: {e}"))?;
    messages.extend(req.messages);
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(prompt: &str) -> (keel_store::Store, i64) {
        let store = keel_store::Store::open(":memory:").unwrap();
        let p =
            keel_registry::parse_prompt("support/answer", std::path::Path::new("p.toml"), prompt)
                .unwrap();
        let conn = store.conn().unwrap();
        let json = p.to_json().to_string();
        let v = match keel_store::push_version(
            &conn,
            "support/answer",
            &p.content_hash(),
            &json,
            "t",
            "r",
            None,
        )
        .unwrap()
        {
            keel_store::PushOutcome::Created(v) | keel_store::PushOutcome::Unchanged(v) => v,
        };
        (store, v)
    }

    #[test]
    fn a_function_call_is_shown_as_its_rendered_prompt_then_the_callers_messages() {
        let (store, v) = store_with(
            "[[messages]]\nrole = \"system\"\ncontent = \"You support {{ product }}.\"\n[variables.product]\ntype = \"string\"\n",
        );
        let mut t = TraceRecord::new("t1".into(), 0, "openai", "/v1/chat/completions");
        t.prompt_name = Some("support/answer".into());
        t.prompt_version = Some(v);
        t.input = Some(
            r#"{"model":"support","variables":{"product":"Keel"},"messages":[{"role":"user","content":"hi"}]}"#
                .into(),
        );
        let sent = sent_messages(store.conn().unwrap().db(), &t).unwrap();
        let texts: Vec<(String, String)> = sent
            .iter()
            .map(|m| (m.role.clone(), m.text_content()))
            .collect();
        assert_eq!(
            texts,
            [
                ("system".to_string(), "You support Keel.".to_string()),
                ("user".to_string(), "hi".to_string())
            ]
        );
        // Without capture there is nothing to rebuild from.
        t.input = None;
        assert!(sent_messages(store.conn().unwrap().db(), &t)
            .unwrap_err()
            .contains("capture"));
    }
}
