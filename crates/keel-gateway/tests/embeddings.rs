#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `POST /v1/embeddings`: the mock's deterministic vectors (in process and over HTTP),
//! base64 and float encodings of the same vectors, the trace (endpoint, input tokens,
//! cost at the input price), a hard budget that embeddings spend from and that stops
//! them, and clear refusals for bad input and for a provider without embeddings.

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

async fn embed(h: &Harness, body: Value) -> (u16, Value, String) {
    let r = h.post_json("/v1/embeddings", &body, &[]).await;
    let status = r.status().as_u16();
    let id = request_id(&r);
    (status, r.json().await.unwrap_or(Value::Null), id)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test]
async fn the_mock_embeds_deterministically_and_the_call_is_traced_and_priced() {
    let h = Harness::start().await;
    let body = json!({"model": "local", "input": ["the cat sat", "on the mat"], "dimensions": 8});
    let (status, a, id) = embed(&h, body.clone()).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["object"], "list");
    assert_eq!(a["data"].as_array().unwrap().len(), 2);
    assert_eq!(a["data"][1]["index"], 1);
    let first = floats(&a["data"][0]["embedding"]);
    assert_eq!(first.len(), 8);
    let norm: f32 = first.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    // The same input, the same vector; another input, another.
    let (_, again, _) = embed(&h, body).await;
    assert_eq!(again["data"], a["data"]);
    assert_ne!(a["data"][0]["embedding"], a["data"][1]["embedding"]);
    // base64: the little-endian f32 bytes of the same vector.
    let (status, b, _) = embed(
        &h,
        json!({"model": "local", "input": "the cat sat", "dimensions": 8, "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, first);
    // Over HTTP (the keel-mock server's /v1/embeddings), default size 64.
    let (status, c, _) = embed(&h, json!({"model": "mock-1", "input": [[101, 102, 103]]})).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(floats(&c["data"][0]["embedding"]).len(), 64);

    let tokens = a["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens >= 6, "{a}");
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.endpoint, "/v1/embeddings");
    assert_eq!(t.input_tokens, Some(tokens));
    assert_eq!(t.output_tokens, Some(0));
    // $0.15 per million input tokens.
    assert_eq!(t.cost.unwrap().0, tokens as i64 * 150);
    assert_eq!(t.output.as_deref(), Some("2 vectors of 8 dimensions"));
}

#[tokio::test]
async fn bad_input_and_providers_without_embeddings_are_refused_clearly() {
    let h = Harness::start().await;
    for (body, needle) in [
        (json!({"model": "local", "input": []}), "empty"),
        (
            json!({"model": "local", "input": "x", "encoding_format": "hex"}),
            "float",
        ),
        (json!({"model": "local"}), "input"),
        (json!({"model": "nope", "input": "x"}), "nope"),
    ] {
        let (status, v, _) = embed(&h, body.clone()).await;
        assert!((400..500).contains(&status), "{body}: {status} {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let (status, v, _) = embed(&h, json!({"model": "claude-mock", "input": "x"})).await;
    assert_ne!(status, 200);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("embeddings"),
        "{v}"
    );
    h.finish().await;
}

#[tokio::test]
async fn embeddings_spend_from_a_hard_budget_and_are_stopped_by_it() {
    let h = Harness::with(Options {
        extra: "[[budgets]]\nname = \"tiny\"\nscope = \"model=local\"\nlimit_usd = 0.000005\nwindow = \"day\"\nmode = \"hard\"\n".into(),
        ..Options::default()
    })
    .await;
    let text = "a fairly long sentence to embed, word after word after word";
    let mut refused = None;
    for i in 0..40 {
        let (status, v, _) = embed(&h, json!({"model": "local", "input": text})).await;
        if status != 200 {
            refused = Some((i, status, v));
            break;
        }
    }
    let (i, status, v) = refused.expect("the budget never stopped the calls");
    assert!(i >= 1, "the first call fits the budget");
    assert_eq!(status, 402, "{v}");
    assert_eq!(v["error"]["code"], "budget_exceeded");
    let (_, traces) = h.finish().await;
    let spent: i64 = traces
        .iter()
        .filter(|t| t.endpoint == "/v1/embeddings")
        .filter_map(|t| t.cost.map(|c| c.0))
        .sum();
    assert!(
        spent > 0 && spent <= 5_000,
        "spent {spent} nano-dollars of 5,000"
    );
}

#[tokio::test]
async fn an_identical_request_is_answered_from_the_cache_at_no_cost() {
    let h = Harness::with(Options {
        extra: "[cache]\nenabled = true\n".into(),
        ..Options::default()
    })
    .await;
    let body = json!({"model": "mock-1", "input": ["cache me"], "dimensions": 4});
    let post = |headers: &'static [(&'static str, &'static str)]| {
        let h = &h;
        let body = body.clone();
        async move {
            let r = h.post_json("/v1/embeddings", &body, headers).await;
            let cache = r
                .headers()
                .get("x-keel-cache")
                .map(|v| v.to_str().unwrap().to_string());
            let id = request_id(&r);
            let v: Value = r.json().await.unwrap();
            (cache, id, v)
        }
    };
    let (c1, first, v1) = post(&[]).await;
    let (c2, second, v2) = post(&[]).await;
    let (c3, _, _) = post(&[("x-keel-cache", "bypass")]).await;
    assert_eq!(c1.as_deref(), Some("miss"));
    assert_eq!(c2.as_deref(), Some("hit"));
    assert_ne!(c3.as_deref(), Some("hit"));
    assert_eq!(v1["data"], v2["data"]);
    let (_, traces) = h.finish().await;
    let miss = trace(&traces, &first);
    let hit = trace(&traces, &second);
    assert_eq!(hit.cache.as_deref(), Some("hit"));
    assert_eq!(hit.cost.unwrap().0, 0);
    assert_eq!(hit.saved_cost, miss.cost);
    assert_eq!(hit.input_tokens, miss.input_tokens);
}
