#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kind = "azure"` against a local server speaking Azure OpenAI's deployment API as its
//! REST reference documents it: `POST {endpoint}/openai/deployments/{deployment}/chat/
//! completions?api-version=…` with the `api-key` header; answers carrying
//! `prompt_filter_results` / `content_filter_results`; streams whose first chunk has no
//! choices; a prompt refused by the content filter (400, `code = "content_filter"`,
//! `innererror.code = "ResponsibleAIPolicyViolation"`); and a 429 with
//! `retry-after-ms` beside `retry-after`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{json, Value};

/// What the server saw of each request: path, api-version, api-key header, body.
type Seen = Arc<Mutex<Vec<(String, String, String, Value)>>>;

#[derive(Clone)]
struct Azure {
    seen: Seen,
    busy: Arc<AtomicUsize>,
}

async fn chat(
    State(az): State<Azure>,
    Path(deployment): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let body = body.0;
    let key = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    az.seen.lock().unwrap().push((
        deployment.clone(),
        q.get("api-version").cloned().unwrap_or_default(),
        key.clone(),
        body.clone(),
    ));
    if key != "az-secret" {
        let err = json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}});
        return (StatusCode::UNAUTHORIZED, axum::Json(err)).into_response();
    }
    let text = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    if text.contains("filtered") {
        let err = json!({"error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "type": null, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                "hate": {"filtered": false, "severity": "safe"},
                "violence": {"filtered": true, "severity": "high"}}}}});
        return (StatusCode::BAD_REQUEST, axum::Json(err)).into_response();
    }
    if text.contains("busy") && az.busy.fetch_add(1, Ordering::SeqCst) == 0 {
        let err = json!({"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current pricing tier. Please retry after 1 second."}});
        let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(err)).into_response();
        r.headers_mut()
            .insert("retry-after-ms", "150".parse().unwrap());
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        return r;
    }
    let filters = json!({"hate": {"filtered": false, "severity": "safe"},
                         "violence": {"filtered": false, "severity": "safe"}});
    let prompt_filters = json!([{"prompt_index": 0, "content_filter_results": filters}]);
    if body["stream"] == true {
        let mut events = vec![
            json!({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                   "prompt_filter_results": prompt_filters}),
        ];
        for (i, word) in ["Hello", " from", " Azure"].iter().enumerate() {
            let mut delta = json!({"content": word});
            if i == 0 {
                delta["role"] = json!("assistant");
            }
            events.push(json!({"id": "chatcmpl-az1", "object": "chat.completion.chunk",
                "created": 1733400000, "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_az",
                "choices": [{"index": 0, "delta": delta, "finish_reason": null,
                             "content_filter_results": filters}]}));
        }
        events.push(json!({"id": "chatcmpl-az1", "object": "chat.completion.chunk",
            "created": 1733400000, "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_az",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "content_filter_results": {}}]}));
        events.push(
            json!({"id": "chatcmpl-az1", "object": "chat.completion.chunk",
            "created": 1733400000, "model": "gpt-4o-mini-2024-07-18", "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}),
        );
        let mut sse: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        sse.push_str("data: [DONE]\n\n");
        return ([("content-type", "text/event-stream")], sse).into_response();
    }
    axum::Json(json!({
        "id": "chatcmpl-az0", "object": "chat.completion", "created": 1733400000,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_az",
        "prompt_filter_results": prompt_filters,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
            "message": {"role": "assistant", "content": "Hello from Azure", "refusal": null},
            "content_filter_results": filters}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    }))
    .into_response()
}

/// Azure's embeddings: the deployment's vectors, with Azure's usage shape.
async fn embeddings(
    State(az): State<Azure>,
    Path(deployment): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let key = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    az.seen.lock().unwrap().push((
        deployment,
        q.get("api-version").cloned().unwrap_or_default(),
        key,
        body.0.clone(),
    ));
    axum::Json(json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 7, "total_tokens": 7}
    }))
    .into_response()
}

async fn azure_server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            axum::routing::post(chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            axum::routing::post(embeddings),
        )
        .with_state(Azure {
            seen: seen.clone(),
            busy: Arc::default(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn harness(base: &str) -> Harness {
    let var = format!("KEEL_TEST_AZURE_KEY_{}", std::process::id());
    std::env::set_var(&var, "az-secret");
    Harness::with(Options {
        extra: format!(
            r#"
[providers.az]
kind = "azure"
base_url = "{base}/"
api_key_env = "{var}"

[models.az-mini]
provider = "az"
upstream_model = "mini-deployment"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
retries = 1
retry_backoff = "2s"
"#
        ),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn calls_reach_the_deployment_url_with_the_api_key_and_are_priced() {
    let (base, seen) = azure_server().await;
    let h = harness(&base).await;
    let (status, v, whole) = h.ask("az-mini", "Say hello").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from Azure");

    let r = h.chat(&stream_body("az-mini", "Say hello", true)).await;
    assert_eq!(r.status(), 200);
    let streamed = request_id(&r);
    let chunks = sse_chunks(&r.text().await.unwrap());
    assert_eq!(streamed_text(&chunks), "Hello from Azure");

    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for (deployment, version, key, _) in seen.iter() {
            assert_eq!(deployment, "mini-deployment");
            assert_eq!(version, keel_core::config::model::AZURE_API_VERSION);
            assert_eq!(key, "az-secret");
        }
    }
    let (_, traces) = h.finish().await;
    for id in [&whole, &streamed] {
        let t = trace(&traces, id);
        assert_eq!(t.provider.as_deref(), Some("az"), "{t:?}");
        assert_eq!((t.input_tokens, t.output_tokens), (Some(12), Some(3)));
        // 12 × $0.15 + 3 × $0.60 per million tokens.
        assert_eq!(t.cost.unwrap().0, 12 * 150 + 3 * 600);
        assert_eq!(t.system_fingerprint.as_deref(), Some("fp_az"));
    }
}

#[tokio::test]
async fn a_content_filter_refusal_is_a_content_policy_error_and_retry_after_ms_is_honoured() {
    let (base, _) = azure_server().await;
    let h = harness(&base).await;
    let (status, v, filtered) = h.ask("az-mini", "something filtered").await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content management policy"),
        "{v}"
    );

    // 429 with retry-after-ms 150 and retry-after 1: retried after ~150 ms, not the
    // model's 2 s back-off nor the 1 s header.
    let started = Instant::now();
    let (status, v, busy) = h.ask("az-mini", "busy now").await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{v}");
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(900),
        "{took:?}"
    );

    let (_, traces) = h.finish().await;
    let t = trace(&traces, &filtered);
    assert_eq!(
        t.error_class.as_deref(),
        Some("upstream_content_policy"),
        "{t:?}"
    );
    let t = trace(&traces, &busy);
    let outcomes: Vec<&str> = t.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["upstream_rate_limit", "ok"], "{t:?}");
}

#[tokio::test]
async fn embeddings_reach_the_deployments_embeddings_url_and_are_priced() {
    let (base, seen) = azure_server().await;
    let h = harness(&base).await;
    let r = h
        .post_json(
            "/v1/embeddings",
            &json!({"model": "az-mini", "input": "vector me"}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["embedding"], json!([0.6, 0.8]));
    {
        let seen = seen.lock().unwrap();
        let (deployment, version, key, body) = &seen[0];
        assert_eq!(deployment, "mini-deployment");
        assert_eq!(version, keel_core::config::model::AZURE_API_VERSION);
        assert_eq!(key, "az-secret");
        assert_eq!(body["input"], "vector me");
    }
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.endpoint, "/v1/embeddings");
    assert_eq!(t.cost.unwrap().0, 7 * 150);
}
