//! One finished call as an OTLP span (the JSON encoding of OTLP/HTTP), named and
//! attributed after the OpenTelemetry GenAI semantic conventions (inference client
//! spans), plus Keel's own `keel.*` attributes.
//!
//! Built on the request path from the finished `TraceRecord` (a few dozen small
//! allocations, never the captured input or output), then queued for the exporter.

use keel_core::config::ProviderKind;
use keel_core::trace::{TraceRecord, TraceStatus};
use serde_json::{json, Value};

use super::context;

/// OTLP `SpanKind` CLIENT: Keel calls a model on the app's behalf.
const SPAN_KIND_CLIENT: i64 = 3;
/// OTLP `StatusCode` ERROR.
const STATUS_ERROR: i64 = 2;
/// The GenAI operation Keel's chat endpoints perform.
const OPERATION: &str = "chat";

/// `gen_ai.provider.name` for a provider kind: the well-known names of the conventions,
/// and `keel.mock` for Keel's built-in mock (an OpenAI-compatible server is `openai`:
/// the conventions say to name what the instrumentation speaks to, as best it knows).
pub fn provider_name(kind: &ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi { .. } => "openai",
        ProviderKind::Anthropic { .. } => "anthropic",
        ProviderKind::Gemini { .. } => "gcp.gemini",
        ProviderKind::Azure { .. } => "azure.ai.openai",
        ProviderKind::Mock(_) => "keel.mock",
    }
}

fn string(key: &str, v: &str) -> Value {
    json!({"key": key, "value": {"stringValue": v}})
}

/// int64 attribute values are strings in OTLP JSON (the protobuf JSON mapping).
fn int(key: &str, v: i64) -> Value {
    json!({"key": key, "value": {"intValue": v.to_string()}})
}

fn double(key: &str, v: f64) -> Value {
    json!({"key": key, "value": {"doubleValue": v}})
}

fn boolean(key: &str, v: bool) -> Value {
    json!({"key": key, "value": {"boolValue": v}})
}

fn strings(key: &str, vs: &[&str]) -> Value {
    let values: Vec<Value> = vs.iter().map(|v| json!({"stringValue": v})).collect();
    json!({"key": key, "value": {"arrayValue": {"values": values}}})
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The span of `trace`. `provider` is the `gen_ai.provider.name` of the provider that
/// served it, when one was chosen. Ids missing from the trace (a call that did not come
/// through an HTTP handler) are made up here.
pub fn to_span(trace: &TraceRecord, provider: Option<&str>) -> Value {
    // What the app asked for: the function when it called one (the trace's
    // `model_requested` is then the variant's model, kept as `keel.model`).
    let requested = trace
        .function
        .as_deref()
        .or(trace.model_requested.as_deref());
    let model = requested.unwrap_or("unknown");
    let mut a: Vec<Value> = Vec::with_capacity(32);
    a.push(string("gen_ai.operation.name", OPERATION));
    if let Some(p) = provider {
        a.push(string("gen_ai.provider.name", p));
    }
    if let Some(m) = requested {
        a.push(string("gen_ai.request.model", m));
    }
    if let (Some(_), Some(m)) = (&trace.function, &trace.model_requested) {
        a.push(string("keel.model", m));
    }
    if let Some(m) = &trace.served_model {
        a.push(string("gen_ai.response.model", m));
    }
    if let Some(r) = &trace.finish_reason {
        a.push(strings("gen_ai.response.finish_reasons", &[r.as_str()]));
    }
    if let Some(n) = trace.input_tokens {
        a.push(int("gen_ai.usage.input_tokens", count(n)));
    }
    if let Some(n) = trace.output_tokens {
        a.push(int("gen_ai.usage.output_tokens", count(n)));
    }
    if let Some(s) = &trace.session {
        a.push(string("gen_ai.conversation.id", s));
    }
    if trace.status != TraceStatus::Ok {
        let class = trace.error_class.as_deref().unwrap_or("_OTHER");
        a.push(string("error.type", class));
    }
    a.push(int(
        "http.response.status_code",
        i64::from(trace.http_status),
    ));
    // Keel's own attributes.
    a.push(string("keel.request_id", &trace.id));
    a.push(string("keel.api", &trace.api));
    a.push(string("keel.origin", trace.origin.as_str()));
    a.push(boolean("keel.stream", trace.stream));
    if let Some(c) = trace.cost {
        a.push(double("keel.cost_usd", c.as_dollars()));
    }
    if trace.unpriced {
        a.push(boolean("keel.unpriced", true));
    }
    let optional = [
        ("keel.function", &trace.function),
        ("keel.variant", &trace.variant),
        ("keel.prompt.name", &trace.prompt_name),
        ("keel.release_id", &trace.release_id),
        ("keel.tenant", &trace.tenant),
        ("keel.feature", &trace.feature),
        ("keel.user", &trace.user),
        ("keel.key_id", &trace.key_id),
        ("keel.provider", &trace.provider),
        ("keel.upstream_model", &trace.upstream_model),
        ("keel.cache", &trace.cache),
        ("keel.parent_request_id", &trace.parent_id),
    ];
    for (key, v) in optional {
        if let Some(v) = v {
            a.push(string(key, v));
        }
    }
    if let Some(v) = trace.prompt_version {
        a.push(int("keel.prompt.version", v));
    }
    if trace.provider.is_some() {
        let attempts = trace.attempts.len().max(1);
        a.push(int(
            "keel.attempts",
            i64::try_from(attempts).unwrap_or(i64::MAX),
        ));
    }
    if let Some(n) = trace.cached_tokens.filter(|n| *n > 0) {
        a.push(int("keel.usage.cached_tokens", count(n)));
    }
    if let Some(n) = trace.reasoning_tokens.filter(|n| *n > 0) {
        a.push(int("keel.usage.reasoning_tokens", count(n)));
    }
    if let Some(ms) = trace.ttft_ms {
        a.push(int("keel.ttft_ms", count(ms)));
    }
    if !trace.tags.is_empty() {
        let tags: Vec<&str> = trace.tags.iter().map(String::as_str).collect();
        a.push(strings("keel.tags", &tags));
    }

    let start_ns = u128::try_from(trace.started_at_ms).unwrap_or(0) * 1_000_000;
    let end_ns = start_ns + u128::from(trace.latency_ms) * 1_000_000;
    let trace_id = trace
        .otel_trace_id
        .clone()
        .unwrap_or_else(context::new_trace_id);
    let span_id = trace
        .otel_span_id
        .clone()
        .unwrap_or_else(context::new_span_id);
    let mut span = json!({
        "traceId": trace_id,
        "spanId": span_id,
        "name": format!("{OPERATION} {model}"),
        "kind": SPAN_KIND_CLIENT,
        "startTimeUnixNano": start_ns.to_string(),
        "endTimeUnixNano": end_ns.to_string(),
        "attributes": a,
    });
    if let Some(p) = &trace.otel_parent_span_id {
        span["parentSpanId"] = json!(p);
    }
    if trace.status != TraceStatus::Ok {
        let message = trace.error_message.as_deref().unwrap_or("");
        span["status"] = json!({"code": STATUS_ERROR, "message": message});
    }
    span
}

/// An OTLP/HTTP JSON export request for `spans`, from `service_name`.
pub fn export_body(service_name: &str, spans: Vec<Value>) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                string("service.name", service_name),
                string("service.version", env!("CARGO_PKG_VERSION")),
                string("telemetry.sdk.name", "keel"),
            ]},
            "scopeSpans": [{
                "scope": {"name": "keel", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::money::Nanos;

    fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
        span["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| &a["value"])
    }

    #[test]
    fn a_call_becomes_a_genai_client_span() {
        let mut t = TraceRecord::new(
            "req-1".into(),
            1_700_000_000_000,
            "openai",
            "/v1/chat/completions",
        );
        // A function call: the trace's model is the variant's; the span is the function's.
        t.model_requested = Some("gpt-4o-mini".into());
        t.served_model = Some("gpt-4o-mini-2024-07-18".into());
        t.finish_reason = Some("stop".into());
        t.input_tokens = Some(12);
        t.output_tokens = Some(34);
        t.cost = Some(Nanos(1_500));
        t.latency_ms = 250;
        t.function = Some("support-answer".into());
        t.prompt_version = Some(3);
        t.provider = Some("up".into());
        t.otel_trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        t.otel_span_id = Some("1111111111111111".into());
        t.otel_parent_span_id = Some("00f067aa0ba902b7".into());
        let s = to_span(&t, Some("openai"));
        assert_eq!(s["name"], "chat support-answer");
        assert_eq!(s["kind"], 3);
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(s["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(s["endTimeUnixNano"], "1700000000250000000");
        assert_eq!(
            attr(&s, "gen_ai.operation.name").unwrap()["stringValue"],
            "chat"
        );
        assert_eq!(
            attr(&s, "gen_ai.provider.name").unwrap()["stringValue"],
            "openai"
        );
        assert_eq!(
            attr(&s, "gen_ai.usage.input_tokens").unwrap()["intValue"],
            "12"
        );
        assert_eq!(
            attr(&s, "gen_ai.response.finish_reasons").unwrap()["arrayValue"]["values"][0]
                ["stringValue"],
            "stop"
        );
        assert_eq!(attr(&s, "keel.cost_usd").unwrap()["doubleValue"], 0.0000015);
        assert_eq!(attr(&s, "keel.prompt.version").unwrap()["intValue"], "3");
        assert_eq!(attr(&s, "keel.attempts").unwrap()["intValue"], "1");
        assert!(attr(&s, "error.type").is_none());
        assert!(s.get("status").is_none());
    }

    #[test]
    fn a_failed_call_has_an_error_status_and_type() {
        let mut t = TraceRecord::new("req-2".into(), 1, "openai", "/v1/chat/completions");
        t.status = TraceStatus::Error;
        t.error_class = Some("upstream_timeout".into());
        t.error_message = Some("timed out".into());
        let s = to_span(&t, None);
        assert_eq!(s["name"], "chat unknown");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(
            attr(&s, "error.type").unwrap()["stringValue"],
            "upstream_timeout"
        );
        assert_eq!(s["traceId"].as_str().unwrap().len(), 32);
        assert!(s.get("parentSpanId").is_none());
    }
}
