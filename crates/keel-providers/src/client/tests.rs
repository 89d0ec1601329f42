//! The upstream client against local servers: direct calls, errors without URLs, and
//! the three ways a proxy from the environment is used (absolute form, CONNECT, none).

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use futures::StreamExt;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper_util::client::proxy::matcher::Matcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A server that answers `POST /echo` with what it was sent: the body, and the
/// `x-seen-*` headers naming the request's `content-type` and `authorization`.
async fn echo_server() -> String {
    async fn echo(headers: HeaderMap, body: String) -> ([(&'static str, String); 3], String) {
        let get = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (
            [
                ("x-seen-type", get("content-type")),
                ("x-seen-auth", get("authorization")),
                ("x-seen-accept", get("accept")),
            ],
            body,
        )
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The answer in three frames (chunked), with a pause between them.
    async fn chunked() -> axum::body::Body {
        let frames = futures::stream::iter(["one ", "two ", "three"]).then(|f| async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Ok::<_, std::io::Error>(f)
        });
        axum::body::Body::from_stream(frames)
    }
    let app = axum::Router::new()
        .route("/echo", post(echo))
        .route("/chunked", post(chunked));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A proxy that records the head of the one request it gets and answers with `reply`.
async fn recording_proxy(reply: &'static str) -> (String, Arc<Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        *record.lock().unwrap() = String::from_utf8_lossy(&head).into_owned();
        let _ = sock.write_all(reply.as_bytes()).await;
        let _ = sock.shutdown().await;
    });
    (format!("http://user:pa55@{addr}"), seen)
}

/// JSON headers with a bearer key, as OpenAI-style providers send them.
fn bearer(auth: &str) -> Vec<(HeaderName, HeaderValue)> {
    json_headers(Some((
        http::header::AUTHORIZATION,
        &format!("Bearer {auth}"),
    )))
    .unwrap()
}

#[tokio::test]
async fn a_post_carries_its_headers_and_body_and_reads_the_answer_whole_or_streamed() {
    let base = echo_server().await;
    let client = HttpClient::with_proxies(None).unwrap();
    let uri = parse_uri(&format!("{base}/echo")).unwrap();
    let resp = client
        .post(uri.clone(), &bearer("k1"), b"{\"a\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-seen-type"], "application/json");
    assert_eq!(resp.headers()["x-seen-auth"], "Bearer k1");
    assert_eq!(resp.headers()["x-seen-accept"], "*/*");
    assert_eq!(resp.text().await.unwrap(), "{\"a\":1}");

    // The same connection again (pooled), the body read as a stream.
    let resp = client
        .post(uri, &bearer("k2"), b"streamed".to_vec())
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-seen-auth"], "Bearer k2");
    let mut body = Vec::new();
    let mut frames = Box::pin(resp.bytes_stream());
    while let Some(frame) = frames.next().await {
        body.extend_from_slice(&frame.unwrap());
    }
    assert_eq!(body, b"streamed");
}

#[tokio::test]
async fn a_body_in_many_frames_is_read_whole() {
    let base = echo_server().await;
    let client = HttpClient::with_proxies(None).unwrap();
    let resp = client
        .post(
            parse_uri(&format!("{base}/chunked")).unwrap(),
            &bearer("k"),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap(), "one two three");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_that_names_no_url() {
    let refusing = crate::test_ports::refusing_port();
    let port = refusing.addr.port();
    let client = HttpClient::with_proxies(None).unwrap();
    let uri = parse_uri(&format!(
        "http://127.0.0.1:{port}/v1/secret-path?key=s3cret"
    ))
    .unwrap();
    let err = client
        .post(uri, &bearer("k"), Vec::new())
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("connection failed: "), "{text}");
    for leak in ["secret-path", "s3cret", &port.to_string()] {
        assert!(!text.contains(leak), "{text} shows {leak}");
    }
}

#[tokio::test]
async fn plain_http_through_a_proxy_is_sent_in_absolute_form_with_the_proxy_credentials() {
    let (proxy, seen) =
        recording_proxy("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .await;
    let client = HttpClient::with_proxies(Some(Matcher::builder().http(proxy).build())).unwrap();
    let uri = parse_uri("http://upstream.invalid:8080/v1/chat/completions").unwrap();
    let resp = client
        .post(uri, &bearer("k"), b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok");
    let head = seen.lock().unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("post http://upstream.invalid:8080/v1/chat/completions http/1.1\r\n"),
        "{head}"
    );
    // user:pa55, base64.
    assert!(
        head.contains("proxy-authorization: basic dxnlcjpwytu1\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn https_through_a_proxy_opens_a_connect_tunnel_with_the_proxy_credentials() {
    // The proxy agrees to tunnel, then hangs up: the TLS handshake through it fails, which
    // is a connect error; what matters is what the proxy was asked.
    let (proxy, seen) = recording_proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;
    let client = HttpClient::with_proxies(Some(Matcher::builder().https(proxy).build())).unwrap();
    let uri = parse_uri("https://api.upstream.invalid/v1/messages").unwrap();
    let err = client
        .post(uri, &bearer("k"), b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let head = seen.lock().unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("connect api.upstream.invalid:443 http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("proxy-authorization: basic dxnlcjpwytu1\r\n"),
        "{head}"
    );
    // The request itself (its path, its key) never reached the proxy in clear.
    assert!(
        !head.contains("/v1/messages") && !head.contains("bearer"),
        "{head}"
    );
}

#[tokio::test]
async fn connecting_is_bounded_as_a_whole_even_when_tcp_connects_at_once() {
    // A proxy that accepts the TCP connection and never answers the CONNECT.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let proxies = Matcher::builder().https(proxy).build();
    let client =
        HttpClient::with_settings(Some(proxies), std::time::Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    let err = client
        .post(
            parse_uri("https://api.upstream.invalid/v1").unwrap(),
            &bearer("k"),
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(
        err.to_string()
            .contains("connecting took longer than 300 ms"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn hosts_in_no_proxy_are_called_directly() {
    let base = echo_server().await;
    // A proxy nobody listens on: used, it would fail the call.
    let refusing = crate::test_ports::refusing_port();
    let dead = format!("http://{}", refusing.addr);
    let proxies = Matcher::builder().all(dead).no("127.0.0.1").build();
    let client = HttpClient::with_proxies(Some(proxies)).unwrap();
    let resp = client
        .post(
            parse_uri(&format!("{base}/echo")).unwrap(),
            &bearer("k"),
            b"direct".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "direct");
}

#[tokio::test]
async fn a_proxy_that_is_not_http_fails_the_call_saying_which_proxies_work() {
    let proxies = Matcher::builder().all("socks5://127.0.0.1:1080").build();
    let client = HttpClient::with_proxies(Some(proxies)).unwrap();
    let err = client
        .post(
            parse_uri("http://upstream.invalid/v1").unwrap(),
            &bearer("k"),
            Vec::new(),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("http:// proxies only"), "{text}");
}

#[test]
fn urls_with_credentials_or_without_a_host_are_refused_with_the_fix() {
    let err = parse_uri("https://user:pw@api.example.com/v1").unwrap_err();
    assert!(
        err.contains("credentials") && err.contains("api_key_env"),
        "{err}"
    );
    assert!(!err.contains("pw"), "{err}");
    assert!(parse_uri("not a url")
        .unwrap_err()
        .starts_with("invalid base_url"));
    // As before (the url crate): spaces and non-ASCII are percent-encoded.
    assert_eq!(
        parse_uri("http://h:1/v1/models/a b:generateContent")
            .unwrap()
            .to_string(),
        "http://h:1/v1/models/a%20b:generateContent"
    );
}

#[test]
fn a_key_that_cannot_be_a_header_is_refused_and_a_good_one_is_never_shown() {
    assert!(secret_header("sk-1\nx").unwrap_err().contains("newline"));
    let v = secret_header("sk-1").unwrap();
    assert!(v.is_sensitive());
    assert!(!format!("{v:?}").contains("sk-1"));
}

#[test]
fn json_headers_carry_the_content_type_and_the_key_in_its_header() {
    let plain = json_headers(None).unwrap();
    assert_eq!(plain.len(), 1);
    assert_eq!(
        plain[0],
        (CONTENT_TYPE, HeaderValue::from_static("application/json"))
    );
    let keyed = json_headers(Some((HeaderName::from_static("x-api-key"), "sk-1"))).unwrap();
    let (name, value) = &keyed[1];
    assert_eq!(name, "x-api-key");
    assert_eq!(value, "sk-1");
    assert!(value.is_sensitive());
    let bad = json_headers(Some((HeaderName::from_static("x-api-key"), "sk\n1")));
    assert!(bad.unwrap_err().contains("newline"));
}

/// An HTTP/2 server (prior knowledge, plain TCP) that refuses the first `refusals`
/// streams with `REFUSED_STREAM` and answers the next with 200 "served"; returns its
/// base URL and how many streams it saw.
async fn refusing_h2_server(refusals: usize) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(0usize));
    let count = seen.clone();
    tokio::spawn(async move {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut conn) = h2::server::handshake(sock).await else {
            return;
        };
        while let Some(Ok((_req, mut respond))) = conn.accept().await {
            let n = {
                let mut c = count.lock().unwrap();
                *c += 1;
                *c
            };
            if n <= refusals {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
            } else {
                let resp = http::Response::builder().status(200).body(()).unwrap();
                if let Ok(mut body) = respond.send_response(resp, false) {
                    let _ = body.send_data(Bytes::from_static(b"served"), true);
                }
            }
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn a_stream_an_http2_server_refused_is_sent_again_at_most_twice() {
    let h2_client = || HttpClient::build(None, CONNECT_TIMEOUT, true).unwrap();
    // Refused twice, then served: the caller sees the answer.
    let (base, seen) = refusing_h2_server(2).await;
    let resp = h2_client()
        .post(
            parse_uri(&format!("{base}/v1")).unwrap(),
            &bearer("k"),
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "served");
    assert_eq!(*seen.lock().unwrap(), 3);
    // Refused three times: the third refusal is the caller's error.
    let (base, seen) = refusing_h2_server(3).await;
    let err = h2_client()
        .post(
            parse_uri(&format!("{base}/v1")).unwrap(),
            &bearer("k"),
            b"{}".to_vec(),
        )
        .await
        .unwrap_err();
    assert!(!err.is_connect(), "{err:?}");
    assert_eq!(*seen.lock().unwrap(), 3);
}
