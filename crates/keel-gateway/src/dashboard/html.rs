//! The dashboard's HTML building blocks: escaping (every value that came from a request,
//! a prompt, an output or the config goes through [`esc`]), the page shell with its
//! navigation, the error page, and small formatters for times, money and durations.
//!
//! Pages are built as plain strings: each piece of markup is a literal, each value is
//! escaped where it is interpolated.

use std::fmt::Write as _;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use keel_core::money::Nanos;

/// Escape text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a value for a URL query or path segment.
pub fn urlenc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An optional value, escaped, or a dash.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "—".to_string(), |v| esc(&v.to_string()))
}

/// Unix ms as `2026-01-02 13:04:05` UTC.
pub fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Nano-dollars as `$0.000123`.
pub fn usd(n: Nanos) -> String {
    format!("${}", n.to_dollar_string())
}

/// Milliseconds as `850 ms` or `2.3 s`.
pub fn ms(v: u64) -> String {
    if v < 10_000 {
        format!("{v} ms")
    } else {
        format!("{:.1} s", v as f64 / 1000.0)
    }
}

/// A posted form's field `k` (the first, as sent), when present.
pub fn form_field<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

/// A share from 0 to 1 as `12.5%`.
pub fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// The navigation entries: (path, label).
const NAV: [(&str, &str); 10] = [
    ("/", "Overview"),
    ("/ui/traces", "Traces"),
    ("/ui/prompts", "Prompts"),
    ("/ui/playground", "Playground"),
    ("/ui/evals", "Evals"),
    ("/ui/functions", "Experiments"),
    ("/ui/models", "Models"),
    ("/ui/incidents", "Incidents"),
    ("/ui/review", "Review"),
    ("/ui/governance", "Governance"),
];

/// A whole page: `title` (plain text, escaped here), the nav with `active` marked, and
/// `body` (already-built HTML).
pub fn shell(title: &str, active: &str, body: &str) -> Html<String> {
    let mut nav = String::new();
    for (href, label) in NAV {
        let class = if href == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{label}</a>");
    }
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Keel</title><link rel=\"stylesheet\" href=\"/ui/style.css\"></head>\
         <body><header><a class=\"brand\" href=\"/\">Keel</a><nav>{nav}</nav>\
         <a class=\"signout\" href=\"/ui/logout\">Sign out</a></header>\
         <main><h1>{title}</h1>\n{body}\n</main></body></html>\n",
        title = esc(title),
    ))
}

/// A table: header cells (plain text) and rows of cells (already HTML).
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", esc(id));
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"empty\">nothing yet</td></tr>",
            headers.len().max(1)
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// Why a page could not be shown, as an HTML page with the right status.
#[derive(Debug)]
pub enum PageError {
    NotFound(String),
    BadRequest(String),
    /// A form post refused (cross-site, or without its token).
    Forbidden(String),
    Internal(String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, "Refused", m),
            PageError::Internal(m) => {
                tracing::warn!(error = %m, "dashboard page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something failed", m)
            }
        };
        let body = format!("<p class=\"error\">{}</p>", esc(&message));
        (status, shell(title, "", &body)).into_response()
    }
}

impl From<keel_store::StoreError> for PageError {
    fn from(e: keel_store::StoreError) -> Self {
        PageError::Internal(e.to_string())
    }
}

impl From<rusqlite::Error> for PageError {
    fn from(e: rusqlite::Error) -> Self {
        PageError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(urlenc("support/answer v1"), "support%2Fanswer%20v1");
    }
}
