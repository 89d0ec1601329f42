#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! No client can pin the gateway (issue: hardening, item 6): a header sent a byte at a
//! time and an idle kept-alive socket are closed, connections past the cap get a clear
//! 503, and a stop signal ends the process within `shutdown_timeout` whatever is open,
//! tracing the calls it cut as `shutdown`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keel_core::config::mock::MockSettings;
use keel_core::trace::TraceStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(h: &Harness) -> String {
    h.base.trim_start_matches("http://").to_string()
}

/// Read until the peer closes (Ok(bytes)) or `limit` passes (Err).
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, ()> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return Err(()),
        }
    }
}

#[tokio::test]
async fn a_header_sent_a_byte_at_a_time_is_cut_off() {
    let h = Harness::with(Options {
        gateway: "header_read_timeout = \"400ms\"".into(),
        ..Options::default()
    })
    .await;
    let mut s = TcpStream::connect(addr(&h)).await.unwrap();
    let started = Instant::now();
    let header =
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in header {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        assert!(
            read_until_closed(&mut s, Duration::from_secs(2))
                .await
                .is_ok(),
            "the slow header was never cut off"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Ordinary calls are unaffected.
    assert_eq!(h.chat(&chat_body("mock-1", "hi")).await.status(), 200);
    h.finish().await;
}

#[tokio::test]
async fn an_idle_kept_alive_socket_is_closed() {
    let h = Harness::with(Options {
        gateway: "header_read_timeout = \"300ms\"".into(),
        ..Options::default()
    })
    .await;
    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(addr(&h)).await.unwrap();
    let started = Instant::now();
    assert!(read_until_closed(&mut silent, Duration::from_secs(3))
        .await
        .is_ok());
    assert!(started.elapsed() < Duration::from_secs(2));
    // A kept-alive connection after one answered request.
    let mut kept = TcpStream::connect(addr(&h)).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = read_until_closed(&mut kept, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"));
    h.finish().await;
}

#[tokio::test]
async fn connections_past_the_cap_get_a_clear_503_and_the_rest_keep_working() {
    let h = Harness::with(Options {
        gateway: "max_connections = 4\nheader_read_timeout = \"20s\"".into(),
        ..Options::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr(&h)).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap(); // partial header
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(addr(&h)).await.unwrap();
    let answer = read_until_closed(&mut extra, Duration::from_secs(3))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.contains("\"code\":\"overloaded\"") && text.contains("max_connections"),
        "{text}"
    );
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert!(
        serde_json::from_str::<serde_json::Value>(body).is_ok(),
        "{body}"
    );
    // Freed slots serve again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.chat(&chat_body("mock-1", "hi")).await.status(), 200);
    h.finish().await;
}

#[tokio::test]
async fn shutdown_ends_within_its_deadline_and_traces_the_calls_it_cut() {
    let h = Harness::with(Options {
        mock: MockSettings {
            latency_ms: 20_000,
            ..MockSettings::default()
        },
        gateway: "shutdown_timeout = \"500ms\"\nheader_read_timeout = \"60s\"".into(),
        ..Options::default()
    })
    .await;
    // A slowloris connection that never finishes its header …
    let mut slow = TcpStream::connect(addr(&h)).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost")
        .await
        .unwrap();
    // … and a call the upstream takes 20 s to answer.
    let client = h.client.clone();
    let url = h.url("/v1/chat/completions");
    let pending = tokio::spawn(async move {
        client
            .post(url)
            .json(&chat_body("mock-1", "take your time"))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (report, traces) = h.finish().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.traces_dropped, 0);
    let cut: Vec<_> = traces
        .iter()
        .filter(|t| t.error_class.as_deref() == Some("shutdown"))
        .collect();
    assert_eq!(cut.len(), 1, "{traces:?}");
    assert_eq!(cut[0].status, TraceStatus::Error);
    // The cut call's client got no answer (its connection was closed).
    assert!(pending.await.unwrap().is_err());
    drop(slow);
}

/// Request bodies in flight are capped (issue: hardening, item 8): past
/// `max_inflight_body_bytes` a request gets 503 `overloaded` before its body is read;
/// once the bytes are released, calls go through again.
#[tokio::test]
async fn bodies_in_flight_past_the_cap_are_refused_with_503_overloaded() {
    let h = Harness::with(Options {
        mock: MockSettings {
            latency_ms: 800,
            ..MockSettings::default()
        },
        gateway: "max_inflight_body_bytes = 3000000\nmax_body_bytes = 4000000".into(),
        ..Options::default()
    })
    .await;
    let big = "word ".repeat(400_000); // ~2 MB
    let body = chat_body("mock-1", &big);
    // The first holds ~2 MB of the 3 MB budget while the upstream thinks.
    let (client, url, b) = (
        h.client.clone(),
        h.url("/v1/chat/completions"),
        body.clone(),
    );
    let first = tokio::spawn(async move { client.post(url).json(&b).send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = h.chat(&body).await;
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    let v: serde_json::Value = second.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_inflight_body_bytes"));
    // Small calls still fit beside it.
    assert_eq!(h.chat(&chat_body("mock-1", "hi")).await.status(), 200);
    assert_eq!(first.await.unwrap().status(), 200);
    // The first's bytes are released with its answer.
    assert_eq!(h.chat(&body).await.status(), 200);
    let m = h.metrics().await;
    assert!(m.contains("class=\"overloaded\""), "{m}");
    h.finish().await;
}
