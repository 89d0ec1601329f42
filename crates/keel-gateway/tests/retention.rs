#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `[retention]` in a running gateway: a trace past the traces window is deleted, one
//! past the capture window loses its text and keeps the rest, a fresh call is untouched;
//! the removals are counted in `/metrics` and audited.

mod common;

use std::time::{Duration, Instant};

use common::*;

const DAY: i64 = 86_400_000;

#[tokio::test]
async fn old_traces_and_old_text_are_removed_on_schedule() {
    let h = Harness::with(Options {
        extra: "[retention]\ntraces = \"30d\"\ncapture = \"2d\"\nevery = \"200ms\"\n".into(),
        ..Options::default()
    })
    .await;
    let (status, _, fresh) = h.ask("local", "keep me").await;
    assert_eq!(status, 200);
    let store = keel_store::Store::open(&h.store_path).unwrap();
    let now = keel_store::prompts::now_ms();
    store
        .writer_conn()
        .unwrap()
        .execute_batch(&format!(
            "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms, status, http_status, input, output, input_tokens)
             VALUES ('ancient', {}, 'openai', '/v1/chat/completions', 0, 0, 5, 'ok', 200, 'old words', 'old answer', 3),
                    ('wordy', {}, 'openai', '/v1/chat/completions', 0, 0, 5, 'ok', 200, 'private words', 'answer', 3);
             -- The first pass ran at start with today's cutoff; a trace written since with
             -- an old time waits for the next day's pass: make it the next day.
             DELETE FROM retention_marks;",
            now - 40 * DAY,
            now - 5 * DAY
        ))
        .unwrap();
    let reader = store.reader().unwrap();
    let text = |id: &str| -> Option<Option<String>> {
        reader
            .query_row("SELECT input FROM traces WHERE id = ?1", [id], |r| r.get(0))
            .ok()
    };
    let started = Instant::now();
    while (text("ancient").is_some() || text("wordy") != Some(None) || text(&fresh).is_none())
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text("ancient"), None, "past 30 days: deleted");
    assert_eq!(text("wordy"), Some(None), "past 2 days: text dropped");
    let tokens: i64 = reader
        .query_row(
            "SELECT input_tokens FROM traces WHERE id = 'wordy'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tokens, 3, "the rest of the trace is kept");
    assert!(
        text(&fresh).unwrap().is_some(),
        "a fresh call keeps its text"
    );

    let m = h.metrics().await;
    assert_eq!(
        metric(&m, "keel_retention_removed_total", &[("what", "traces")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "keel_retention_removed_total", &[("what", "captures")]),
        Some(1.0)
    );
    let audited: i64 = reader
        .query_row(
            "SELECT count(*) FROM audit_events WHERE action = 'retention.run'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(audited >= 1);
    h.finish().await;
}
