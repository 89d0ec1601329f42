#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What the provider bills is what Keel records and budgets, for streams that do not end
//! the ordinary way (issue: hardening, money items 1–3):
//! - a client that reads the answer and hangs up before the usage chunk: Keel reads the
//!   upstream to its end for the provider's usage, records it and settles the budget;
//! - an upstream that cuts the stream: what was produced is priced from the tokenizer
//!   count and marked `usage_estimated`, never NULL.

mod common;

use std::time::Duration;

use common::*;
use keel_core::config::mock::MockSettings;
use keel_core::trace::TraceStatus;
use serde_json::{json, Value};

fn budget(limit_usd: &str) -> String {
    format!(
        r#"
[[budgets]]
name = "acme-hard"
scope = "tenant=acme"
limit_usd = {limit_usd}
window = "month"
"#
    )
}

/// A chat call as tenant `acme` (the budget's scope).
async fn chat_as_acme(h: &Harness, body: &Value) -> Result<reqwest::Response, reqwest::Error> {
    h.client
        .post(h.url("/v1/chat/completions"))
        .header("x-keel-tenant", "acme")
        .json(body)
        .send()
        .await
}

/// Read an SSE body until a chunk carries a `finish_reason`, then hang up (before the
/// usage chunk the upstream sends after it).
async fn read_answer_then_hang_up(mut resp: reqwest::Response) -> String {
    let mut body = String::new();
    while let Some(bytes) = resp.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&bytes));
        let finished = sse_chunks(&body)
            .iter()
            .any(|c| c["choices"][0]["finish_reason"].is_string());
        if finished {
            assert!(
                !sse_chunks(&body).iter().any(|c| c["usage"].is_object()),
                "the usage chunk arrived before the hang-up: the test proves nothing"
            );
            return body;
        }
    }
    panic!("the stream ended before its finish reason: {body}");
}

async fn spent_nanos(h: &Harness) -> i64 {
    // Settling runs after the response (and after an abandoned stream is read out).
    for _ in 0..200 {
        let v: Value = h.get("/admin/budgets").await.json().await.unwrap();
        let rows = v["budgets"].as_array().cloned().unwrap_or_default();
        if let Some(r) = rows.iter().find(|r| r["budget"] == "acme-hard") {
            if r["reserved_usd"] == "0.00" {
                return dollars_to_nanos(r["spent_usd"].as_str().unwrap());
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("reservations never settled");
}

#[tokio::test]
async fn a_stream_abandoned_after_its_answer_is_billed_and_budgeted_at_the_providers_usage() {
    // 500 output tokens cost 500 × 600 = 300,000 nanos; the budget holds ~5 such calls.
    let h = Harness::with(Options {
        mock: MockSettings {
            chunk_delay_ms: 2,
            ..MockSettings::default()
        },
        extra: budget("0.0016"),
        ..Options::default()
    })
    .await;
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let mut b = stream_body("mock-1", "[mock:tokens=500] tell me everything", true);
        b["max_tokens"] = json!(500);
        let resp = chat_as_acme(&h, &b).await.unwrap();
        match resp.status().as_u16() {
            200 => {
                let id = request_id(&resp);
                let body = read_answer_then_hang_up(resp).await;
                assert!(!streamed_text(&sse_chunks(&body)).is_empty());
                admitted.push(id);
                // The next call is admitted only once this one's spend is known.
                spent_nanos(&h).await;
            }
            402 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    let spent = spent_nanos(&h).await;
    let (_, traces) = h.finish().await;
    let mut cost = 0;
    for id in &admitted {
        let t = trace(&traces, id);
        assert_eq!(t.status, TraceStatus::ClientDisconnected);
        assert_eq!(t.output_tokens, Some(500), "the provider's own usage");
        assert!(!t.usage_estimated);
        let c = t.cost.expect("an abandoned stream is priced").0;
        assert_eq!(c, t.input_tokens.unwrap() as i64 * 150 + 500 * 600);
        cost += c;
    }
    assert_eq!(spent, cost, "the budget settled at what the traces record");
    assert!(
        refused > 0,
        "the budget never refused: {} admitted",
        admitted.len()
    );
    assert!(
        cost <= 1_600_000,
        "{} calls cost {cost} nanos > the $0.0016 budget",
        admitted.len()
    );
}

#[tokio::test]
async fn a_stream_cut_upstream_is_priced_from_the_tokenizer_and_marked_estimated() {
    let h = Harness::with(Options {
        extra: budget("1"),
        ..Options::default()
    })
    .await;
    let body = stream_body(
        "mock-1",
        "[mock:cut] [mock:tokens=40] a story that breaks",
        true,
    );
    let resp = chat_as_acme(&h, &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    let forwarded = streamed_text(&sse_chunks(&text));
    assert!(!forwarded.is_empty());
    let spent = spent_nanos(&h).await;
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.error_class.as_deref(), Some("upstream_stream_cut"));
    assert!(t.usage_estimated);
    let (input, output) = (t.input_tokens.unwrap(), t.output_tokens.unwrap());
    assert!(input > 0 && output > 0, "{input} {output}");
    assert!(output < 40, "only the forwarded half is counted: {output}");
    let cost = t
        .cost
        .expect("never NULL for output that reached a client")
        .0;
    assert_eq!(cost, input as i64 * 150 + output as i64 * 600);
    assert_eq!(
        spent, cost,
        "the reservation settled at the estimate, not released"
    );
}

#[tokio::test]
async fn a_stream_without_usage_from_the_provider_is_estimated_not_null() {
    // The client does not ask for usage; Keel asks upstream. An upstream that never
    // sends it (simulated by a hang-up right after the answer) is still priced.
    let h = Harness::with(Options {
        mock: MockSettings {
            chunk_delay_ms: 1,
            ..MockSettings::default()
        },
        gateway: "shutdown_timeout = \"1s\"".into(),
        ..Options::default()
    })
    .await;
    let resp = h
        .chat(&stream_body(
            "slow",
            "[mock:tokens=2000] a very long story",
            true,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    // `slow` has a 300 ms deadline: the stream times out before its end.
    let text = resp.text().await.unwrap();
    assert!(!streamed_text(&sse_chunks(&text)).is_empty());
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.error_class.as_deref(), Some("upstream_timeout"));
    assert!(t.usage_estimated);
    assert!(t.cost.is_some_and(|c| c.0 > 0));
}

/// A cut stream's input tokens: with a budget they are admission's count, without one
/// they are counted for the stream; the same number either way.
#[tokio::test]
async fn a_cut_streams_input_count_is_the_same_with_and_without_admission() {
    let mut counts = Vec::new();
    for extra in [budget("1"), String::new()] {
        let h = Harness::with(Options {
            extra,
            ..Options::default()
        })
        .await;
        let body = stream_body(
            "mock-1",
            "[mock:cut] [mock:tokens=40] a story that breaks, told at some length",
            true,
        );
        let resp = chat_as_acme(&h, &body).await.unwrap();
        assert_eq!(resp.status(), 200);
        let id = request_id(&resp);
        let _ = resp.text().await.unwrap();
        let (_, traces) = h.finish().await;
        let t = trace(&traces, &id);
        assert!(t.usage_estimated);
        counts.push(t.input_tokens.unwrap());
    }
    assert!(counts[0] > 0);
    assert_eq!(counts[0], counts[1], "budgeted vs not: {counts:?}");
}
