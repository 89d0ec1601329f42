#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `POST /v1/responses` at the gateway, on three kinds of upstream (OpenAI-compatible
//! over HTTP, Anthropic over HTTP, the in-process mock): a whole response and the typed
//! event stream in OpenAI's documented order, traced and priced like a chat call; a
//! function-tool round trip continued through `previous_response_id`; `GET` and
//! `DELETE /v1/responses/{id}`; `store: false`; a hard budget and a guardrail applying as
//! on chat; clear refusals; and stored responses scoped to the tenant that made them.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "responses-admin-secret";

async fn create(h: &Harness, body: Value, key: Option<&str>) -> (u16, Value, String) {
    let mut r = h.client.post(h.url("/v1/responses")).json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let id = request_id(&r);
    (status, r.json().await.unwrap_or(Value::Null), id)
}

async fn get(h: &Harness, id: &str, key: Option<&str>) -> (u16, Value) {
    let mut r = h.client.get(h.url(&format!("/v1/responses/{id}")));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn output_text(v: &Value) -> String {
    v["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect()
}

#[tokio::test]
async fn a_whole_response_is_answered_traced_and_priced_on_each_kind_of_upstream() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for model in ["mock-1", "claude-mock", "local"] {
        let (status, v, id) = create(
            &h,
            json!({"model": model, "input": "hello responses", "instructions": "Be brief.",
                "max_output_tokens": 200, "metadata": {"ticket": "T-1"}}),
            None,
        )
        .await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(v["metadata"]["ticket"], "T-1");
        assert_eq!(v["instructions"], "Be brief.");
        assert!(output_text(&v).contains("hello responses"), "{model}: {v}");
        let usage = &v["usage"];
        assert!(usage["input_tokens"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
        );
        ids.push((id, v));
    }
    let (_, traces) = h.finish().await;
    for (id, v) in ids {
        let t = trace(&traces, &id);
        assert_eq!(t.endpoint, "/v1/responses");
        assert_eq!(t.http_status, 200);
        let u = &v["usage"];
        assert_eq!(t.input_tokens, u["input_tokens"].as_u64());
        assert_eq!(t.output_tokens, u["output_tokens"].as_u64());
        let want = u["input_tokens"].as_i64().unwrap() * INPUT_NANOS_PER_TOKEN
            + u["output_tokens"].as_i64().unwrap() * OUTPUT_NANOS_PER_TOKEN;
        assert_eq!(t.cost.unwrap().0, want, "{id}");
        // The captured input is the chat request as sent: instructions as a system turn.
        let input: Value = serde_json::from_str(t.input.as_deref().unwrap()).unwrap();
        assert_eq!(input["messages"][0]["role"], "system");
        assert_eq!(input["messages"][1]["content"], "hello responses");
    }
}

#[tokio::test]
async fn a_stream_is_the_typed_event_sequence_and_is_priced_from_its_usage() {
    let h = Harness::start().await;
    for model in ["mock-1", "claude-mock", "local"] {
        let r = h
            .post_json(
                "/v1/responses",
                &json!({"model": model, "input": "stream me please", "stream": true}),
                &[],
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let body = r.text().await.unwrap();
        let events = sse_events(&body);
        let kinds: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(
            kinds[..4],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added"
            ],
            "{model}: {kinds:?}"
        );
        assert_eq!(kinds[kinds.len() - 1], "response.completed", "{model}");
        assert!(kinds.contains(&"response.output_text.delta"));
        for (i, (kind, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], kind.as_str());
            assert_eq!(data["sequence_number"], i as u64);
        }
        let deltas: String = events
            .iter()
            .filter(|(e, _)| e == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap())
            .collect();
        let done = &events[events.len() - 1].1["response"];
        assert_eq!(output_text(done), deltas);
        assert!(deltas.contains("stream me please"), "{deltas}");
        assert!(
            done["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}: {done}"
        );
        assert!(!body.contains("[DONE]"));
        // A streamed response is stored like a whole one.
        let (status, stored) = get(&h, done["id"].as_str().unwrap(), None).await;
        assert_eq!(status, 200);
        assert_eq!(stored["output"], done["output"]);
    }
    let (_, traces) = h.finish().await;
    for t in traces.iter().filter(|t| t.endpoint == "/v1/responses") {
        assert!(t.cost.is_some() && t.output_tokens.unwrap() > 0, "{t:?}");
    }
}

#[tokio::test]
async fn a_function_tool_round_trip_continues_through_previous_response_id() {
    let h = Harness::start().await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let (status, first, _) = create(
        &h,
        json!({"model": "mock-1", "input": "[mock:tool=get_weather] weather in Paris?", "tools": tools}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let call = &first["output"][0];
    assert_eq!(call["type"], "function_call", "{first}");
    assert_eq!(call["name"], "get_weather");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");

    // The next turn sends only the tool's result: the earlier turns come from the store.
    let (status, second, id2) = create(
        &h,
        json!({"model": "mock-1", "previous_response_id": first["id"], "tools": tools,
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21C"}]}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], first["id"]);
    assert!(output_text(&second).contains("sunny, 21C"), "{second}");

    // GET returns it; DELETE removes it, from GET and from previous_response_id.
    let rid = second["id"].as_str().unwrap();
    let (status, got) = get(&h, rid, None).await;
    assert_eq!((status, &got["output"]), (200, &second["output"]));
    let r = h
        .client
        .delete(h.url(&format!("/v1/responses/{rid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deleted"], true);
    let (status, gone) = get(&h, rid, None).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["error"]["code"], "response_not_found");
    let (status, refused, _) = create(
        &h,
        json!({"model": "mock-1", "previous_response_id": rid, "input": "and tomorrow?"}),
        None,
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "previous_response_id");

    // store: false keeps nothing.
    let (status, unstored, _) = create(
        &h,
        json!({"model": "local", "input": "x", "store": false}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(unstored["store"], false);
    assert_eq!(get(&h, unstored["id"].as_str().unwrap(), None).await.0, 404);

    // The first turn outlives the process: written to the store (off the request path),
    // conversation and all; the deleted one is gone from it.
    let store = keel_store::Store::open(&h.store_path).unwrap();
    let first_id = first["id"].as_str().unwrap();
    let mut kept = None;
    for _ in 0..100 {
        kept = keel_store::responses::get_response(&store.reader().unwrap(), first_id).unwrap();
        if kept.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kept = kept.expect("the first response is in the store");
    assert!(
        kept.conversation_json.contains("get_weather"),
        "{}",
        kept.conversation_json
    );
    assert!(
        keel_store::responses::get_response(&store.reader().unwrap(), rid)
            .unwrap()
            .is_none()
    );

    // The second turn's trace holds the whole conversation the model saw.
    let (_, traces) = h.finish().await;
    let input: Value =
        serde_json::from_str(trace(&traces, &id2).input.as_deref().unwrap()).unwrap();
    let roles: Vec<&str> = input["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool"]);
}

#[tokio::test]
async fn budgets_guardrails_and_bad_bodies_apply_as_on_chat() {
    let h = Harness::with(Options {
        extra: r#"
[[budgets]]
name = "tiny"
scope = "tenant=poor"
limit_usd = 0.0000001

[guardrails.policies.strict]
models = ["local"]

[[guardrails.policies.strict.checks]]
check = "banned"
terms = ["wire transfer"]
on = "input"
action = "block"
"#
        .into(),
        ..Options::default()
    })
    .await;
    // The budget: its tenant is refused (the estimate alone is past it), others are not.
    let body = json!({"model": "mock-1", "input": "spend something"});
    let r = h
        .post_json("/v1/responses", &body, &[("x-keel-tenant", "poor")])
        .await;
    assert_eq!(r.status(), 402);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("tiny"),
        "{v}"
    );
    let r = h
        .post_json("/v1/responses", &body, &[("x-keel-tenant", "rich")])
        .await;
    assert_eq!(r.status(), 200);
    // The guardrail.
    let (status, v, _) = create(
        &h,
        json!({"model": "local", "input": "please do a Wire-Transfer"}),
        None,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "guardrail_blocked", "{v}");
    // Bad bodies name the field.
    for (body, param) in [
        (
            json!({"model": "local", "input": "x", "tools": [{"type": "web_search_preview"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "local", "input": [{"type": "function_call_output", "output": "x"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "local", "input": "x", "previous_response_id": "resp_nope"}),
            "previous_response_id",
        ),
    ] {
        let (status, v, _) = create(&h, body, None).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let (status, v, _) = create(&h, json!({"model": "nope", "input": "x"}), None).await;
    assert_eq!(status, 404, "{v}");
    h.finish().await;
}

#[tokio::test]
async fn a_stored_response_is_seen_only_by_its_tenant_and_the_admin() {
    let var = format!("KEEL_TEST_RESPONSES_ADMIN_{}", std::process::id());
    std::env::set_var(&var, ADMIN);
    let h = Harness::with(Options {
        extra: format!(
            "[auth]\nmode = \"required\"\nadmin_key_env = \"{var}\"\nrefresh = \"100ms\"\n"
        ),
        ..Options::default()
    })
    .await;
    let mut keys = Vec::new();
    for tenant in ["acme", "acme", "globex"] {
        let r = h
            .client
            .post(h.url("/admin/keys"))
            .bearer_auth(ADMIN)
            .json(&json!({"tenant": tenant}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        keys.push(v["key"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (acme, acme2, globex) = (&keys[0], &keys[1], &keys[2]);
    let (status, v, _) = create(
        &h,
        json!({"model": "local", "input": "secret plans"}),
        Some(acme),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_str().unwrap();
    assert_eq!(get(&h, id, Some(acme)).await.0, 200);
    assert_eq!(
        get(&h, id, Some(acme2)).await.0,
        200,
        "another key of the tenant"
    );
    assert_eq!(get(&h, id, Some(ADMIN)).await.0, 200, "the admin key");
    let (status, other) = get(&h, id, Some(globex)).await;
    assert_eq!(
        status, 404,
        "another tenant gets the unknown id's answer: {other}"
    );
    assert_eq!(get(&h, id, None).await.0, 401);
    let (status, v, _) = create(
        &h,
        json!({"model": "local", "input": "continue", "previous_response_id": id}),
        Some(globex),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, v, _) = create(
        &h,
        json!({"model": "local", "input": "continue", "previous_response_id": id}),
        Some(acme2),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let r = h
        .client
        .delete(h.url(&format!("/v1/responses/{id}")))
        .bearer_auth(globex)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        get(&h, id, Some(acme)).await.0,
        200,
        "a refused delete deletes nothing"
    );
    h.finish().await;
}

const PROMPT: &str = r#"
[[messages]]
role = "system"
content = "You support {{ product }}."
[variables.product]
type = "string"
"#;

#[tokio::test]
async fn a_function_and_the_cache_serve_responses_calls() {
    let h = Harness::with(Options {
        extra: r#"
[cache]
enabled = true

[registry]
refresh = "100ms"

[functions.support]
[[functions.support.variants]]
name = "control"
prompt = "support/answer"
model = "local"
weight = 100
"#
        .into(),
        ..Options::default()
    })
    .await;
    let v = push_prompt(&h.store_path, PROMPT);
    set_prompt_label(&h.store_path, v, "production");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({"model": "support", "input": "where is my order?", "temperature": 0,
        "variables": {"product": "Keel"}});
    let r = h.post_json("/v1/responses", &body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-keel-variant"], "control");
    assert_eq!(r.headers()["x-keel-cache"], "miss");
    let first_id = request_id(&r);
    let first: Value = r.json().await.unwrap();
    assert!(
        output_text(&first).contains("where is my order?"),
        "{first}"
    );
    let r = h.post_json("/v1/responses", &body, &[]).await;
    assert_eq!(r.headers()["x-keel-cache"], "hit");
    assert_eq!(r.headers()["x-keel-cost-usd"], "0.00");
    let second: Value = r.json().await.unwrap();
    assert_eq!(output_text(&second), output_text(&first));
    assert_ne!(second["id"], first["id"], "each response is its own");
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &first_id);
    assert_eq!(t.variant.as_deref(), Some("control"));
    assert_eq!(t.prompt_version, Some(v));
}
