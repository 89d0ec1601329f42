#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `POST /v1/chat/completions`, whole replies: the OpenAI shape, Keel's headers, exact
//! cost, attribution, capture, pass-through of parameters, tools, unpriced models.

mod common;

use common::*;
use keel_core::money::Nanos;
use keel_core::trace::TraceStatus;
use serde_json::{json, Value};

#[tokio::test]
async fn whole_reply_has_openai_shape_headers_exact_cost_and_a_full_trace() {
    let h = Harness::start().await;
    let body = json!({
        "model": "mock-1",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello, world!"}
        ],
        "temperature": 0.2,
        "seed": 7,
        "stop": ["NEVER-IN-REPLY"],
        "logit_bias": {"50256": -100},
        "my_vendor_field": {"nested": [1, 2, 3]}
    });
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &body,
            &[
                ("x-keel-request-id", "req-chat-1"),
                ("x-keel-tenant", "acme"),
                ("x-keel-feature", "support"),
                ("x-keel-user", "user-42"),
                ("x-keel-session", "sess-9"),
                ("x-keel-tags", "beta, eu ,,canary"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        request_id(&resp),
        "req-chat-1",
        "the caller's request id is echoed"
    );
    let cost_header = resp
        .headers()
        .get("x-keel-cost-usd")
        .expect("priced model has x-keel-cost-usd")
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = resp.json().await.unwrap();

    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["model"], "mock-1");
    assert_eq!(v["system_fingerprint"], "fp_mock");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Mock reply to: Hello, world!"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = &v["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), p + c);

    // 0.15 $/Mtok in, 0.60 $/Mtok out, exactly.
    let cost = expected_cost_nanos(usage);
    assert_eq!(
        dollars_to_nanos(&cost_header),
        cost,
        "x-keel-cost-usd = {cost_header}"
    );
    assert_eq!(cost_header, Nanos(cost).to_dollar_string());

    let (_, traces) = h.finish().await;
    assert_eq!(traces.len(), 1);
    let t = trace(&traces, "req-chat-1");
    assert_eq!(t.status, TraceStatus::Ok);
    assert_eq!(t.http_status, 200);
    assert_eq!(t.api, "openai");
    assert_eq!(t.endpoint, "/v1/chat/completions");
    assert!(!t.stream);
    assert_eq!(t.input_tokens, Some(p));
    assert_eq!(t.output_tokens, Some(c));
    assert_eq!(t.cost, Some(Nanos(cost)));
    assert!(!t.unpriced);
    assert_eq!(t.model_requested.as_deref(), Some("mock-1"));
    assert_eq!(t.provider.as_deref(), Some("up"));
    assert_eq!(t.upstream_model.as_deref(), Some("mock-1"));
    assert_eq!(t.served_model.as_deref(), Some("mock-1"));
    assert_eq!(t.system_fingerprint.as_deref(), Some("fp_mock"));
    assert_eq!(t.finish_reason.as_deref(), Some("stop"));
    assert_eq!(t.tenant.as_deref(), Some("acme"));
    assert_eq!(t.feature.as_deref(), Some("support"));
    assert_eq!(t.user.as_deref(), Some("user-42"));
    assert_eq!(t.session.as_deref(), Some("sess-9"));
    assert_eq!(t.tags, vec!["beta", "eu", "canary"]);
    assert_eq!(t.ttft_ms, None, "no time to first token for a whole reply");
    assert!(t.error_class.is_none() && t.error_message.is_none());

    let input: Value = serde_json::from_str(t.input.as_deref().expect("input captured")).unwrap();
    assert_eq!(input, body, "the trace keeps the request as received");
    assert_eq!(t.output.as_deref(), Some("Mock reply to: Hello, world!"));
}

#[tokio::test]
async fn request_id_is_generated_when_absent_or_unusable() {
    let h = Harness::start().await;
    let a = h.chat(&chat_body("mock-1", "one")).await;
    let b = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("mock-1", "two"),
            &[("x-keel-request-id", "has space")],
        )
        .await;
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 200);
    let (ia, ib) = (request_id(&a), request_id(&b));
    assert!(ia.len() >= 16 && ib.len() >= 16, "{ia} {ib}");
    assert_ne!(ia, ib);
    assert_ne!(ib, "has space");

    let (_, traces) = h.finish().await;
    assert_eq!(traces.len(), 2);
    trace(&traces, &ia);
    trace(&traces, &ib);
}

#[tokio::test]
async fn parameters_and_unknown_fields_reach_the_upstream() {
    // An upstream that records what it receives.
    let (url, seen) = capturing_upstream().await;
    let h = Harness::with(Options {
        extra: format!(
            "[providers.capture]\nkind = \"openai\"\nbase_url = \"{url}\"\n\n[models.cap]\nprovider = \"capture\"\nupstream_model = \"capture-1\"\ninput_price_per_mtok = 0.15\noutput_price_per_mtok = 0.60\n"
        ),
        ..Options::default()
    })
    .await;
    let body = json!({
        "model": "cap",
        "messages": [{"role": "user", "content": "hi", "x_msg_field": true}],
        "temperature": 0.3,
        "seed": 11,
        "stop": ["\n\n", "END"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "logit_bias": {"50256": -100},
        "my_vendor_field": {"a": 1}
    });
    let resp = h.chat(&body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "captured");
    assert_eq!(
        v["model"], "capture-1-2025",
        "the served model is what the upstream says"
    );

    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let up = &sent[0];
    assert_eq!(
        up["model"], "capture-1",
        "the pinned upstream model goes upstream"
    );
    assert_eq!(up["temperature"], 0.3);
    assert_eq!(up["seed"], 11);
    assert_eq!(up["stop"], json!(["\n\n", "END"]));
    assert_eq!(up["response_format"], body["response_format"]);
    assert_eq!(up["logit_bias"], json!({"50256": -100}));
    assert_eq!(up["my_vendor_field"], json!({"a": 1}));
    assert_eq!(up["messages"][0]["x_msg_field"], true);

    let (_, traces) = h.finish().await;
    let t = &traces[0];
    assert_eq!(t.upstream_model.as_deref(), Some("capture-1"));
    assert_eq!(t.served_model.as_deref(), Some("capture-1-2025"));
    assert_eq!(t.system_fingerprint.as_deref(), Some("fp_capture"));
    assert_eq!(
        t.cost,
        Some(Nanos(
            7 * INPUT_NANOS_PER_TOKEN + 3 * OUTPUT_NANOS_PER_TOKEN
        ))
    );
    let input = t.input.as_deref().unwrap();
    for needle in [
        "logit_bias",
        "my_vendor_field",
        "response_format",
        "seed",
        "stop",
        "temperature",
    ] {
        assert!(
            input.contains(needle),
            "trace input lacks {needle}: {input}"
        );
    }
}

#[tokio::test]
async fn response_format_and_stop_change_the_mock_reply() {
    let h = Harness::start().await;
    let mut json_req = chat_body("mock-1", "Give me JSON");
    json_req["response_format"] = json!({"type": "json_object"});
    json_req["seed"] = json!(3);
    let v: Value = h.chat(&json_req).await.json().await.unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value =
        serde_json::from_str(content).unwrap_or_else(|e| panic!("not JSON ({e}): {content}"));
    assert_eq!(parsed["reply"], "Mock reply to: Give me JSON");

    let mut stop_req = chat_body("mock-1", "The quick brown fox");
    stop_req["stop"] = json!("brown");
    let v: Value = h.chat(&stop_req).await.json().await.unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("Mock reply to: The quick"), "{content}");
    assert!(!content.contains("brown"), "{content}");
    h.finish().await;
}

fn weather_tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"]
            }
        }
    }])
}

#[tokio::test]
async fn tool_calls_whole_and_streamed() {
    let h = Harness::start().await;
    let mut body = chat_body("mock-1", "Weather in Paris? [mock:tool=get_weather]");
    body["tools"] = weather_tools();

    let resp = h.chat(&body).await;
    assert_eq!(resp.status(), 200);
    let whole_id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let calls = choice["message"]["tool_calls"]
        .as_array()
        .expect("tool_calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let call_id = calls[0]["id"].as_str().unwrap().to_string();
    assert!(!call_id.is_empty());
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "mock"}));

    // Streamed: the call arrives in fragments that add up to the same call.
    body["stream"] = json!(true);
    let resp = h.chat(&body).await;
    assert_eq!(resp.status(), 200);
    let stream_id = request_id(&resp);
    let text = resp.text().await.unwrap();
    assert_eq!(last_line(&text), "data: [DONE]");
    let chunks = sse_chunks(&text);
    let mut name = String::new();
    let mut arguments = String::new();
    let mut finish = None;
    for c in &chunks {
        if let Some(choice) = c["choices"].get(0) {
            for tc in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert_eq!(tc["index"], 0);
                name.push_str(tc["function"]["name"].as_str().unwrap_or(""));
                arguments.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    assert_eq!(name, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "mock"})
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));

    // The conversation continues with the tool result.
    let follow = json!({
        "model": "mock-1",
        "tools": weather_tools(),
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": call_id, "content": "18C and sunny"}
        ]
    });
    let resp = h.chat(&follow).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Tool result received: 18C and sunny"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let (_, traces) = h.finish().await;
    assert_eq!(traces.len(), 3);
    let t = trace(&traces, &whole_id);
    assert_eq!(t.finish_reason.as_deref(), Some("tool_calls"));
    assert!(
        t.output.as_deref().unwrap().contains("get_weather"),
        "{:?}",
        t.output
    );
    let t = trace(&traces, &stream_id);
    assert_eq!(t.finish_reason.as_deref(), Some("tool_calls"));
    assert!(
        t.output.as_deref().unwrap().contains("get_weather"),
        "{:?}",
        t.output
    );
    assert!(t.cost.is_some());
}

#[tokio::test]
async fn capture_none_keeps_tokens_and_cost_but_no_text() {
    let h = Harness::with(Options {
        gateway: "capture = \"none\"".into(),
        ..Options::default()
    })
    .await;
    let resp = h.chat(&chat_body("mock-1", "secret question")).await;
    assert_eq!(resp.status(), 200);
    let whole_id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    let whole_cost = expected_cost_nanos(&v["usage"]);

    let resp = h
        .chat(&stream_body("mock-1", "another secret", false))
        .await;
    assert_eq!(resp.status(), 200);
    let stream_id = request_id(&resp);
    assert_eq!(last_line(&resp.text().await.unwrap()), "data: [DONE]");

    let (_, traces) = h.finish().await;
    let t = trace(&traces, &whole_id);
    assert_eq!(t.input, None);
    assert_eq!(t.output, None);
    assert!(t.input_tokens.unwrap() > 0 && t.output_tokens.unwrap() > 0);
    assert_eq!(t.cost, Some(Nanos(whole_cost)));
    let t = trace(&traces, &stream_id);
    assert_eq!(t.input, None);
    assert_eq!(t.output, None);
    assert!(t.input_tokens.unwrap() > 0 && t.output_tokens.unwrap() > 0);
    assert!(t.cost.unwrap().0 > 0);
}

#[tokio::test]
async fn unpriced_model_has_no_cost_header_and_is_never_zero_dollars() {
    let h = Harness::start().await;
    let resp = h.chat(&chat_body("unpriced", "how much?")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("x-keel-cost-usd").is_none(),
        "an unpriced call must not claim a cost"
    );
    let whole_id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "mock-unpriced-xyz");

    let resp = h
        .chat(&stream_body("unpriced", "and streamed?", true))
        .await;
    let stream_id = request_id(&resp);
    let text = resp.text().await.unwrap();
    assert!(sse_chunks(&text).iter().any(|c| c["usage"].is_object()));

    let metrics = h.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "keel_unpriced_requests_total",
            &[("model", "unpriced")]
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "keel_cost_usd_total", &[("model", "unpriced")]),
        None,
        "no $0 cost series for an unpriced model"
    );

    let (_, traces) = h.finish().await;
    for id in [&whole_id, &stream_id] {
        let t = trace(&traces, id);
        assert_eq!(t.status, TraceStatus::Ok);
        assert_eq!(t.cost, None);
        assert!(t.unpriced);
        assert!(t.input_tokens.unwrap() > 0 && t.output_tokens.unwrap() > 0);
    }
}

#[tokio::test]
async fn chat_completions_without_v1_prefix_is_served_too() {
    let h = Harness::start().await;
    let resp = h
        .post_json("/chat/completions", &chat_body("mock-1", "no prefix"), &[])
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Mock reply to: no prefix"
    );
    let (_, traces) = h.finish().await;
    assert_eq!(traces.len(), 1);
}

/// An OpenAI upstream's answer as it put it: no `object` or `created`, keys in its own
/// order, a `\u` escape, fields Keel has no type for.
const RAW_ANSWER: &str = "{\"model\":\"raw-1-2025\",  \"id\":\"chatcmpl-raw\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"caf\\u00e9 au lait\",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7},\"service_tier\":\"default\"}\n";

async fn raw_upstream() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async { ([("content-type", "application/json")], RAW_ANSWER) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn an_unchanged_answer_reaches_the_client_byte_for_byte_and_a_guarded_one_is_rewritten() {
    let url = raw_upstream().await;
    let h = Harness::with(Options {
        extra: format!(
            "[providers.raw]\nkind = \"openai\"\nbase_url = \"{url}\"\n\n\
             [models.raw]\nprovider = \"raw\"\nupstream_model = \"raw-1\"\n\
             input_price_per_mtok = 0.15\noutput_price_per_mtok = 0.60\n\n\
             [models.raw-guarded]\nprovider = \"raw\"\nupstream_model = \"raw-1\"\n\n\
             [guardrails.policies.cards]\nmodels = [\"raw-guarded\"]\n\n\
             [[guardrails.policies.cards.checks]]\ncheck = \"pii\"\nkinds = [\"email\"]\n\
             on = \"output\"\naction = \"redact\"\n"
        ),
        ..Options::default()
    })
    .await;
    // No guardrail applies: the upstream's body, as it came (Keel's own serialization
    // would add `object` and `created` and write the `é` unescaped).
    let resp = h.chat(&chat_body("raw", "hello")).await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    assert!(resp.headers().get("x-keel-cost-usd").is_some());
    assert_eq!(resp.text().await.unwrap(), RAW_ANSWER);

    // A policy applies to this model: the answer is Keel's, serialized from what the
    // checks left (nothing to redact here, but the bytes are no longer the upstream's).
    let resp = h.chat(&chat_body("raw-guarded", "hello")).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_ne!(text, RAW_ANSWER);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "café au lait");
    assert_eq!(v["service_tier"], "default");

    // The trace of the passed-through answer is read from the decoded answer.
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.served_model.as_deref(), Some("raw-1-2025"));
    assert_eq!(t.output.as_deref(), Some("café au lait"));
    assert_eq!((t.input_tokens, t.output_tokens), (Some(5), Some(2)));
    assert_eq!(t.cost, Some(Nanos(5 * 150 + 2 * 600)));
    assert_eq!(t.finish_reason.as_deref(), Some("stop"));
}
