//! The in-process test harness: a `keel-mock` HTTP upstream on 127.0.0.1:0, a gateway on
//! 127.0.0.1:0 configured to call it (OpenAI and Anthropic wire formats) and an in-process
//! mock provider, and a store in a fresh tempdir. Every test gets its own ports and
//! tempdir, so tests run in parallel.
//!
//! Helpers cover what every test needs: posting chat requests, reading SSE bodies,
//! shutting down (which drains the trace queue) and reading the traces back.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use keel_core::config::mock::MockSettings;
use keel_core::config::Config;
use keel_core::trace::TraceRecord;
use keel_gateway::{Gateway, StopReport};
use keel_store::{list_traces, Store, TraceFilter};
use serde_json::{json, Value};

/// Prices of the priced models, in nano-dollars per token (0.15 and 0.60 $/Mtok).
pub const INPUT_NANOS_PER_TOKEN: i64 = 150;
pub const OUTPUT_NANOS_PER_TOKEN: i64 = 600;

/// What to vary between harnesses.
#[derive(Default)]
pub struct Options {
    /// Settings of the keel-mock HTTP upstream.
    pub mock: MockSettings,
    /// Extra lines of the `[gateway]` table (e.g. `capture = "none"`).
    pub gateway: String,
    /// Extra TOML appended to the config (more providers and models).
    pub extra: String,
    /// The store (a `postgres://` URL); a fresh `keel.db` in the test's folder when unset.
    pub store: Option<String>,
}

pub struct Harness {
    pub gateway: Gateway,
    /// `http://127.0.0.1:PORT` of the gateway.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the mock upstream.
    pub mock_base: String,
    pub store_path: String,
    pub client: reqwest::Client,
    pub config_text: String,
    _dir: tempfile::TempDir,
}

/// The models every harness configures.
pub const MODELS: [&str; 5] = ["mock-1", "unpriced", "claude-mock", "local", "slow"];

pub fn config_text(mock_addr: SocketAddr, store: &str, opts: &Options) -> String {
    format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
store = "{store}"
{gateway}

[providers.up]
kind = "openai"
base_url = "http://{mock_addr}/v1"

[providers.anth]
kind = "anthropic"
base_url = "http://{mock_addr}/v1"

[providers.inproc]
kind = "mock"

# Priced, on the OpenAI-compatible upstream.
[models.mock-1]
provider = "up"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

# No price in config nor in the built-in table.
[models.unpriced]
provider = "up"
upstream_model = "mock-unpriced-xyz"

# Via the Anthropic wire format, on the same mock server.
[models.claude-mock]
provider = "anth"
upstream_model = "mock-claude"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

# The in-process mock provider.
[models.local]
provider = "inproc"
upstream_model = "mock-local"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

# A short deadline.
[models.slow]
provider = "up"
upstream_model = "mock-1"
timeout = "300ms"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

{extra}
"#,
        gateway = opts.gateway,
        extra = opts.extra,
    )
}

/// A plain client that never goes through a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> Harness {
        Harness::with_extensions(opts, keel_gateway::Extensions::default()).await
    }

    /// [`Harness::with`], with what `keel serve` plugs in (the playground's suite runner).
    pub async fn with_extensions(opts: Options, extensions: keel_gateway::Extensions) -> Harness {
        let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_addr = mock_listener.local_addr().unwrap();
        let settings = opts.mock.clone();
        tokio::spawn(async move {
            if let Err(e) = keel_mock::serve(mock_listener, settings).await {
                eprintln!("mock server stopped: {e}");
            }
        });

        let dir = tempfile::tempdir().unwrap();
        let store_path = opts
            .store
            .clone()
            .unwrap_or_else(|| dir.path().join("keel.db").to_string_lossy().into_owned());
        let text = config_text(mock_addr, &store_path, &opts);
        let config = Config::from_toml(&text, &dir.path().join("keel.toml"))
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = Gateway::start_with(config, listener, extensions)
            .await
            .unwrap();
        let base = format!("http://{}", gateway.addr);
        Harness {
            gateway,
            base,
            mock_base: format!("http://{mock_addr}"),
            store_path,
            client: client(),
            config_text: text,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST JSON to `/v1/chat/completions`.
    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post_json("/v1/chat/completions", body, &[]).await
    }

    /// One user message to `model`: the status, the body and the request id.
    pub async fn ask(&self, model: &str, text: &str) -> (u16, Value, String) {
        let r = self
            .chat(&json!({"model": model, "messages": [{"role": "user", "content": text}]}))
            .await;
        let status = r.status().as_u16();
        let id = request_id(&r);
        (status, r.json().await.unwrap_or(Value::Null), id)
    }

    /// POST JSON to `/v1/messages`.
    pub async fn messages(&self, body: &Value) -> reqwest::Response {
        self.post_json("/v1/messages", body, &[("anthropic-version", "2023-06-01")])
            .await
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// POST raw bytes (as `application/json`) to `path`.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self.get("/metrics").await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// Shut the gateway down (draining the trace queue), then read every trace back,
    /// newest first.
    pub async fn finish(self) -> (StopReport, Vec<TraceRecord>) {
        let report = self.gateway.shutdown().await.unwrap();
        let traces = read_traces(&self.store_path);
        (report, traces)
    }

    /// Shut down, then read back every alert event, newest first (the alert queue is
    /// drained on shutdown).
    pub async fn finish_alerts(self) -> Vec<keel_store::alerts::AlertEvent> {
        self.gateway.shutdown().await.unwrap();
        let store = Store::open(&self.store_path).unwrap();
        keel_store::alerts::list_alert_events(&store.reader().unwrap(), 0, 0).unwrap()
    }
}

/// Every trace in the store at `path`, newest first.
pub fn read_traces(path: &str) -> Vec<TraceRecord> {
    assert!(
        keel_store::sql::is_postgres_url(path) || Path::new(path).exists(),
        "the store {path} was not created"
    );
    let store = Store::open(path).unwrap();
    let conn = store.conn().unwrap();
    list_traces(
        &conn,
        &TraceFilter {
            limit: 0,
            ..TraceFilter::default()
        },
    )
    .unwrap()
}

/// The trace with request id `id`.
pub fn trace<'a>(traces: &'a [TraceRecord], id: &str) -> &'a TraceRecord {
    let found: Vec<_> = traces.iter().filter(|t| t.id == id).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one trace with id {id}, got {}: {traces:#?}",
        found.len()
    );
    found[0]
}

/// A chat request body for `model` with one user message.
pub fn chat_body(model: &str, text: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": text}
        ]
    })
}

/// The same, streamed, optionally asking for the usage chunk.
pub fn stream_body(model: &str, text: &str, include_usage: bool) -> Value {
    let mut body = chat_body(model, text);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// An Anthropic Messages request body.
pub fn messages_body(model: &str, text: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": 256,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": text}]
    });
    if stream {
        body["stream"] = json!(true);
    }
    body
}

/// The request id a response carries.
pub fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-keel-request-id")
        .expect("every response carries x-keel-request-id")
        .to_str()
        .unwrap()
        .to_string()
}

/// The `data:` payloads of an SSE body, in order (`[DONE]` included as is).
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .flat_map(|frame| {
            frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim_start().to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The JSON payloads of an OpenAI SSE body, without `[DONE]`.
pub fn sse_chunks(body: &str) -> Vec<Value> {
    sse_data(body)
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| {
            serde_json::from_str(d).unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {d}"))
        })
        .collect()
}

/// The last non-empty line of an SSE body.
pub fn last_line(body: &str) -> &str {
    body.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

/// Anthropic SSE events: (`event:` name, `data:` JSON), in order.
pub fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut event = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            let value = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {frame}"));
            (event, value)
        })
        .collect()
}

/// The text of an OpenAI stream's content deltas, concatenated.
pub fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|c| c["delta"]["content"].as_str())
        .collect()
}

/// Exact cost in nano-dollars of a priced model's usage (`prompt_tokens`, `completion_tokens`).
pub fn expected_cost_nanos(usage: &Value) -> i64 {
    let p = usage["prompt_tokens"].as_i64().expect("prompt_tokens");
    let c = usage["completion_tokens"]
        .as_i64()
        .expect("completion_tokens");
    p * INPUT_NANOS_PER_TOKEN + c * OUTPUT_NANOS_PER_TOKEN
}

/// Parse a decimal dollar string ("0.0000123") into nano-dollars, exactly.
pub fn dollars_to_nanos(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 9, "more than 9 decimals in {s}");
    let whole: i64 = whole
        .parse()
        .unwrap_or_else(|_| panic!("not a dollar amount: {s}"));
    let frac_nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().unwrap()
    };
    whole * 1_000_000_000 + frac_nanos
}

/// The value of one sample of an OpenMetrics text: `name{labels} value`, where every
/// `(label, value)` given must match (others are ignored). Sums over matching series.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let ok = labels.iter().all(|(k, v)| {
            series_labels
                .split(',')
                .any(|kv| kv == format!("{k}=\"{v}\""))
        });
        if ok {
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad metric value in {line}"));
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// An upstream that records every request body it gets and answers with a fixed OpenAI
/// completion, to check what the gateway forwards. Returns its base URL (`.../v1`) and
/// the recorded bodies.
pub async fn capturing_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let seen2 = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::body::Bytes| {
            let seen = seen2.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push(v);
                axum::Json(json!({
                    "id": "chatcmpl-capture",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "capture-1-2025",
                    "system_fingerprint": "fp_capture",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "captured"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1"), seen)
}

/// Push `text` (a prompt file) as the next version of `support/answer` in the store at
/// `store_path`; returns the version (the existing one when the content is unchanged).
pub fn push_prompt(store_path: &str, text: &str) -> i64 {
    let store = keel_store::Store::open(store_path).unwrap();
    let conn = store.conn().unwrap();
    let p = keel_registry::parse_prompt("support/answer", Path::new("a.toml"), text).unwrap();
    match keel_store::push_version(
        &conn,
        "support/answer",
        &p.content_hash(),
        &p.to_json().to_string(),
        "test",
        "test push",
        None,
    )
    .unwrap()
    {
        keel_store::PushOutcome::Created(v) | keel_store::PushOutcome::Unchanged(v) => v,
    }
}

/// Point `label` of `support/answer` at `version`.
pub fn set_prompt_label(store_path: &str, version: i64, label: &str) {
    let store = keel_store::Store::open(store_path).unwrap();
    let conn = store.conn().unwrap();
    keel_store::set_label(&conn, "support/answer", version, label, "test", "because").unwrap();
}

/// A client that does not follow redirects (to assert on a form's 303).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Harness {
    /// A dashboard page's HTML, asserting it answered 200.
    pub async fn page(&self, path: &str) -> String {
        let resp = self.get(path).await;
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.starts_with("<!doctype html>"), "{path}: {body}");
        body
    }
}
