#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kind = "gemini"` against a local server speaking the Gemini API as its REST
//! reference documents it: `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` with the `x-goog-api-key` header; answers with
//! `candidates[].content.parts`, `finishReason`, `usageMetadata` (cached and thinking
//! tokens) and `modelVersion`; function calls both ways; JSON output; a prompt blocked by
//! `promptFeedback.blockReason`; a `RESOURCE_EXHAUSTED` 429; a stream cut before its
//! `finishReason`.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{json, Value};

/// What the server saw: path, query, api key header, body.
type Seen = Arc<Mutex<Vec<(String, String, String, Value)>>>;

const USAGE: &str = r#"{"promptTokenCount": 20, "candidatesTokenCount": 7, "thoughtsTokenCount": 3,
    "cachedContentTokenCount": 8, "totalTokenCount": 30}"#;

/// The answer for a request: model parts, or an error response.
fn answer(body: &Value) -> Result<Vec<Value>, Box<Response>> {
    let contents = body["contents"].as_array().unwrap();
    let last = contents.last().unwrap();
    let text: String = last["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect();
    if text.contains("blocked") {
        let v = json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}, "modelVersion": "gemini-test-001"});
        return Err(Box::new(axum::Json(v).into_response()));
    }
    if text.contains("busy") {
        let v = json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}});
        return Err(Box::new(
            (StatusCode::TOO_MANY_REQUESTS, axum::Json(v)).into_response(),
        ));
    }
    if let Some(r) = last["parts"][0].get("functionResponse") {
        return Ok(vec![
            json!({"text": format!("The tool said: {}", r["response"]["content"].as_str().unwrap_or("?"))}),
        ]);
    }
    if body.get("tools").is_some() {
        return Ok(vec![
            json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}),
        ]);
    }
    if body["generationConfig"]["responseMimeType"] == "application/json" {
        return Ok(vec![json!({"text": "{\"name\": \"Paris\"}"})]);
    }
    Ok(vec![
        json!({"text": "Gemini says: "}),
        json!({"text": text}),
    ])
}

async fn generate(
    State(seen): State<Seen>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    seen.lock().unwrap().push((
        rest.clone(),
        query.clone().unwrap_or_default(),
        key.clone(),
        body.0.clone(),
    ));
    if key != "gm-secret" {
        let v = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}});
        return (StatusCode::BAD_REQUEST, axum::Json(v)).into_response();
    }
    if rest.ends_with(":batchEmbedContents") {
        // One vector per request, `outputDimensionality` long (default 4), from the text.
        let embeddings: Vec<Value> = body.0["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let text = r["content"]["parts"][0]["text"].as_str().unwrap();
                let n = r["outputDimensionality"].as_u64().unwrap_or(4) as usize;
                let values: Vec<f64> = (0..n).map(|i| (text.len() + i) as f64 / 100.0).collect();
                json!({"values": values})
            })
            .collect();
        return axum::Json(json!({"embeddings": embeddings})).into_response();
    }
    let parts = match answer(&body.0) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let usage: Value = serde_json::from_str(USAGE).unwrap();
    if rest.ends_with(":generateContent") {
        return axum::Json(json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0,
                "safetyRatings": []}],
            "usageMetadata": usage, "modelVersion": "gemini-test-001", "responseId": "resp-g1"}))
        .into_response();
    }
    assert!(rest.ends_with(":streamGenerateContent"), "{rest}");
    let cut = parts
        .iter()
        .any(|p| p["text"].as_str().is_some_and(|t| t.contains("cut me")));
    // One event per part; the last carries finishReason and the totals (earlier ones a
    // running count, as Gemini sends them). Gemini frames events with CRLF.
    let mut frames = String::new();
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut c = json!({"content": {"role": "model", "parts": [p]}, "index": 0});
        if last && !cut {
            c["finishReason"] = json!("STOP");
        }
        let u = if last {
            usage.clone()
        } else {
            json!({"promptTokenCount": 20, "totalTokenCount": 20})
        };
        let ev = json!({"candidates": [c], "usageMetadata": u, "modelVersion": "gemini-test-001", "responseId": "resp-g2"});
        frames.push_str(&format!("data: {ev}\r\n\r\n"));
    }
    ([("content-type", "text/event-stream")], frames).into_response()
}

async fn gemini_server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/v1beta/models/{*rest}", axum::routing::post(generate))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1beta"), seen)
}

async fn harness(base: &str) -> Harness {
    let var = format!("KEEL_TEST_GEMINI_KEY_{}", std::process::id());
    std::env::set_var(&var, "gm-secret");
    Harness::with(Options {
        extra: format!(
            r#"
[providers.gm]
kind = "gemini"
base_url = "{base}"
api_key_env = "{var}"

[models.gem]
provider = "gm"
upstream_model = "gemini-test"
input_price_per_mtok = 0.15
cached_input_price_per_mtok = 0.075
output_price_per_mtok = 0.60
"#
        ),
        ..Options::default()
    })
    .await
}

/// 12 uncached input tokens at $0.15, 8 cached at $0.075, 7 + 3 thinking output at $0.60.
const COST_NANOS: i64 = 12 * 150 + 8 * 75 + 10 * 600;

#[tokio::test]
async fn a_whole_and_a_streamed_answer_are_translated_and_priced_with_cached_and_thinking_tokens() {
    let (base, seen) = gemini_server().await;
    let h = harness(&base).await;
    let r = h
        .chat(&json!({"model": "gem", "max_tokens": 100, "temperature": 0.3, "stop": ["END"],
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello gemini"}]}))
        .await;
    assert_eq!(r.status(), 200);
    let whole = request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Gemini says: hello gemini"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["model"], "gemini-test-001");
    assert_eq!(v["usage"]["prompt_tokens"], 20);
    assert_eq!(v["usage"]["completion_tokens"], 10);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        3
    );
    {
        let seen = seen.lock().unwrap();
        let (path, _, key, body) = &seen[0];
        assert_eq!(path, "gemini-test:generateContent");
        assert_eq!(key, "gm-secret");
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Be brief.");
        assert_eq!(
            body["contents"],
            json!([{"role": "user", "parts": [{"text": "hello gemini"}]}])
        );
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 100);
        assert_eq!(body["generationConfig"]["stopSequences"], json!(["END"]));
    }

    let r = h.chat(&stream_body("gem", "stream gemini", true)).await;
    assert_eq!(r.status(), 200);
    let streamed = request_id(&r);
    let chunks = sse_chunks(&r.text().await.unwrap());
    assert_eq!(streamed_text(&chunks), "Gemini says: stream gemini");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 10);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen[1].0, "gemini-test:streamGenerateContent");
        assert_eq!(seen[1].1, "alt=sse");
    }

    // JSON output: responseMimeType and the schema as responseJsonSchema.
    let r = h
        .chat(&json!({"model": "gem", "messages": [{"role": "user", "content": "a city"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "object"}}}}))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "{\"name\": \"Paris\"}"
    );
    let body = seen.lock().unwrap()[2].3.clone();
    assert_eq!(
        body["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        body["generationConfig"]["responseJsonSchema"],
        json!({"type": "object"})
    );

    let (_, traces) = h.finish().await;
    for id in [&whole, &streamed] {
        let t = trace(&traces, id);
        assert_eq!(t.cost.unwrap().0, COST_NANOS, "{t:?}");
        assert_eq!(t.output_tokens, Some(10));
    }
}

#[tokio::test]
async fn function_calls_go_both_ways() {
    let (base, seen) = gemini_server().await;
    let h = harness(&base).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let r = h
        .chat(
            &json!({"model": "gem", "tools": tools, "tool_choice": "required",
            "messages": [{"role": "user", "content": "weather in Paris?"}]}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = v["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let sent = seen.lock().unwrap()[0].3.clone();
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["required"],
        json!(["city"])
    );
    assert_eq!(sent["toolConfig"]["functionCallingConfig"]["mode"], "ANY");

    let r = h
        .chat(&json!({"model": "gem", "tools": tools, "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]}))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"], "The tool said: sunny",
        "{v}"
    );
    let sent = seen.lock().unwrap()[1].3.clone();
    let contents = sent["contents"].as_array().unwrap();
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(
        contents[1]["parts"][0]["functionCall"]["args"],
        json!({"city": "Paris"})
    );
    assert_eq!(contents[2]["role"], "user");
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"],
        json!({"id": call["id"], "name": "get_weather", "response": {"content": "sunny"}})
    );
    h.finish().await;
}

#[tokio::test]
async fn blocks_rate_limits_and_cut_streams_are_classified() {
    let (base, _) = gemini_server().await;
    let h = harness(&base).await;
    let (status, v, blocked) = h.ask("gem", "something blocked").await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("blocked the prompt (SAFETY)"),
        "{v}"
    );
    let (status, v, busy) = h.ask("gem", "busy now").await;
    assert_eq!(status, 429, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Resource has been exhausted"),
        "{v}"
    );
    let r = h.chat(&stream_body("gem", "cut me", true)).await;
    let cut = request_id(&r);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Gemini says"),
        "what was streamed reached the client: {body}"
    );
    let (_, traces) = h.finish().await;
    assert_eq!(
        trace(&traces, &blocked).error_class.as_deref(),
        Some("upstream_content_policy")
    );
    assert_eq!(
        trace(&traces, &busy).error_class.as_deref(),
        Some("upstream_rate_limit")
    );
    let t = trace(&traces, &cut);
    assert_eq!(
        t.error_class.as_deref(),
        Some("upstream_stream_cut"),
        "{t:?}"
    );
    assert!(
        t.cost.is_some() && t.usage_estimated,
        "a cut stream is priced by estimate: {t:?}"
    );
}

#[tokio::test]
async fn embeddings_go_to_batch_embed_contents_and_are_priced_by_estimate() {
    let (base, seen) = gemini_server().await;
    let h = harness(&base).await;
    let r = h
        .post_json(
            "/v1/embeddings",
            &json!({"model": "gem", "input": ["the cat sat", "on the mat"], "dimensions": 3}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"], json!([0.11, 0.12, 0.13]));
    let (path, _, key, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "gemini-test:batchEmbedContents");
    assert_eq!(key, "gm-secret");
    assert_eq!(body["requests"][1]["model"], "models/gemini-test");
    assert_eq!(
        body["requests"][1]["content"]["parts"][0]["text"],
        "on the mat"
    );
    assert_eq!(body["requests"][0]["outputDimensionality"], 3);
    // More inputs than one batchEmbedContents call takes (100): two calls, one answer.
    let many: Vec<String> = (0..150).map(|i| format!("passage {i}")).collect();
    let r = h
        .post_json(
            "/v1/embeddings",
            &json!({"model": "gem", "input": many}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 150);
    assert_eq!(data[149]["index"], 149);
    let batches: Vec<usize> = seen.lock().unwrap()[1..]
        .iter()
        .map(|(_, _, _, b)| b["requests"].as_array().unwrap().len())
        .collect();
    assert_eq!(batches, [100, 50]);
    let r = h
        .post_json(
            "/v1/embeddings",
            &json!({"model": "gem", "input": [1, 2, 3]}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 400, "token ids cannot go to Gemini");
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert!(t.usage_estimated, "Gemini reports no tokens: {t:?}");
    let tokens = t.input_tokens.unwrap();
    assert!(tokens >= 6, "{t:?}");
    assert_eq!(t.cost.unwrap().0, tokens as i64 * 150);
}
