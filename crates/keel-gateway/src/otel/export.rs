//! The span exporter: a bounded queue between the request path and a background task
//! that batches spans and POSTs them to the collector as OTLP/HTTP JSON.
//!
//! The request path only builds the span and `try_send`s it: a full queue drops the span
//! and counts it (`keel_otel_spans_dropped_total`), so a slow or dead collector never
//! slows a response. The task sends a batch when it reaches `batch_max` or every
//! `flush_interval`; each POST has a timeout and is retried once (after a network error,
//! 429 or 5xx). On shutdown the task drains the queue and flushes, but gives up on the
//! rest at the first batch that cannot be delivered, so a dead collector cannot hold
//! shutdown for long.

use std::collections::HashMap;
use std::time::Duration;

use keel_core::config::otel::OtelSettings;
use keel_core::config::Config;
use keel_core::trace::TraceRecord;
use prometheus_client::metrics::counter::Counter;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::span;
use crate::metrics::OtelMetrics;

/// Wait before the one retry of a failed POST.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The request path's handle: turns finished traces into queued spans.
pub struct SpanExporter {
    tx: mpsc::Sender<Value>,
    /// Configured provider name → `gen_ai.provider.name`.
    providers: HashMap<String, &'static str>,
    dropped: Counter,
}

impl SpanExporter {
    /// Queue the span of `trace`; never waits (a full queue drops it and counts it).
    pub fn record(&self, trace: &TraceRecord) {
        let provider = trace
            .provider
            .as_deref()
            .and_then(|p| self.providers.get(p).copied());
        if self.tx.try_send(span::to_span(trace, provider)).is_err() {
            self.dropped.inc();
        }
    }
}

/// The background task, for a clean stop.
pub struct ExportTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ExportTask {
    /// Flush what is queued (giving up at the first batch that cannot be delivered) and
    /// stop the task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the OpenTelemetry export task failed");
        }
    }
}

/// Why an export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("[otel] headers: `{0}` cannot be sent as an HTTP header; fix or remove it")]
    Header(String),
    #[error("cannot build the OpenTelemetry HTTP client: {0}")]
    Client(String),
}

/// Start exporting with `settings`: the request path's handle and the task.
pub fn start(
    config: &Config,
    settings: &OtelSettings,
    metrics: OtelMetrics,
) -> Result<(SpanExporter, ExportTask), ExportError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &settings.headers {
        let n =
            HeaderName::try_from(name.as_str()).map_err(|_| ExportError::Header(name.clone()))?;
        let v = HeaderValue::from_str(value).map_err(|_| ExportError::Header(name.clone()))?;
        headers.insert(n, v);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .default_headers(headers)
        .build()
        .map_err(|e| ExportError::Client(e.to_string()))?;
    let providers = config
        .providers
        .iter()
        .map(|(name, p)| (name.clone(), span::provider_name(&p.kind)))
        .collect();
    let (tx, rx) = mpsc::channel(settings.queue_capacity.get());
    let (stop, stop_rx) = oneshot::channel();
    let sender = Sender {
        client,
        url: settings.traces_url.clone(),
        service_name: settings.service_name.clone(),
        metrics: metrics.clone(),
        healthy: true,
    };
    let task = tokio::spawn(run(
        rx,
        stop_rx,
        sender,
        settings.batch_max.get(),
        settings.flush_interval,
    ));
    Ok((
        SpanExporter {
            tx,
            providers,
            dropped: metrics.spans_dropped,
        },
        ExportTask { stop, task },
    ))
}

struct Sender {
    client: reqwest::Client,
    url: String,
    service_name: String,
    metrics: OtelMetrics,
    /// Whether the last batch got through (failures are logged once per outage).
    healthy: bool,
}

enum Outcome {
    Sent,
    /// Worth one more try: the network failed, or the collector is busy or broken.
    Retry(String),
    /// The collector refused the batch; sending it again would not help.
    Refused(String),
}

impl Sender {
    async fn post(&self, body: &[u8]) -> Outcome {
        let resp = self.client.post(&self.url).body(body.to_vec()).send().await;
        match resp {
            Ok(r) if r.status().is_success() => Outcome::Sent,
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                Outcome::Retry(format!("the collector answered {}", r.status()))
            }
            Ok(r) => Outcome::Refused(format!("the collector answered {}", r.status())),
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    /// Send `batch` (one retry); false when it could not be delivered (the spans are
    /// counted as dropped).
    async fn send(&mut self, batch: &mut Vec<Value>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let n = batch.len() as u64;
        let body = span::export_body(&self.service_name, std::mem::take(batch));
        let Ok(bytes) = serde_json::to_vec(&body) else {
            self.metrics.spans_dropped.inc_by(n);
            return false;
        };
        let mut outcome = self.post(&bytes).await;
        if let Outcome::Retry(_) = outcome {
            tokio::time::sleep(RETRY_AFTER).await;
            outcome = self.post(&bytes).await;
        }
        match outcome {
            Outcome::Sent => {
                if !self.healthy {
                    tracing::info!(url = %self.url, "OpenTelemetry export recovered");
                }
                self.healthy = true;
                self.metrics.spans_exported.inc_by(n);
                true
            }
            Outcome::Retry(why) | Outcome::Refused(why) => {
                if self.healthy {
                    tracing::warn!(url = %self.url, error = %why, spans = n, "cannot export spans to the OpenTelemetry collector; they are dropped and counted in keel_otel_spans_dropped_total (check [otel] endpoint)");
                }
                self.healthy = false;
                self.metrics.export_failures.inc();
                self.metrics.spans_dropped.inc_by(n);
                false
            }
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Value>,
    mut stop: oneshot::Receiver<()>,
    mut sender: Sender,
    batch_max: usize,
    flush_interval: Duration,
) {
    let mut batch: Vec<Value> = Vec::with_capacity(batch_max.min(1024));
    let mut tick = tokio::time::interval(flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            span = rx.recv() => match span {
                Some(s) => {
                    batch.push(s);
                    if batch.len() >= batch_max {
                        sender.send(&mut batch).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                sender.send(&mut batch).await;
            }
        }
    }
    // Drain: everything queued goes out, in batches, until one cannot be delivered.
    rx.close();
    let mut delivering = true;
    while let Some(s) = rx.recv().await {
        if !delivering {
            sender.metrics.spans_dropped.inc();
            continue;
        }
        batch.push(s);
        if batch.len() >= batch_max {
            delivering = sender.send(&mut batch).await;
        }
    }
    if delivering {
        sender.send(&mut batch).await;
    } else {
        sender.metrics.spans_dropped.inc_by(batch.len() as u64);
    }
}
