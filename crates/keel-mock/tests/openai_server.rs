#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The mock server over real HTTP: started on 127.0.0.1:0, driven with reqwest, the
//! responses checked as an OpenAI client would see them.

use std::time::Duration;

use keel_core::config::mock::MockSettings;
use serde_json::{json, Value};

async fn start(settings: MockSettings) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(keel_mock::serve(listener, settings));
    format!("http://{addr}")
}

fn chat(text: &str) -> Value {
    json!({
        "model": "mock-1",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": text}
        ]
    })
}

fn streamed(text: &str, include_usage: bool) -> Value {
    let mut body = chat(text);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

async fn post(base: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn json_completion() {
    let base = start(MockSettings::default()).await;
    let resp = post(&base, &chat("Hello, world!")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mock-1");
    assert_eq!(v["created"], 1_700_000_000);
    assert_eq!(v["system_fingerprint"], "fp_mock");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Mock reply to: Hello, world!"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 16, "completion_tokens": 8, "total_tokens": 24})
    );

    let again: Value = post(&base, &chat("Hello, world!"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, v, "same request, same bytes");
}

#[tokio::test]
async fn streaming_with_and_without_usage() {
    let base = start(MockSettings::default()).await;
    let text = "one two three four five six seven eight";
    let whole: Value = post(&base, &chat(text)).await.json().await.unwrap();

    let resp = post(&base, &streamed(text, true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        content,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    // "Mock reply to: one ... eight" = 12 tokens → 3 content chunks of 4.
    assert_eq!(chunks.len(), 1 + 3 + 1 + 1);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], whole["usage"]);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(chunks
        .iter()
        .all(|c| c["id"] == whole["id"] && c["object"] == "chat.completion.chunk"));

    let body = post(&base, &streamed(text, false))
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&body);
    assert_eq!(data.len(), 1 + 3 + 1 + 1, "no usage chunk unless asked");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(!body.contains("\"usage\""), "{body}");
}

#[tokio::test]
async fn paced_streams_arrive_whole() {
    let base = start(MockSettings {
        chunk_delay_ms: 2,
        ..Default::default()
    })
    .await;
    let body = post(&base, &streamed("a b c d e f [mock:tokens=40]", true))
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&body);
    // 40 tokens → 10 content chunks; + role, finish, usage, [DONE].
    assert_eq!(data.len(), 14, "{body}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn injected_429_has_retry_after_and_openai_error_body() {
    let base = start(MockSettings {
        retry_after_secs: 7,
        ..Default::default()
    })
    .await;
    let resp = post(&base, &chat("hi [mock:status=429]")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("try again in 7s"));

    let resp = post(&base, &streamed("hi [mock:status=503]", true)).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error");
}

#[tokio::test]
async fn random_429s_follow_the_rate() {
    let base = start(MockSettings {
        rate_429: 1.0,
        retry_after_secs: 2,
        ..Default::default()
    })
    .await;
    let resp = post(&base, &chat("hi")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
}

#[tokio::test]
async fn bad_json_is_a_400_naming_the_problem() {
    let base = start(MockSettings::default()).await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(r#"{"messages": []}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `model`"),
        "{v}"
    );

    let resp = post(&base, &json!({"model": "m", "messages": []})).await;
    assert_eq!(resp.status(), 400);

    let resp = post(&base, &chat("[mock:nonsense]")).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[mock:nonsense]"),
        "{v}"
    );
}

#[tokio::test]
async fn garbage_is_a_non_json_200() {
    let base = start(MockSettings::default()).await;
    let resp = post(&base, &chat("[mock:garbage]")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let body = resp.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    assert!(body.contains("not JSON"));
}

#[tokio::test]
async fn cut_stream_ends_without_done() {
    let base = start(MockSettings::default()).await;
    let resp = post(
        &base,
        &streamed("one two three four five six seven eight [mock:cut]", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut received = Vec::new();
    let mut broke = false;
    use futures::StreamExt;
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => received.extend_from_slice(&b),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the connection must break, not end cleanly");
    let body = String::from_utf8(received).unwrap();
    assert!(!body.contains("[DONE]"), "{body}");
    let data = sse_data(&body);
    // role + half of the 3 content chunks (1); no finish, no usage.
    assert_eq!(data.len(), 2, "{body}");
    let last: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(last["choices"][0]["delta"]["content"], "Mock reply to:");
}

#[tokio::test]
async fn cut_whole_response_is_truncated_json() {
    let base = start(MockSettings::default()).await;
    let full = post(&base, &chat("hello there"))
        .await
        .text()
        .await
        .unwrap();
    let resp = post(&base, &chat("hello there [mock:cut]")).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err());
    assert_eq!(body.len(), full.len() / 2);
    assert!(body.starts_with(r#"{"id":"chatcmpl-mock-"#), "{body}");
}

#[tokio::test]
async fn timeout_hangs() {
    let base = start(MockSettings::default()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat("[mock:timeout]"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn latency_is_applied() {
    let base = start(MockSettings::default()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let send = |text: &str| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .json(&chat(text))
            .send()
    };
    assert!(send("[mock:latency=2000]").await.unwrap_err().is_timeout());
    assert_eq!(send("[mock:latency=0]").await.unwrap().status(), 200);
}

#[tokio::test]
async fn tool_call_round_trip() {
    let base = start(MockSettings::default()).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let mut body = chat("Weather in Paris? [mock:tool=get_weather]");
    body["tools"] = tools.clone();
    let v: Value = post(&base, &body).await.json().await.unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"mock"}"#);

    body["messages"]
        .as_array_mut()
        .unwrap()
        .push(choice["message"].clone());
    body["messages"].as_array_mut().unwrap().push(json!({
        "role": "tool", "tool_call_id": call["id"], "content": "{\"temp\":21}"
    }));
    let v: Value = post(&base, &body).await.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Tool result received: {\"temp\":21}"
    );
}

#[tokio::test]
async fn models_health_and_unknown_routes() {
    let base = start(MockSettings::default()).await;
    let client = reqwest::Client::new();
    let v: Value = client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["mock-1", "mock-2", "mock-large"]);
    let resp = client
        .get(format!("{base}/v1/models/mock-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        client
            .get(format!("{base}/v1/models/gpt-9"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let resp = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let resp = client
        .get(format!("{base}/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_url"
    );
}

#[tokio::test]
async fn rules_file_is_served_and_bad_files_fail_at_start() {
    let dir = std::env::temp_dir().join(format!("keel-mock-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.json");
    std::fs::write(
        &rules,
        r#"{"rules":[{"match":"refund","reply":"Refunds take 5 days."}]}"#,
    )
    .unwrap();
    let base = start(MockSettings {
        rules: Some(rules.display().to_string()),
        ..Default::default()
    })
    .await;
    let v: Value = post(&base, &chat("I want a refund"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Refunds take 5 days."
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[rules]]\nmatch = 3\n").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = keel_mock::serve(
        listener,
        MockSettings {
            rules: Some(bad.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("bad.toml") && err.contains("invalid TOML"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
