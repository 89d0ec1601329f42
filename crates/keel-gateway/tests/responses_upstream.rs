#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! An `openai` provider with `api = "responses"`: every call to its models goes to the
//! upstream's `POST /v1/responses` (here the mock server's, which speaks the Responses
//! wire format) — chat completions whole and streamed, tool calls, and `/v1/responses`
//! calls themselves — priced from the Responses usage; chat parameters the Responses API
//! lacks are refused by name; and the `api` key is checked in the config.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use common::*;
use keel_core::config::mock::MockSettings;
use keel_providers::mock::MockServerState;
use serde_json::{json, Value};

/// The mock server, recording the path of every request; its base URL and the paths.
async fn recording_mock() -> (String, Arc<Mutex<Vec<String>>>) {
    let state = Arc::new(MockServerState::new(MockSettings::default()).unwrap());
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    let app = keel_mock::router(state).layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(req.uri().path().to_string());
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1"), paths)
}

async fn harness() -> (Harness, Arc<Mutex<Vec<String>>>) {
    let (base, paths) = recording_mock().await;
    let h = Harness::with(Options {
        extra: format!(
            r#"
[providers.resp]
kind = "openai"
base_url = "{base}"
api = "responses"

[models.via-responses]
provider = "resp"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"#
        ),
        ..Options::default()
    })
    .await;
    (h, paths)
}

#[tokio::test]
async fn chat_calls_go_out_on_the_responses_api_and_are_priced() {
    let (h, paths) = harness().await;
    let r = h.chat(&chat_body("via-responses", "hello upstream")).await;
    assert_eq!(r.status(), 200);
    let whole_id = request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Mock reply to: hello upstream"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = v["usage"].clone();
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);

    let r = h
        .chat(&stream_body("via-responses", "stream upstream", true))
        .await;
    assert_eq!(r.status(), 200);
    let stream_id = request_id(&r);
    let chunks = sse_chunks(&r.text().await.unwrap());
    assert_eq!(streamed_text(&chunks), "Mock reply to: stream upstream");
    let last = chunks.last().unwrap();
    assert!(
        last["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{last}"
    );

    // A tool call, whole and through /v1/responses (translated twice).
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let r = h
        .chat(&json!({"model": "via-responses", "tools": tools,
            "messages": [{"role": "user", "content": "[mock:tool=get_weather] Paris?"}]}))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let r = h
        .post_json(
            "/v1/responses",
            &json!({"model": "via-responses", "input": "both ways", "stream": true}),
            &[],
        )
        .await;
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().0, "response.completed");
    assert!(events
        .iter()
        .any(|(e, d)| e == "response.output_text.delta" && d["delta"].is_string()));

    assert!(
        paths.lock().unwrap().iter().all(|p| p == "/v1/responses"),
        "{:?}",
        paths.lock().unwrap()
    );
    assert_eq!(paths.lock().unwrap().len(), 4);
    let (_, traces) = h.finish().await;
    let whole = trace(&traces, &whole_id);
    let want = usage["prompt_tokens"].as_i64().unwrap() * INPUT_NANOS_PER_TOKEN
        + usage["completion_tokens"].as_i64().unwrap() * OUTPUT_NANOS_PER_TOKEN;
    assert_eq!(whole.cost.unwrap().0, want);
    assert!(trace(&traces, &stream_id).cost.unwrap().0 > 0);
}

#[tokio::test]
async fn chat_parameters_the_responses_api_lacks_are_refused_by_name() {
    let (h, paths) = harness().await;
    let mut body = chat_body("via-responses", "x");
    body["stop"] = json!(["\n"]);
    let r = h.chat(&body).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`stop`") && message.contains("api = \"responses\""),
        "{v}"
    );
    assert!(paths.lock().unwrap().is_empty(), "nothing was sent");
    h.finish().await;
}

#[test]
fn the_api_key_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.toml");
    for (provider, needle) in [
        (
            "kind = \"openai\"\napi = \"assistants\"",
            "unknown API `assistants`",
        ),
        (
            "kind = \"anthropic\"\napi = \"responses\"",
            "only applies to kind = \"openai\"",
        ),
    ] {
        let text = format!("[providers.p]\n{provider}\n\n[models.m]\nprovider = \"p\"\n");
        let e = keel_core::config::Config::from_toml(&text, &path).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
}
