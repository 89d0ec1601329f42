//! The HTTP client every upstream call goes through: hyper's pooled client with rustls
//! (ALPN h2 and HTTP/1.1), the environment's proxies, and errors that never carry a URL.
//!
//! Why not reqwest: on the request path it was 42 of the 81 heap allocations of a proxied
//! call (`bench/profiles/allocations-plain.txt`, 2026-12-07) — a request builder, redirect
//! and retry layers present even with redirects off, the URL converted to a `Uri` and
//! back on every call, header maps cloned, the response wrapped. Here the target is a
//! [`Uri`] parsed once per provider, the auth header a [`HeaderValue`] built once (cloning
//! either shares its bytes), and the response is hyper's own.
//!
//! What reqwest gave that is kept: `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` /
//! `NO_PROXY` from the environment (`connect.rs`), a 10 s connect timeout, a pool of up
//! to 1,024 idle connections per host kept 90 s, `TCP_NODELAY` and TCP keep-alive,
//! HTTP/2 when the server offers it, Mozilla's root certificates, and no redirects
//! followed (an LLM API answers; following a redirect would resend the prompt and its
//! key somewhere else), and a request an HTTP/2 server refused unprocessed
//! (`REFUSED_STREAM`, or a graceful `GOAWAY` that raced it) sent again, at most twice, as
//! reqwest did; hyper itself resends one whose pooled connection closed before it was
//! written. Not kept: `https://` proxies (TLS to the proxy itself; `http://` ones work).

mod connect;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use connect::Connector;

/// How long connecting to an upstream (or its proxy) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a request an HTTP/2 server refused unprocessed is sent again.
const REFUSED_RESENDS: usize = 2;
/// Idle connections kept per upstream host, and for how long.
const MAX_IDLE_PER_HOST: usize = 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A request body: shared bytes, so a refused request can be sent again without a copy.
type RequestBody = Full<Bytes>;

/// One pooled client for all upstreams; cloning shares the pool.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, RequestBody>,
    /// The proxies' matcher when the environment names any (`None`: every call direct).
    proxies: Option<Arc<Matcher>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("proxied", &self.proxies.is_some())
            .finish()
    }
}

impl HttpClient {
    /// A client that uses the proxies the environment names (curl's variables).
    pub fn from_env() -> Result<HttpClient, String> {
        const VARS: [&str; 6] = [
            "ALL_PROXY",
            "all_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
        ];
        let any = VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        HttpClient::with_proxies(any.then(Matcher::from_env))
    }

    /// A client whose calls go through `proxies` (`None`: always direct).
    pub fn with_proxies(proxies: Option<Matcher>) -> Result<HttpClient, String> {
        HttpClient::with_settings(proxies, CONNECT_TIMEOUT)
    }

    fn with_settings(
        proxies: Option<Matcher>,
        connect_timeout: Duration,
    ) -> Result<HttpClient, String> {
        HttpClient::build(proxies, connect_timeout, false)
    }

    /// `http2_only`: HTTP/2 with prior knowledge, also on plain TCP (tests of HTTP/2
    /// behaviour without TLS; providers negotiate it by ALPN).
    fn build(
        proxies: Option<Matcher>,
        connect_timeout: Duration,
        http2_only: bool,
    ) -> Result<HttpClient, String> {
        let proxies = proxies.map(Arc::new);
        let connector = connect::new(proxies.clone(), connect_timeout)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(http2_only)
            .build(connector);
        Ok(HttpClient { client, proxies })
    }

    /// POST `body` to `uri` with `headers`; any status comes back as a [`Response`].
    pub async fn post(
        &self,
        uri: Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let body = Bytes::from(body);
        let mut resends = 0;
        loop {
            let req = self.request(uri.clone(), headers, body.clone());
            match self.client.request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    return Ok(Response {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                    });
                }
                Err(e) if resends < REFUSED_RESENDS && refused_unprocessed(&e) => resends += 1,
                Err(e) => return Err(HttpError::sending(e)),
            }
        }
    }

    fn request(
        &self,
        uri: Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Request<RequestBody> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        let map = req.headers_mut();
        map.reserve(headers.len() + 3);
        for (name, value) in headers {
            map.insert(name.clone(), value.clone());
        }
        // What reqwest sent unless told otherwise.
        map.entry(http::header::ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        if let Some(auth) = self.proxy_auth(&uri) {
            map.insert(http::header::PROXY_AUTHORIZATION, auth);
        }
        *req.uri_mut() = uri;
        req
    }

    /// `Proxy-Authorization` for a plain-HTTP call through a proxy with credentials (an
    /// HTTPS call sends them in its `CONNECT` instead, `connect.rs`).
    fn proxy_auth(&self, uri: &Uri) -> Option<HeaderValue> {
        let proxies = self.proxies.as_ref()?;
        if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
            return None;
        }
        proxies.intercept(uri)?.basic_auth().cloned()
    }
}

/// An upstream's answer: status and headers read, the body still to come.
#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The whole body. A body that arrives in one frame (most answers) is returned as
    /// that frame, not copied; a longer one is joined into one buffer.
    pub async fn bytes(mut self) -> Result<Bytes, HttpError> {
        let mut whole: Option<Vec<u8>> = None;
        let mut first: Option<Bytes> = None;
        while let Some(frame) = self.body.frame().await {
            let Ok(data) = frame.map_err(HttpError::body)?.into_data() else {
                continue; // trailers
            };
            match (&mut whole, first.take()) {
                (Some(buf), _) => buf.extend_from_slice(&data),
                (None, None) if self.body.is_end_stream() => return Ok(data),
                (None, None) => first = Some(data),
                (None, Some(head)) => {
                    let mut buf = Vec::with_capacity(head.len() + data.len());
                    buf.extend_from_slice(&head);
                    buf.extend_from_slice(&data);
                    whole = Some(buf);
                }
            }
        }
        Ok(whole.map(Bytes::from).or(first).unwrap_or_default())
    }

    /// The whole body as text (invalid UTF-8 replaced).
    pub async fn text(self) -> Result<String, HttpError> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The body as it arrives, frame by frame (trailers skipped).
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, HttpError>> + Send + 'static {
        BodyDataStream::new(self.body).map(|r| r.map_err(HttpError::body))
    }
}

/// A transport failure, as text that names what failed and why but never the URL (which
/// could carry credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    what: &'static str,
    cause: String,
}

impl HttpError {
    fn sending(e: hyper_util::client::legacy::Error) -> HttpError {
        let what = if e.is_connect() {
            "connection failed"
        } else {
            "request error"
        };
        HttpError {
            what,
            cause: innermost_cause(&e),
        }
    }

    fn body(e: hyper::Error) -> HttpError {
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "response body error"
        };
        HttpError {
            what,
            cause: innermost_cause(&e),
        }
    }

    /// Whether connecting failed (nothing was sent).
    pub fn is_connect(&self) -> bool {
        self.what == "connection failed"
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cause.is_empty() {
            f.write_str(self.what)
        } else {
            write!(f, "{}: {}", self.what, self.cause)
        }
    }
}

impl std::error::Error for HttpError {}

/// Whether an HTTP/2 server turned the request away before processing it (RFC 9113
/// §8.7): its stream refused, or the connection gracefully closed under it. Safe to send
/// again; nothing of it reached the model.
fn refused_unprocessed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut src = Some(e);
    while let Some(s) = src {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_remote()
                && ((h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM))
                    || (h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR)));
        }
        src = s.source();
    }
    false
}

/// The innermost source says why (refused, reset, DNS, a certificate) without naming
/// the URL; the outer layers only say "client error (Connect)".
fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    cause
}

/// The headers of a JSON API request: `content-type`, and the key (when there is one) in
/// the header the provider reads it from, as a secret value. Built once per provider.
pub fn json_headers(
    key: Option<(HeaderName, &str)>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut headers = vec![(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    if let Some((name, value)) = key {
        headers.push((name, secret_header(value)?));
    }
    Ok(headers)
}

/// A header value that is never logged (keys, tokens), or the reason it cannot be one.
pub fn secret_header(value: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        "the key contains characters a header cannot carry (a newline?)".to_string()
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A URL parsed once for requests, or why it cannot be one. `url` parses it (as a
/// browser would: IDNA, percent-encoding), `http` keeps it in the form requests need.
pub fn parse_uri(url: &str) -> Result<Uri, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid base_url: {e}"))?;
    uri_of(&parsed)
}

/// A parsed URL in the form requests need.
pub fn uri_of(url: &url::Url) -> Result<Uri, String> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "invalid base_url: it carries credentials (user:password@host), which \
                    Keel does not send; give the key in the provider's api_key_env"
                .into(),
        );
    }
    match url.as_str().parse::<Uri>() {
        Ok(u) if u.scheme().is_some() && u.authority().is_some() => Ok(u),
        Ok(_) => Err("invalid base_url: it needs a scheme and a host (https://host/…)".into()),
        Err(e) => Err(format!("invalid base_url: {e}")),
    }
}
