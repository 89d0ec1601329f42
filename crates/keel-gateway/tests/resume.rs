#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Streams cut after their first chunk reached the client, continued on the chain
//! (`resume_streams`, `pipeline::resume`): the client reads one stream with exactly the
//! uncut answer, on the OpenAI and the Anthropic surfaces and from an Anthropic upstream;
//! the trace lists the cut and who finished; the continuation is bounded; without the
//! setting the cut still reaches the client as an error event.

mod common;

use common::{messages_body, sse_chunks, sse_events, stream_body, streamed_text, Harness, Options};
use keel_core::config::mock::MockSettings;
use keel_core::trace::TraceStatus;

/// Every stream from the HTTP mock (`up`, `anth`) is cut half-way; `inproc` is healthy.
fn cutting() -> MockSettings {
    MockSettings {
        rate_cut: 1.0,
        ..MockSettings::default()
    }
}

const MODELS: &str = r#"
[models.cuts]
provider = "up"
upstream_model = "mock-cuts"
fallbacks = ["whole"]
resume_streams = true

[models.cuts-anthropic]
provider = "anth"
upstream_model = "mock-claude"
fallbacks = ["whole"]
resume_streams = true

# No chain: a cut is continued on the same (always cutting) model, at most twice.
[models.cuts-alone]
provider = "up"
upstream_model = "mock-cuts"
resume_streams = true

# The default: a cut is an error event.
[models.cuts-plain]
provider = "up"
upstream_model = "mock-cuts"
fallbacks = ["whole"]

[models.whole]
provider = "inproc"
upstream_model = "mock-whole"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"#;

async fn harness() -> Harness {
    Harness::with(Options {
        mock: cutting(),
        extra: MODELS.into(),
        ..Options::default()
    })
    .await
}

const QUESTION: &str = "what happens to a stream that is cut half way through its answer";

fn expected() -> String {
    format!("Mock reply to: {QUESTION}")
}

#[tokio::test]
async fn a_cut_openai_stream_is_continued_on_the_fallback_without_a_byte_twice() {
    let h = harness().await;
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &stream_body("cuts", QUESTION, true),
            &[("x-keel-request-id", "resume-1")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert!(!body.contains("\"error\""), "{body}");
    let chunks = sse_chunks(&body);
    assert_eq!(streamed_text(&chunks), expected(), "{body}");
    // One stream to the client: one id, one assistant role, a usage chunk at the end.
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]), "{body}");
    let roles = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"].is_string())
        .count();
    assert_eq!(roles, 1, "{body}");
    assert!(
        chunks.last().is_some_and(|c| !c["usage"].is_null()),
        "{body}"
    );
    let metrics = h.metrics().await;
    assert_eq!(
        common::metric(&metrics, "keel_streams_resumed_total", &[]),
        Some(1.0),
        "{metrics}"
    );

    let (_, traces) = h.finish().await;
    let t = common::trace(&traces, "resume-1");
    assert_eq!(t.status, TraceStatus::Ok);
    assert_eq!(t.output.as_deref(), Some(expected().as_str()));
    let outcomes: Vec<(&str, &str)> = t
        .attempts
        .iter()
        .map(|a| (a.model.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [("cuts", "upstream_stream_cut"), ("whole", "ok")],
        "{:?}",
        t.attempts
    );
    let why = t.attempts[0].error.as_deref().unwrap_or_default();
    assert!(why.contains("continued on `whole`"), "{why}");
    // Priced by the model that finished, from its usage.
    assert_eq!(t.upstream_model.as_deref(), Some("mock-whole"));
    assert!(t.cost.is_some_and(|c| c.0 > 0), "{:?}", t.cost);
}

#[tokio::test]
async fn a_cut_anthropic_upstream_is_continued_and_read_as_one_anthropic_stream() {
    let h = harness().await;
    let resp = h
        .post_json(
            "/v1/messages",
            &messages_body("cuts-anthropic", QUESTION, true),
            &[("x-keel-request-id", "resume-2")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let events = sse_events(&body);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "message_start").count(),
        1,
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert!(!names.contains(&"error"), "{body}");
    let text: String = events
        .iter()
        .filter(|(e, _)| e == "content_block_delta")
        .filter_map(|(_, v)| v["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, expected(), "{body}");
    let (_, traces) = h.finish().await;
    let t = common::trace(&traces, "resume-2");
    assert_eq!(t.status, TraceStatus::Ok);
    assert_eq!(t.attempts.len(), 2, "{:?}", t.attempts);
    assert_eq!(t.attempts[0].outcome, "upstream_stream_cut");
}

#[tokio::test]
async fn continuation_is_bounded_and_a_cut_without_resume_is_an_error_event() {
    let h = harness().await;
    // The same model cuts every continuation too: two continuations, then the error.
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &stream_body("cuts-alone", QUESTION, true),
            &[("x-keel-request-id", "resume-3")],
        )
        .await;
    let body = resp.text().await.unwrap();
    assert!(body.contains("\"error\""), "{body}");
    assert!(!body.contains("data: [DONE]"), "{body}");
    // What was sent is a prefix of the answer: continued, never repeated.
    let said = streamed_text(&sse_chunks(
        &body
            .split("\n\n")
            .filter(|f| !f.contains("\"error\""))
            .collect::<Vec<_>>()
            .join("\n\n"),
    ));
    assert!(expected().starts_with(&said) && said.len() > 10, "{said}");

    let resp = h
        .post_json(
            "/v1/chat/completions",
            &stream_body("cuts-plain", QUESTION, true),
            &[("x-keel-request-id", "resume-4")],
        )
        .await;
    let body = resp.text().await.unwrap();
    assert!(body.contains("\"error\""), "{body}");
    assert!(!body.contains("data: [DONE]"), "{body}");

    let (_, traces) = h.finish().await;
    let t = common::trace(&traces, "resume-3");
    assert_eq!(t.error_class.as_deref(), Some("upstream_stream_cut"));
    let cuts = t
        .attempts
        .iter()
        .filter(|a| a.outcome == "upstream_stream_cut" && a.model == "cuts-alone")
        .count();
    assert_eq!(cuts, 2, "two continuations, each cut: {:?}", t.attempts);
    let t = common::trace(&traces, "resume-4");
    assert_eq!(t.error_class.as_deref(), Some("upstream_stream_cut"));
    assert!(t.attempts.is_empty(), "{:?}", t.attempts);
}
