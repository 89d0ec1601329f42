//! Who is calling: the `x-keel-*` attribution headers and the request id.

use axum::http::header::{AsHeaderName, HeaderName};
use axum::http::HeaderMap;
use keel_core::trace::TraceRecord;

pub const REQUEST_ID: &str = "x-keel-request-id";

// Looked up by `HeaderName`: a lookup by `&str` parses and classifies the name on every
// call (~350 instructions per header, six per request).
const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID);
const TENANT: HeaderName = HeaderName::from_static("x-keel-tenant");
const FEATURE: HeaderName = HeaderName::from_static("x-keel-feature");
const USER: HeaderName = HeaderName::from_static("x-keel-user");
const SESSION: HeaderName = HeaderName::from_static("x-keel-session");
const TAGS: HeaderName = HeaderName::from_static("x-keel-tags");
/// Longest caller-supplied value we keep (ids, tenants, tags).
const MAX_VALUE: usize = 256;
const MAX_TAGS: usize = 32;

fn header(headers: &HeaderMap, name: impl AsHeaderName) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    if v.is_empty() || v.len() > MAX_VALUE {
        return None;
    }
    Some(v.to_string())
}

/// The caller's request id when it is sane (visible ASCII, ≤ 128 chars), else a new
/// UUIDv7 (time-ordered, so ids sort by arrival).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID_NAME)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// The `x-keel-variant` override, when present.
pub fn variant_override(headers: &HeaderMap) -> Option<String> {
    header(headers, super::function::VARIANT_HEADER)
}

/// Fill the trace's who-fields from the headers.
pub fn attribute(trace: &mut TraceRecord, headers: &HeaderMap) {
    trace.tenant = header(headers, &TENANT);
    trace.feature = header(headers, &FEATURE);
    trace.user = header(headers, &USER);
    trace.session = header(headers, &SESSION);
    if let Some(tags) = header(headers, &TAGS) {
        trace.tags = tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .take(MAX_TAGS)
            .map(str::to_string)
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_fill_the_trace_and_bad_ids_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-keel-tenant", "acme".parse().unwrap());
        h.insert("x-keel-tags", " a, b ,,c ".parse().unwrap());
        h.insert(REQUEST_ID, "req-1".parse().unwrap());
        let mut t = TraceRecord::new("x".into(), 0, "openai", "/v1/chat/completions");
        attribute(&mut t, &h);
        assert_eq!(t.tenant.as_deref(), Some("acme"));
        assert_eq!(t.tags, vec!["a", "b", "c"]);
        assert_eq!(request_id(&h), "req-1");
        h.insert(REQUEST_ID, "has space".parse().unwrap());
        assert_ne!(request_id(&h), "has space");
    }
}
