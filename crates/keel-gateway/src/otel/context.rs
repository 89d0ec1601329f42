//! W3C trace context: reading the caller's `traceparent` header so Keel's span joins the
//! app's trace, and making new trace and span ids when it did not send one.
//!
//! The ids go on the `TraceRecord` (`otel_trace_id`, `otel_span_id`,
//! `otel_parent_span_id`), so the stored trace can be found by the app's trace id and
//! the exported span carries the same ids.

use axum::http::HeaderMap;
use keel_core::trace::TraceRecord;

pub const TRACEPARENT: &str = "traceparent";

/// The parts of a valid `traceparent` Keel uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero.
    pub span_id: String,
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parse `{version}-{trace-id}-{parent-id}-{flags}`. Version `00` must have exactly
/// four fields; a later version may append more (ignored); version `ff`, malformed
/// fields and all-zero ids make the header invalid, as the W3C spec says.
pub fn parse_traceparent(value: &str) -> Option<Parent> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    let rest = parts.next();
    if !lower_hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
        return None;
    }
    if !lower_hex(trace_id, 32) || !lower_hex(span_id, 16) || !lower_hex(flags, 2) {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || span_id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(Parent {
        trace_id: trace_id.to_string(),
        span_id: span_id.to_string(),
    })
}

/// A new random trace id (32 hex digits, never all zero).
pub fn new_trace_id() -> String {
    format!("{:032x}", fastrand::u128(1..))
}

/// A new random span id (16 hex digits, never all zero).
pub fn new_span_id() -> String {
    format!("{:016x}", fastrand::u64(1..))
}

/// Fill the trace's W3C context: the caller's trace (and its span as parent) when it
/// sent a valid `traceparent`; otherwise a new trace when `always` (spans are exported),
/// else none — an id nobody else knows would only take space.
pub fn attach(trace: &mut TraceRecord, headers: &HeaderMap, always: bool) {
    let parent = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    match parent {
        Some(p) => {
            trace.otel_trace_id = Some(p.trace_id);
            trace.otel_parent_span_id = Some(p.span_id);
            trace.otel_span_id = Some(new_span_id());
        }
        None if always => {
            trace.otel_trace_id = Some(new_trace_id());
            trace.otel_span_id = Some(new_span_id());
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_headers_parse_and_invalid_ones_are_ignored() {
        let p =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id, "00f067aa0ba902b7");
        // A future version may carry more fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn attach_uses_the_callers_trace_or_makes_one_only_when_asked() {
        let mut h = HeaderMap::new();
        let mut t = TraceRecord::new("x".into(), 0, "openai", "/v1/chat/completions");
        attach(&mut t, &h, false);
        assert_eq!(t.otel_trace_id, None);
        attach(&mut t, &h, true);
        let id = t.otel_trace_id.clone().unwrap();
        assert!(lower_hex(&id, 32) && lower_hex(t.otel_span_id.as_deref().unwrap(), 16));
        h.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        attach(&mut t, &h, false);
        assert_eq!(
            t.otel_trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(t.otel_parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(t.otel_span_id.as_deref(), Some("00f067aa0ba902b7"));
    }
}
