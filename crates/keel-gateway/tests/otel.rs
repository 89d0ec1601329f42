#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! OpenTelemetry at the gateway: spans exported to a local OTLP/HTTP receiver (GenAI
//! attribute names and values, span name, `traceparent` honoured, error status, custom
//! headers), a dead collector that never slows or fails a call, and `POST /v1/traces`
//! ingest of JSON and protobuf spans (plain or gzip) that come back by trace id beside
//! Keel's own call.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use keel_gateway::otel::proto;
use prost::Message;
use serde_json::{json, Value};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// What the receiver got: each POST's JSON body and its `x-collector-key` header.
type Received = Arc<Mutex<Vec<(Value, Option<String>)>>>;

/// An OTLP/HTTP receiver on 127.0.0.1:0 that keeps every body sent to /v1/traces.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let key = headers
                        .get("x-collector-key")
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string);
                    keep.lock().unwrap().push((v, key));
                    "{}"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), got)
}

fn otel_extra(endpoint: &str, more: &str) -> String {
    format!("[otel]\nendpoint = \"{endpoint}\"\nflush_interval = \"50ms\"\nheaders = {{ \"x-collector-key\" = \"k1\" }}\n{more}\n")
}

/// Every span received, with the resource's service.name.
fn spans(got: &Received) -> Vec<(Value, String)> {
    let mut out = Vec::new();
    for (body, _) in got.lock().unwrap().iter() {
        for rs in body["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].as_str().unwrap().to_string())
                .unwrap();
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    out.push((s.clone(), service.clone()));
                }
            }
        }
    }
    out
}

fn attr(span: &Value, key: &str) -> Value {
    let a = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .unwrap_or_else(|| panic!("no attribute {key} in {span:#}"));
    let v = &a["value"];
    for kind in ["stringValue", "boolValue", "doubleValue"] {
        if let Some(x) = v.get(kind) {
            return x.clone();
        }
    }
    if let Some(i) = v.get("intValue") {
        return json!(i.as_str().unwrap().parse::<i64>().unwrap());
    }
    v.clone()
}

fn has_attr(span: &Value, key: &str) -> bool {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["key"] == key)
}

fn span_of<'a>(spans: &'a [(Value, String)], request_id: &str) -> &'a Value {
    &spans
        .iter()
        .find(|(s, _)| attr(s, "keel.request_id") == request_id)
        .unwrap_or_else(|| panic!("no span for {request_id}"))
        .0
}

#[tokio::test]
async fn calls_are_exported_as_genai_spans_that_join_the_callers_trace() {
    let (endpoint, got) = receiver().await;
    let h = Harness::with(Options {
        extra: otel_extra(&endpoint, "service_name = \"keel-test\""),
        ..Options::default()
    })
    .await;

    // A plain call, attributed.
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("mock-1", "hello otel"),
            &[
                ("x-keel-tenant", "acme"),
                ("x-keel-feature", "search"),
                ("x-keel-user", "u-1"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let plain = request_id(&resp);
    // A call inside the app's trace.
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("local", "joined"),
            &[("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let joined = request_id(&resp);
    // A failed call.
    let resp = h.chat(&chat_body("no-such-model", "x")).await;
    assert_eq!(resp.status(), 404);
    let failed = request_id(&resp);

    let (_, traces) = h.finish().await;
    let spans = spans(&got);
    assert!(spans.iter().all(|(_, svc)| svc == "keel-test"));
    assert!(got
        .lock()
        .unwrap()
        .iter()
        .all(|(_, key)| key.as_deref() == Some("k1")));

    let s = span_of(&spans, &plain);
    assert_eq!(s["name"], "chat mock-1");
    assert_eq!(s["kind"], 3);
    assert_eq!(attr(s, "gen_ai.operation.name"), "chat");
    assert_eq!(attr(s, "gen_ai.provider.name"), "openai");
    assert_eq!(attr(s, "gen_ai.request.model"), "mock-1");
    let t = trace(&traces, &plain);
    assert_eq!(
        attr(s, "gen_ai.response.model"),
        json!(t.served_model.clone().unwrap())
    );
    assert_eq!(
        attr(s, "gen_ai.usage.input_tokens"),
        json!(t.input_tokens.unwrap())
    );
    assert_eq!(
        attr(s, "gen_ai.usage.output_tokens"),
        json!(t.output_tokens.unwrap())
    );
    assert_eq!(
        attr(s, "gen_ai.response.finish_reasons")["arrayValue"]["values"][0]["stringValue"],
        "stop"
    );
    assert_eq!(
        attr(s, "keel.cost_usd"),
        json!(t.cost.unwrap().as_dollars())
    );
    assert_eq!(attr(s, "keel.tenant"), "acme");
    assert_eq!(attr(s, "keel.feature"), "search");
    assert_eq!(attr(s, "keel.user"), "u-1");
    assert_eq!(attr(s, "keel.attempts"), 1);
    assert!(!has_attr(s, "error.type") && s.get("status").is_none());
    // Times: the trace's start and latency, in unix nanoseconds.
    let start: u128 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = s["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert_eq!(start, t.started_at_ms as u128 * 1_000_000);
    assert_eq!(end - start, u128::from(t.latency_ms) * 1_000_000);
    // The stored trace carries the exported ids.
    assert_eq!(s["traceId"], json!(t.otel_trace_id.clone().unwrap()));
    assert_eq!(s["spanId"], json!(t.otel_span_id.clone().unwrap()));
    assert!(s.get("parentSpanId").is_none());

    // traceparent: the app's trace id, the app's span as parent.
    let s = span_of(&spans, &joined);
    assert_eq!(s["traceId"], TRACE);
    assert_eq!(s["parentSpanId"], CALLER_SPAN);
    assert_ne!(s["spanId"], CALLER_SPAN);
    assert_eq!(attr(s, "gen_ai.provider.name"), "keel.mock");
    let t = trace(&traces, &joined);
    assert_eq!(t.otel_trace_id.as_deref(), Some(TRACE));
    assert_eq!(t.otel_parent_span_id.as_deref(), Some(CALLER_SPAN));

    // An error: span status ERROR and error.type.
    let s = span_of(&spans, &failed);
    assert_eq!(s["status"]["code"], 2);
    assert_eq!(attr(s, "error.type"), "model_not_found");
    assert_eq!(attr(s, "http.response.status_code"), 404);
}

/// A collector that accepts connections and never answers.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_dead_collector_never_slows_or_fails_a_call() {
    let endpoint = black_hole().await;
    let h = Harness::with(Options {
        extra: otel_extra(
            &endpoint,
            "batch_max = 1\nqueue_capacity = 2\ntimeout = \"2s\"",
        ),
        ..Options::default()
    })
    .await;
    for i in 0..10 {
        let started = Instant::now();
        let resp = h.chat(&chat_body("mock-1", &format!("call {i}"))).await;
        assert_eq!(resp.status(), 200);
        // The exporter is stuck on a 2 s POST; a call that waited for it would show it.
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "call {i} took {:?}",
            started.elapsed()
        );
    }
    let metrics = h.metrics().await;
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keel_otel_spans_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped >= 5.0, "{metrics}");
    let stopping = Instant::now();
    let (report, traces) = h.finish().await;
    // Shutdown gives up on a collector that cannot be reached, and every trace is kept.
    assert!(stopping.elapsed() < Duration::from_secs(15));
    assert_eq!(traces.len(), 10);
    assert_eq!(report.traces_dropped, 0);
}

fn auth_harness_extra(var: &str) -> String {
    format!("[auth]\nmode = \"required\"\nadmin_key_env = \"{var}\"\n")
}

fn proto_span(trace: &[u8], span: [u8; 8], parent: Vec<u8>, name: &str, start: u64) -> proto::Span {
    proto::Span {
        trace_id: trace.to_vec(),
        span_id: span.to_vec(),
        parent_span_id: parent,
        name: name.into(),
        kind: 1,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 5_000_000,
        attributes: vec![proto::KeyValue {
            key: "tool.name".into(),
            value: Some(proto::AnyValue {
                value: Some(proto::any_value::Value::StringValue("search".into())),
            }),
        }],
        status: Some(proto::Status {
            message: String::new(),
            code: 1,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn app_spans_in_json_and_protobuf_are_stored_beside_keels_call() {
    let var = format!("KEEL_TEST_OTEL_ADMIN_{}", std::process::id());
    std::env::set_var(&var, "otel-admin");
    let h = Harness::with(Options {
        extra: auth_harness_extra(&var),
        ..Options::default()
    })
    .await;
    let trace_bytes: Vec<u8> = (0..16).map(|i| 0x4b ^ i).collect();
    let trace_hex: String = trace_bytes.iter().map(|b| format!("{b:02x}")).collect();

    // JSON, as an OTLP/HTTP exporter sends it.
    let json_body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "rag-app"}}]},
        "scopeSpans": [{"scope": {"name": "app"}, "spans": [{
            "traceId": trace_hex, "spanId": "1111111111111111", "name": "handle question",
            "kind": 2, "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
            "attributes": [{"key": "user.count", "value": {"intValue": "3"}}]
        }]}]
    }]});
    let post = |ct: &'static str, body: Vec<u8>, key: Option<&'static str>| {
        let mut r = h
            .client
            .post(h.url("/v1/traces"))
            .header("content-type", ct)
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    // Auth is required: no key, no ingest.
    let resp = post("application/json", json_body.to_string().into_bytes(), None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = post(
        "application/json",
        json_body.to_string().into_bytes(),
        Some("otel-admin"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "{}");

    // Protobuf: two child spans, sent out of order.
    let req = proto::ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(proto::Resource {
                attributes: vec![proto::KeyValue {
                    key: "service.name".into(),
                    value: Some(proto::AnyValue {
                        value: Some(proto::any_value::Value::StringValue("rag-app".into())),
                    }),
                }],
            }),
            scope_spans: vec![proto::ScopeSpans {
                scope: None,
                spans: vec![
                    proto_span(
                        &trace_bytes,
                        [0x33; 8],
                        vec![0x11; 8],
                        "tool call",
                        1_700_000_000_500_000_000,
                    ),
                    proto_span(
                        &trace_bytes,
                        [0x22; 8],
                        vec![0x11; 8],
                        "retrieve",
                        1_700_000_000_100_000_000,
                    ),
                ],
            }],
        }],
    };
    let resp = post(
        "application/x-protobuf",
        req.encode_to_vec(),
        Some("otel-admin"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let answer = proto::ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success, None);

    // Malformed bodies: 400 with a message that says what is wrong.
    let resp = post(
        "application/json",
        b"{\"resourceSpans\": 7}".to_vec(),
        Some("otel-admin"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("resourceSpans"),
        "{v}"
    );
    let resp = post("application/x-protobuf", vec![0xff; 9], Some("otel-admin"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let status = proto::RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(status.message.contains("protobuf"), "{}", status.message);
    let resp = post("text/plain", b"hi".to_vec(), Some("otel-admin"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    // Keel's own call in the same trace.
    let resp = h
        .client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth("otel-admin-is-not-a-virtual-key")
        .header("traceparent", format!("00-{trace_hex}-3333333333333333-01"))
        .json(&chat_body("mock-1", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "chat still needs a virtual key");

    // Auth is required: /metrics needs the admin key (`[auth] public_metrics`).
    let metrics = h
        .client
        .get(h.url("/metrics"))
        .bearer_auth("otel-admin")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keel_otel_spans_ingested_total 3"),
        "{metrics}"
    );
    let path = h.store_path.clone();
    h.gateway.shutdown().await.unwrap();
    let store = keel_store::Store::open(&path).unwrap();
    let conn = store.reader().unwrap();
    let spans = keel_store::spans_for_trace(&conn, &trace_hex).unwrap();
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["handle question", "retrieve", "tool call"]);
    assert!(spans
        .iter()
        .all(|s| s.service.as_deref() == Some("rag-app")));
    assert_eq!(spans[0].parent_span_id, None);
    assert_eq!(spans[0].attributes["user.count"], json!(3));
    assert_eq!(spans[1].parent_span_id.as_deref(), Some("1111111111111111"));
    assert_eq!(spans[1].attributes["tool.name"], "search");
    assert_eq!(spans[1].status, keel_store::SpanStatus::Ok);
}

#[tokio::test]
async fn a_keel_call_and_the_apps_spans_meet_by_trace_id() {
    let h = Harness::start().await;
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("mock-1", "joined"),
            &[("traceparent", &format!("00-{TRACE}-{CALLER_SPAN}-01"))],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": TRACE, "spanId": CALLER_SPAN, "name": "answer question",
        "startTimeUnixNano": "1", "endTimeUnixNano": "2"
    }]}]}]});
    let resp = h.post_raw("/v1/traces", body.to_string()).await;
    assert_eq!(resp.status(), 200);
    // A call without traceparent and without export gets no trace id at all.
    let resp = h.chat(&chat_body("mock-1", "alone")).await;
    let alone = request_id(&resp);
    let path = h.store_path.clone();
    h.gateway.shutdown().await.unwrap();
    let traces = read_traces(&path);
    assert_eq!(trace(&traces, &alone).otel_trace_id, None);
    let store = keel_store::Store::open(&path).unwrap();
    let conn = store.reader().unwrap();
    let calls = keel_store::calls_in_trace(&conn, TRACE).unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, id);
    let app = keel_store::spans_for_trace(&conn, TRACE).unwrap();
    assert_eq!(app.len(), 1);
    assert_eq!(
        calls[0].otel_parent_span_id.as_deref(),
        Some(app[0].span_id.as_str())
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_inflated_under_the_body_limit() {
    let h = Harness::with(Options {
        gateway: "max_body_bytes = 65536".into(),
        ..Options::default()
    })
    .await;
    let post = |encoding: &'static str, ct: &'static str, body: Vec<u8>| {
        h.client
            .post(h.url("/v1/traces"))
            .header("content-type", ct)
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };
    let trace_hex = "5a".repeat(16);
    let json_body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": trace_hex, "spanId": "2222222222222222", "name": "gzip json",
        "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000"
    }]}]}]});
    let resp = post(
        "gzip",
        "application/json",
        gzip(json_body.to_string().as_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let req = proto::ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: None,
            scope_spans: vec![proto::ScopeSpans {
                scope: None,
                spans: vec![proto_span(
                    &[0x5a; 16],
                    [0x44; 8],
                    vec![0x22; 8],
                    "gzip protobuf",
                    1_700_000_000_200_000_000,
                )],
            }],
        }],
    };
    let resp = post("gzip", "application/x-protobuf", gzip(&req.encode_to_vec()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A bomb: 1 MB of zeros is ~1 KB compressed, far under the limit, but inflates past it.
    let resp = post("gzip", "application/json", gzip(&vec![b' '; 1 << 20]))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let resp = post("gzip", "application/json", b"not gzip at all".to_vec())
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("gzip"), "{v}");
    let resp = post("br", "application/json", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    let path = h.store_path.clone();
    h.gateway.shutdown().await.unwrap();
    let store = keel_store::Store::open(&path).unwrap();
    let spans = keel_store::spans_for_trace(&store.reader().unwrap(), &trace_hex).unwrap();
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["gzip json", "gzip protobuf"]);
}

/// Span ingest never replaces another tenant's spans: the same trace and span ids sent
/// with another tenant's key are refused (reported in `partialSuccess`), while the
/// owner's own retry still replaces its copy.
#[tokio::test]
async fn ingest_never_replaces_another_tenants_spans() {
    let var = format!("KEEL_TEST_OTEL_OWNER_{}", std::process::id());
    std::env::set_var(&var, "otel-owner-admin");
    let h = Harness::with(Options {
        extra: auth_harness_extra(&var),
        ..Options::default()
    })
    .await;
    let key_for = |tenant: &'static str| {
        let h = &h;
        async move {
            let resp = h
                .client
                .post(h.url("/admin/keys"))
                .bearer_auth("otel-owner-admin")
                .json(&json!({"tenant": tenant}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            let v: serde_json::Value = resp.json().await.unwrap();
            v["key"].as_str().unwrap().to_string()
        }
    };
    let owner = key_for("acme").await;
    let intruder = key_for("globex").await;
    let trace_hex = "5bf92f3577b34da6a3ce929d0e0e4736";
    let body = |name: &str| {
        json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": trace_hex, "spanId": "2222222222222222", "name": name,
            "kind": 1, "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000"
        }]}]}]})
    };
    let send = |key: String, name: &'static str| {
        let h = &h;
        let b = body(name);
        async move {
            let resp = h
                .client
                .post(h.url("/v1/traces"))
                .bearer_auth(key)
                .json(&b)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<serde_json::Value>().await.unwrap()
        }
    };
    send(owner.clone(), "retrieve documents").await;
    let refused = send(intruder, "forged span").await;
    assert_eq!(
        refused["partialSuccess"]["rejectedSpans"]
            .as_str()
            .map(str::to_string)
            .or_else(|| refused["partialSuccess"]["rejectedSpans"]
                .as_i64()
                .map(|n| n.to_string()))
            .as_deref(),
        Some("1"),
        "{refused}"
    );
    let path = h.store_path.clone();
    let read = |path: &str| {
        let store = keel_store::Store::open(path).unwrap();
        keel_store::spans_for_trace(&store.reader().unwrap(), trace_hex).unwrap()
    };
    let spans = read(&path);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "retrieve documents");
    // The owner's retry replaces its own copy.
    send(owner, "retrieve documents (retry)").await;
    let spans = read(&path);
    assert_eq!(spans[0].name, "retrieve documents (retry)");
    h.finish().await;
}

/// A shadow call is exported as a span too (the README's promise), a child of the live
/// call's span with `keel.origin = "shadow"` and `keel.parent_request_id`.
#[tokio::test]
async fn shadow_calls_are_exported_as_spans() {
    let (endpoint, got) = receiver().await;
    let function = r#"
[functions.ask]
shadow = { variant = "candidate", sample = 1.0 }
[[functions.ask.variants]]
name = "control"
prompt = "ask"
model = "local"
weight = 1
[[functions.ask.variants]]
name = "candidate"
prompt = "ask"
model = "mock-1"
weight = 0
"#;
    let h = Harness::with(Options {
        extra: otel_extra(&endpoint, function),
        gateway: String::new(),
        ..Options::default()
    })
    .await;
    {
        let store = keel_store::Store::open(&h.store_path).unwrap();
        let conn = store.writer_conn().unwrap();
        let prompt = "[[messages]]\nrole = \"user\"\ncontent = \"{{ question }}\"\n[variables.question]\ntype = \"string\"\n";
        let p =
            keel_registry::parse_prompt("ask", std::path::Path::new("ask.toml"), prompt).unwrap();
        keel_store::push_version(
            &conn,
            "ask",
            &p.content_hash(),
            &p.to_json().to_string(),
            "t",
            "t",
            None,
        )
        .unwrap();
        keel_store::set_label(&conn, "ask", 1, "production", "t", "t").unwrap();
    }
    let body = json!({"model": "ask", "variables": {"question": "why?"}});
    let mut live = String::new();
    for _ in 0..100 {
        let resp = h.post_json("/v1/chat/completions", &body, &[]).await;
        if resp.status() == 200 {
            live = request_id(&resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!live.is_empty(), "the function never answered");
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.finish().await;
    let spans = spans(&got);
    let live_span = span_of(&spans, &live);
    let shadow = spans
        .iter()
        .map(|(s, _)| s)
        .find(|s| {
            has_attr(s, "keel.parent_request_id") && attr(s, "keel.parent_request_id") == live
        })
        .unwrap_or_else(|| panic!("no shadow span among {spans:#?}"));
    assert_eq!(attr(shadow, "keel.origin"), "shadow");
    assert_eq!(shadow["traceId"], live_span["traceId"]);
    assert_eq!(shadow["parentSpanId"], live_span["spanId"]);
}
