//! `[otel]`: exporting every call as an OpenTelemetry span to an OTLP/HTTP collector.
//!
//! ```toml
//! [otel]
//! endpoint = "http://127.0.0.1:4318"   # the collector; spans go to {endpoint}/v1/traces
//! headers = { authorization = "Bearer …" }
//! service_name = "keel"                # resource attribute service.name
//! batch_max = 512                      # spans per POST
//! flush_interval = "2s"                # a partial batch is sent after this long
//! queue_capacity = 8192                # spans waiting; past this they are dropped and counted
//! timeout = "10s"                      # one POST (retried once)
//! ```
//!
//! Export is off when there is no `endpoint`. Kept apart from `validate.rs` so the
//! exporter's settings and their checks live in one place.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigIssue;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtel {
    pub endpoint: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub service_name: Option<String>,
    pub batch_max: Option<u64>,
    pub flush_interval: Option<String>,
    pub queue_capacity: Option<u64>,
    pub timeout: Option<String>,
}

/// The validated exporter settings; `None` in `Config` when export is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelSettings {
    /// The full URL spans are POSTed to (`{endpoint}/v1/traces` unless the endpoint
    /// already ends in `/v1/traces`).
    pub traces_url: String,
    /// Extra request headers (e.g. a collector's API key), names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub service_name: String,
    pub batch_max: NonZeroUsize,
    pub flush_interval: Duration,
    pub queue_capacity: NonZeroUsize,
    pub timeout: Duration,
}

/// A header name as HTTP allows it (RFC 9110 token characters).
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value without control characters (tabs allowed).
fn valid_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

pub(crate) fn validate_otel(
    raw: &RawOtel,
    duration: &mut dyn FnMut(&str, Option<&str>, Duration) -> Duration,
    issues: &mut Vec<ConfigIssue>,
) -> Option<OtelSettings> {
    let mut issue = |path: &str, message: String, hint: &str| {
        issues.push(ConfigIssue {
            path: path.to_string(),
            message,
            hint: Some(hint.to_string()),
        })
    };
    let Some(endpoint) = raw.endpoint.as_deref().map(str::trim) else {
        if !raw.headers.is_empty() {
            issue(
                "otel.headers",
                "headers are set but there is no endpoint to send them to".into(),
                "set otel.endpoint (e.g. \"http://127.0.0.1:4318\") or remove [otel]",
            );
        }
        return None;
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        issue(
            "otel.endpoint",
            format!("`{endpoint}` is not an http(s) URL"),
            "the OTLP/HTTP base URL, e.g. \"http://127.0.0.1:4318\" (spans go to /v1/traces)",
        );
    }
    let base = endpoint.trim_end_matches('/');
    let traces_url = if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    };
    let mut headers = BTreeMap::new();
    for (name, value) in &raw.headers {
        if !valid_header_name(name) {
            issue(
                &format!("otel.headers.{name}"),
                format!("`{name}` is not a valid HTTP header name"),
                "use letters, digits and dashes, e.g. \"x-api-key\"",
            );
        }
        if !valid_header_value(value) {
            issue(
                &format!("otel.headers.{name}"),
                "the value has control or non-ASCII characters".into(),
                "write the header value as plain ASCII text",
            );
        }
        headers.insert(name.to_ascii_lowercase(), value.clone());
    }
    let service_name = raw.service_name.clone().unwrap_or_else(|| "keel".into());
    if service_name.trim().is_empty() {
        issue(
            "otel.service_name",
            "must not be empty".into(),
            "e.g. \"keel\" or \"keel-gateway-eu\"",
        );
    }
    let mut positive = |key: &str, v: Option<u64>, default: usize| -> NonZeroUsize {
        let fallback = NonZeroUsize::new(default).unwrap_or(NonZeroUsize::MIN);
        match v {
            None => fallback,
            Some(v) => usize::try_from(v)
                .ok()
                .and_then(NonZeroUsize::new)
                .unwrap_or_else(|| {
                    issue(
                        &format!("otel.{key}"),
                        format!("{v} is out of range"),
                        "use a positive integer",
                    );
                    fallback
                }),
        }
    };
    let batch_max = positive("batch_max", raw.batch_max, 512);
    let queue_capacity = positive("queue_capacity", raw.queue_capacity, 8192);
    let flush_interval = duration(
        "otel.flush_interval",
        raw.flush_interval.as_deref(),
        Duration::from_secs(2),
    );
    let timeout = duration(
        "otel.timeout",
        raw.timeout.as_deref(),
        Duration::from_secs(10),
    );
    Some(OtelSettings {
        traces_url,
        headers,
        service_name,
        batch_max,
        flush_interval,
        queue_capacity,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawOtel) -> (Option<OtelSettings>, Vec<ConfigIssue>) {
        let mut issues = Vec::new();
        let s = validate_otel(
            &raw,
            &mut |_, v, d| {
                v.and_then(|v| humantime::parse_duration(v).ok())
                    .unwrap_or(d)
            },
            &mut issues,
        );
        (s, issues)
    }

    #[test]
    fn off_without_an_endpoint_and_defaults_with_one() {
        assert_eq!(check(RawOtel::default()), (None, vec![]));
        let (s, issues) = check(RawOtel {
            endpoint: Some("http://127.0.0.1:4318/".into()),
            ..Default::default()
        });
        assert!(issues.is_empty(), "{issues:?}");
        let s = s.unwrap();
        assert_eq!(s.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(s.service_name, "keel");
        assert_eq!((s.batch_max.get(), s.queue_capacity.get()), (512, 8192));
        assert_eq!(s.flush_interval, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_are_named_with_their_key() {
        let (_, issues) = check(RawOtel {
            endpoint: Some("collector:4318".into()),
            headers: [("bad name".to_string(), "v".to_string())].into(),
            batch_max: Some(0),
            ..Default::default()
        });
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["otel.endpoint", "otel.headers.bad name", "otel.batch_max"]
        );
    }
}
