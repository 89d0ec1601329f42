#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What operators rely on: the model list, health, Prometheus metrics that move with
//! traffic, and a shutdown that writes every trace.

mod common;

use std::collections::BTreeSet;

use common::*;
use keel_core::trace::TraceStatus;
use serde_json::Value;

#[tokio::test]
async fn models_lists_the_configured_names() {
    let h = Harness::start().await;
    let resp = h.get("/v1/models").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: BTreeSet<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = MODELS.iter().map(|m| m.to_string()).collect();
    assert_eq!(ids, expected);
    for m in v["data"].as_array().unwrap() {
        assert_eq!(m["object"], "model");
    }
    h.finish().await;
}

#[tokio::test]
async fn health_is_ok() {
    let h = Harness::start().await;
    let resp = h.get("/health").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["models"], MODELS.len());
    h.finish().await;
}

#[tokio::test]
async fn metrics_move_with_traffic() {
    let h = Harness::start().await;

    let before = h.metrics().await;
    // Series for configured models exist from the start (at zero), so dashboards and
    // rate() see them before the first request.
    assert_eq!(
        metric(&before, "keel_requests_total", &[("model", "mock-1")]),
        Some(0.0),
        "{before}"
    );

    // Two whole calls, one stream, one unknown model.
    let mut input_tokens = 0;
    let mut output_tokens = 0;
    let mut cost_nanos = 0;
    for text in ["first question", "second, longer question about metrics"] {
        let v: Value = h
            .chat(&chat_body("mock-1", text))
            .await
            .json()
            .await
            .unwrap();
        input_tokens += v["usage"]["prompt_tokens"].as_u64().unwrap();
        output_tokens += v["usage"]["completion_tokens"].as_u64().unwrap();
        cost_nanos += expected_cost_nanos(&v["usage"]);
    }
    let text = h
        .chat(&stream_body("mock-1", "a streamed one", true))
        .await
        .text()
        .await
        .unwrap();
    let usage = sse_chunks(&text).last().unwrap()["usage"].clone();
    input_tokens += usage["prompt_tokens"].as_u64().unwrap();
    output_tokens += usage["completion_tokens"].as_u64().unwrap();
    cost_nanos += expected_cost_nanos(&usage);
    assert_eq!(h.chat(&chat_body("no-such-model", "x")).await.status(), 404);

    let m = h.metrics().await;
    let ok = [("model", "mock-1"), ("api", "openai"), ("status", "ok")];
    assert_eq!(metric(&m, "keel_requests_total", &ok), Some(3.0), "{m}");
    assert_eq!(
        metric(
            &m,
            "keel_requests_total",
            &[("model", "(unknown)"), ("status", "error")]
        ),
        Some(1.0),
        "{m}"
    );
    // A client-chosen model name never becomes a label (no unbounded series).
    assert!(!m.contains("no-such-model"), "{m}");
    assert_eq!(
        metric(&m, "keel_errors_total", &[("class", "model_not_found")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "keel_tokens_total",
            &[("model", "mock-1"), ("kind", "input")]
        ),
        Some(input_tokens as f64),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "keel_tokens_total",
            &[("model", "mock-1"), ("kind", "output")]
        ),
        Some(output_tokens as f64),
        "{m}"
    );
    let cost =
        metric(&m, "keel_cost_usd_total", &[("model", "mock-1")]).expect("keel_cost_usd_total");
    let want = cost_nanos as f64 / 1e9;
    assert!((cost - want).abs() < 1e-12, "cost {cost} vs {want}");
    assert_eq!(
        metric(
            &m,
            "keel_request_duration_seconds_count",
            &[("model", "mock-1")]
        ),
        Some(3.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "keel_request_duration_seconds_sum",
            &[("model", "mock-1")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        metric(
            &m,
            "keel_request_duration_seconds_bucket",
            &[("model", "mock-1"), ("le", "+Inf")]
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "keel_time_to_first_token_seconds_count",
            &[("model", "mock-1")]
        ),
        Some(1.0),
        "{m}"
    );
    let queue = metric(&m, "keel_trace_queue_length", &[]).expect("keel_trace_queue_length");
    assert!((0.0..=4.0).contains(&queue), "{queue}");
    assert_eq!(
        metric(&m, "keel_traces_dropped_total", &[]),
        Some(0.0),
        "{m}"
    );
    assert_eq!(metric(&m, "keel_requests_in_flight", &[]), Some(0.0), "{m}");
    assert!(
        m.contains("# TYPE keel_requests counter"),
        "OpenMetrics type lines: {m}"
    );
    assert!(
        m.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );

    // The writer catches up: written traces show up on a later scrape.
    let mut written = 0.0;
    for _ in 0..50 {
        written = metric(&h.metrics().await, "keel_traces_written_total", &[]).unwrap_or(0.0);
        if written >= 4.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(written, 4.0);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_every_trace_of_200_concurrent_requests() {
    let h = Harness::start().await;
    let requests = (0..200).map(|i| {
        let h = &h;
        async move {
            let resp = if i % 4 == 0 {
                h.chat(&stream_body(
                    "mock-1",
                    &format!("streamed request {i}"),
                    i % 8 == 0,
                ))
                .await
            } else {
                h.chat(&chat_body("mock-1", &format!("request {i}"))).await
            };
            assert_eq!(resp.status(), 200);
            let id = request_id(&resp);
            let _ = resp.bytes().await.unwrap();
            id
        }
    });
    let ids: BTreeSet<String> = futures::future::join_all(requests)
        .await
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 200, "every request has its own id");

    let (report, traces) = h.finish().await;
    assert_eq!(report.traces_dropped, 0);
    assert_eq!(report.traces_written, 200);
    assert_eq!(traces.len(), 200);
    let stored: BTreeSet<String> = traces.iter().map(|t| t.id.clone()).collect();
    assert_eq!(stored, ids);
    assert!(traces
        .iter()
        .all(|t| t.status == TraceStatus::Ok && t.cost.is_some()));
    assert_eq!(traces.iter().filter(|t| t.stream).count(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_in_flight_requests_and_traces_them() {
    let h = Harness::start().await;
    let client = h.client.clone();
    let url = h.url("/v1/chat/completions");
    // A request that is still being answered (500 ms upstream latency) when shutdown starts.
    let in_flight = tokio::spawn(async move {
        let resp = client
            .post(url)
            .json(&chat_body("mock-1", "[mock:latency=500] late"))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let (report, traces) = h.finish().await;
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Mock reply to: late"), "{body}");
    assert_eq!(report.traces_written, 1);
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].status, TraceStatus::Ok);
}
