//! `POST /v1/traces`: an app sends its own spans (retrieval, tool calls, …) to Keel over
//! OTLP/HTTP, JSON or protobuf, and they are stored in `app_spans` so they show beside
//! Keel's call on the trace page (joined by trace id).
//!
//! Needs a virtual key or the admin key when auth is required. The body is read under
//! `[gateway] max_body_bytes` — a `Content-Encoding: gzip` body (what OTLP exporters send
//! with compression on) is inflated under the same limit, so a small bomb cannot grow
//! past it; decoding happens here, the store write on a blocking
//! thread. Answers follow OTLP/HTTP: `ExportTraceServiceResponse` in the request's
//! encoding (with `partialSuccess` when some spans had unusable ids), or a
//! `google.rpc.Status` with a message saying what was wrong.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use keel_store::{AppSpan, SpanStatus};
use prost::Message;
use serde_json::{json, Map, Value};

use super::proto;
use crate::error::GatewayError;
use crate::pipeline::{auth, body};
use crate::state::AppState;

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Protobuf,
}

/// What a body decoded to: the usable spans and why any others were rejected.
#[derive(Debug, Default)]
pub struct Decoded {
    pub spans: Vec<AppSpan>,
    pub rejected: i64,
    pub reason: Option<String>,
}

impl Decoded {
    fn reject(&mut self, why: String) {
        self.rejected += 1;
        self.reason.get_or_insert(why);
    }
}

pub async fn ingest(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (encoding, gzip) = match encoding_of(&headers) {
        Ok(e) => e,
        Err(msg) => return status(Encoding::Json, StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg),
    };
    let owner = match authorize(&app, &headers) {
        Ok(owner) => owner,
        Err(e) => return error(encoding, &e),
    };
    let (bytes, _hold) = match body::read_body(&app, &headers, body).await {
        Ok(b) => (b.bytes, b.hold),
        Err(e) => return error(encoding, &e),
    };
    let bytes = if gzip {
        // Inflating up to the body limit is CPU work: off the runtime's threads.
        let limit = app.max_body_bytes;
        let inflated = tokio::task::spawn_blocking(move || gunzip(&bytes, limit)).await;
        match inflated {
            Ok(Ok(b)) => bytes::Bytes::from(b),
            Ok(Err(e)) => return error(encoding, &e),
            Err(e) => return status(encoding, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    } else {
        bytes
    };
    let decoded = match encoding {
        Encoding::Json => decode_json(&bytes),
        Encoding::Protobuf => decode_protobuf(&bytes),
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(msg) => return status(encoding, StatusCode::BAD_REQUEST, &msg),
    };
    let Some(store) = app.store.clone() else {
        return status(
            encoding,
            StatusCode::SERVICE_UNAVAILABLE,
            "this gateway has no store to keep spans in",
        );
    };
    let n = decoded.spans.len() as u64;
    let mut decoded_rejected = decoded.rejected;
    let mut reason = decoded.reason;
    if n > 0 {
        let spans = decoded.spans;
        let now = crate::pipeline::drive::now_ms();
        let written = tokio::task::spawn_blocking(move || {
            store.insert_app_spans(&spans, now, owner.as_deref())
        })
        .await;
        match written {
            Ok(Ok(refused)) => {
                app.metrics
                    .otel
                    .spans_ingested
                    .inc_by(n.saturating_sub(refused));
                if refused > 0 {
                    decoded_rejected += i64::try_from(refused).unwrap_or(i64::MAX);
                    reason.get_or_insert_with(|| {
                        "a span with the same trace and span id was sent by another tenant; \
                         it is kept, this one is not stored"
                            .to_string()
                    });
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot store ingested spans");
                return status(
                    encoding,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("cannot store the spans now ({e}); retry later"),
                );
            }
            Err(e) => {
                return status(encoding, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
            }
        }
    }
    success(encoding, decoded_rejected, reason)
}

/// A virtual key or the admin key, when auth asks for one; the spans' owner (the key's
/// tenant; `None` for the admin key or no key).
fn authorize(app: &AppState, headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let credential = auth::credential(headers);
    match app.governor.authenticate(credential) {
        Ok(key) => Ok(key.map(|k| k.tenant.clone())),
        Err(e) => match app.governor.check_admin(credential) {
            Ok(()) if credential.is_some() => Ok(None),
            _ => Err(e.into()),
        },
    }
}

/// Inflate a gzip body, at most `limit` bytes of it (the same limit as a plain body).
fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, GatewayError> {
    use std::io::Read;
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::GzDecoder::new(bytes)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| {
            GatewayError::InvalidRequest(format!(
                "the body says `content-encoding: gzip` but does not inflate: {e}"
            ))
        })?;
    if out.len() > limit {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    Ok(out)
}

/// The body's encoding, and whether it is gzip-compressed.
fn encoding_of(headers: &HeaderMap) -> Result<(Encoding, bool), String> {
    let mut gzip = false;
    if let Some(enc) = headers.get(axum::http::header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("?").trim();
        if enc.eq_ignore_ascii_case("gzip") {
            gzip = true;
        } else if !enc.eq_ignore_ascii_case("identity") {
            return Err(format!("content-encoding `{enc}` is not supported; send gzip or no compression (OTEL_EXPORTER_OTLP_COMPRESSION=gzip or none)"));
        }
    }
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(JSON);
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case(JSON) {
        Ok((Encoding::Json, gzip))
    } else if mime.eq_ignore_ascii_case(PROTOBUF) {
        Ok((Encoding::Protobuf, gzip))
    } else {
        Err(format!(
            "content-type `{ct}` is not OTLP/HTTP; send application/json or application/x-protobuf"
        ))
    }
}

fn error(encoding: Encoding, e: &GatewayError) -> Response {
    let view = e.view();
    status(encoding, view.status, &view.message)
}

/// An OTLP/HTTP error: `google.rpc.Status` in the request's encoding.
fn status(encoding: Encoding, code: StatusCode, message: &str) -> Response {
    // gRPC codes: INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE, INTERNAL.
    let grpc = match code.as_u16() {
        400 | 413 | 415 => 3,
        401 => 16,
        403 => 7,
        408 | 503 => 14,
        _ => 13,
    };
    let body = match encoding {
        Encoding::Json => json!({"code": grpc, "message": message})
            .to_string()
            .into_bytes(),
        Encoding::Protobuf => proto::RpcStatus {
            code: grpc,
            message: message.to_string(),
        }
        .encode_to_vec(),
    };
    respond(encoding, code, body)
}

fn success(encoding: Encoding, rejected: i64, reason: Option<String>) -> Response {
    let body = match encoding {
        Encoding::Json if rejected == 0 => b"{}".to_vec(),
        Encoding::Json => json!({"partialSuccess": {
            "rejectedSpans": rejected.to_string(),
            "errorMessage": reason.unwrap_or_default(),
        }})
        .to_string()
        .into_bytes(),
        Encoding::Protobuf => proto::ExportTraceServiceResponse {
            partial_success: (rejected > 0).then(|| proto::ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: reason.unwrap_or_default(),
            }),
        }
        .encode_to_vec(),
    };
    respond(encoding, StatusCode::OK, body)
}

fn respond(encoding: Encoding, code: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    let ct = match encoding {
        Encoding::Json => JSON,
        Encoding::Protobuf => PROTOBUF,
    };
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(ct),
    );
    resp
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn valid_id(id: &str, len: usize) -> bool {
    id.len() == len && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0')
}

/// A span's ids checked and normalised; `Err` says which one is unusable.
fn ids(
    trace: String,
    span: String,
    parent: String,
) -> Result<(String, String, Option<String>), String> {
    let (trace, span, parent) = (
        trace.to_ascii_lowercase(),
        span.to_ascii_lowercase(),
        parent.to_ascii_lowercase(),
    );
    if !valid_id(&trace, 32) {
        return Err(format!(
            "span with trace id `{trace}`: a trace id is 16 bytes (32 hex digits), not all zero"
        ));
    }
    if !valid_id(&span, 16) {
        return Err(format!(
            "span with span id `{span}`: a span id is 8 bytes (16 hex digits), not all zero"
        ));
    }
    let parent = if parent.is_empty() || parent.bytes().all(|b| b == b'0') {
        None
    } else if valid_id(&parent, 16) {
        Some(parent)
    } else {
        return Err(format!(
            "span `{span}` has parent span id `{parent}`: it must be 16 hex digits or empty"
        ));
    };
    Ok((trace, span, parent))
}

// ---- protobuf ----

fn any_to_json(v: &proto::AnyValue) -> Value {
    use proto::any_value::Value as V;
    match &v.value {
        None => Value::Null,
        Some(V::StringValue(s)) => json!(s),
        Some(V::BoolValue(b)) => json!(b),
        Some(V::IntValue(i)) => json!(i),
        Some(V::DoubleValue(d)) => json!(d),
        Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(any_to_json).collect()),
        Some(V::KvlistValue(kv)) => Value::Object(kvs_to_json(&kv.values)),
        Some(V::BytesValue(b)) => json!(hex(b)),
    }
}

fn kvs_to_json(kvs: &[proto::KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| {
            let v = kv.value.as_ref().map_or(Value::Null, any_to_json);
            (kv.key.clone(), v)
        })
        .collect()
}

pub fn decode_protobuf(bytes: &[u8]) -> Result<Decoded, String> {
    let req = proto::ExportTraceServiceRequest::decode(bytes).map_err(|e| {
        format!("the body is not an OTLP ExportTraceServiceRequest in protobuf: {e}")
    })?;
    let mut out = Decoded::default();
    for rs in req.resource_spans {
        let service = rs.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(proto::any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
        });
        for ss in rs.scope_spans {
            for s in ss.spans {
                match ids(hex(&s.trace_id), hex(&s.span_id), hex(&s.parent_span_id)) {
                    Ok((trace_id, span_id, parent_span_id)) => out.spans.push(AppSpan {
                        trace_id,
                        span_id,
                        parent_span_id,
                        name: s.name,
                        service: service.clone(),
                        kind: s.kind,
                        start_unix_nano: s.start_time_unix_nano,
                        end_unix_nano: s.end_time_unix_nano,
                        attributes: kvs_to_json(&s.attributes),
                        status: SpanStatus::from_code(
                            s.status.as_ref().map_or(0, |st| i64::from(st.code)),
                        ),
                        status_message: s.status.map(|st| st.message).filter(|m| !m.is_empty()),
                    }),
                    Err(why) => out.reject(why),
                }
            }
        }
    }
    Ok(out)
}

// ---- JSON ----

/// An int64 in OTLP JSON: a string (the protobuf JSON mapping) or a number.
fn json_int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX))),
        _ => None,
    }
}

fn json_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn json_any(v: &Value) -> Value {
    let Some(o) = v.as_object() else {
        return Value::Null;
    };
    if let Some(s) = o.get("stringValue") {
        s.clone()
    } else if let Some(b) = o.get("boolValue") {
        b.clone()
    } else if let Some(i) = o.get("intValue") {
        json_int(i).map_or(Value::Null, |i| json!(i))
    } else if let Some(d) = o.get("doubleValue") {
        match d {
            Value::String(s) => s.parse::<f64>().map_or(Value::Null, |f| json!(f)),
            other => other.clone(),
        }
    } else if let Some(a) = o.get("arrayValue") {
        let values = a
            .get("values")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Value::Array(values.iter().map(json_any).collect())
    } else if let Some(kv) = o.get("kvlistValue") {
        Value::Object(json_kvs(kv.get("values")))
    } else if let Some(b) = o.get("bytesValue") {
        b.clone()
    } else {
        Value::Null
    }
}

fn json_kvs(list: Option<&Value>) -> Map<String, Value> {
    list.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| {
            let key = kv.get("key")?.as_str()?.to_string();
            Some((key, kv.get("value").map_or(Value::Null, json_any)))
        })
        .collect()
}

/// OTLP JSON enums may be numbers or their names (`SPAN_KIND_CLIENT`).
fn json_enum(v: Option<&Value>, names: &[&str]) -> i64 {
    match v {
        Some(Value::String(s)) => names
            .iter()
            .position(|n| n == s)
            .and_then(|i| i64::try_from(i).ok())
            .or_else(|| s.parse().ok())
            .unwrap_or(0),
        Some(v) => json_int(v).unwrap_or(0),
        None => 0,
    }
}

const KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const CODES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub fn decode_json(bytes: &[u8]) -> Result<Decoded, String> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!("the body is not JSON: {e} (send an OTLP ExportTraceServiceRequest)")
    })?;
    let Some(resource_spans) = root.get("resourceSpans") else {
        return Err("the body has no `resourceSpans`: send an OTLP ExportTraceServiceRequest (resourceSpans → scopeSpans → spans)".into());
    };
    if !resource_spans.is_array() {
        return Err("`resourceSpans` must be an array".into());
    }
    let str_of =
        |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = Decoded::default();
    for rs in list(&root, "resourceSpans") {
        let service = rs
            .get("resource")
            .map(|r| json_kvs(r.get("attributes")))
            .and_then(|attrs| {
                attrs
                    .get("service.name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        for ss in list(rs, "scopeSpans") {
            for s in list(ss, "spans") {
                let (Some(start), Some(end)) = (
                    s.get("startTimeUnixNano").and_then(json_u64),
                    s.get("endTimeUnixNano").and_then(json_u64),
                ) else {
                    out.reject(format!(
                        "span `{}` has no startTimeUnixNano/endTimeUnixNano (unix nanoseconds)",
                        str_of(s, "name")
                    ));
                    continue;
                };
                let status = s.get("status");
                match ids(
                    str_of(s, "traceId"),
                    str_of(s, "spanId"),
                    str_of(s, "parentSpanId"),
                ) {
                    Ok((trace_id, span_id, parent_span_id)) => out.spans.push(AppSpan {
                        trace_id,
                        span_id,
                        parent_span_id,
                        name: str_of(s, "name"),
                        service: service.clone(),
                        kind: i32::try_from(json_enum(s.get("kind"), &KINDS)).unwrap_or(0),
                        start_unix_nano: start,
                        end_unix_nano: end,
                        attributes: json_kvs(s.get("attributes")),
                        status: SpanStatus::from_code(json_enum(
                            status.and_then(|st| st.get("code")),
                            &CODES,
                        )),
                        status_message: status
                            .and_then(|st| st.get("message"))
                            .and_then(Value::as_str)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string),
                    }),
                    Err(why) => out.reject(why),
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_spans_decode_with_typed_attributes() {
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "rag-app"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "4BF92F3577B34DA6A3CE929D0E0E4736",
                "spanId": "00f067aa0ba902b7",
                "parentSpanId": "",
                "name": "retrieve",
                "kind": "SPAN_KIND_INTERNAL",
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": 1700000000100000000u64,
                "attributes": [
                    {"key": "k", "value": {"intValue": "5"}},
                    {"key": "docs", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}}
                ],
                "status": {"code": 2, "message": "boom"}
            }, {
                "traceId": "00", "spanId": "1111111111111111", "name": "bad",
                "startTimeUnixNano": "1", "endTimeUnixNano": "2"
            }]}]
        }]});
        let d = decode_json(body.to_string().as_bytes()).unwrap();
        assert_eq!(d.spans.len(), 1);
        assert_eq!(d.rejected, 1);
        let s = &d.spans[0];
        assert_eq!(s.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.parent_span_id, None);
        assert_eq!((s.kind, s.status), (1, SpanStatus::Error));
        assert_eq!(s.service.as_deref(), Some("rag-app"));
        assert_eq!(s.attributes["k"], json!(5));
        assert_eq!(s.attributes["docs"], json!(["a"]));
        assert_eq!(s.end_unix_nano - s.start_unix_nano, 100_000_000);
    }

    #[test]
    fn malformed_bodies_are_named() {
        assert!(decode_json(b"{not json").unwrap_err().contains("not JSON"));
        assert!(decode_json(b"{}").unwrap_err().contains("resourceSpans"));
        assert!(decode_protobuf(&[0xff, 0xff, 0xff])
            .unwrap_err()
            .contains("protobuf"));
    }
}
