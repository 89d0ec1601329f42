//! What every request handler can see: the validated config, the model routes with
//! their ready-made provider clients, the trace writer and the metrics.
//!
//! Built once at startup from `Config`; handlers share it through an `Arc` and never
//! lock it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_core::config::{Capture, Config, ModelConfig, ProviderKind};
use keel_providers::{anthropic, mock, openai, Provider};
use keel_store::TraceWriter;

use crate::metrics::{Metrics, ModelMetrics};
use crate::registry::Registry;

/// Metric label for requests naming a model that is not configured.
pub const UNKNOWN_MODEL: &str = "(unknown)";
/// Metric label for requests that failed before a model was read.
pub const NO_MODEL: &str = "(none)";

/// A configured model, ready to call.
pub struct ModelRoute {
    pub config: ModelConfig,
    /// Where it is served (at least one); balanced by `config.strategy`. Each has its own
    /// circuit breaker when `config.routing.breaker` is set.
    pub deployments: Vec<crate::balance::Deployment>,
    /// `Deprecation` (RFC 9745) and `Sunset` (RFC 8594) for every response it answers,
    /// when the provider deprecated it: built once here, cloned per response.
    pub lifecycle_headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
}

impl ModelRoute {
    /// The first deployment (the only one for most models).
    pub fn primary(&self) -> &crate::balance::Deployment {
        &self.deployments[0]
    }
}

/// The lifecycle headers a model's responses carry.
fn lifecycle_headers(m: &ModelConfig) -> Vec<(axum::http::HeaderName, axum::http::HeaderValue)> {
    use axum::http::{HeaderName, HeaderValue};
    let Some(l) = &m.lifecycle else {
        return Vec::new();
    };
    [
        ("deprecation", l.deprecation_header()),
        ("sunset", l.sunset_header()),
    ]
    .into_iter()
    .filter_map(|(name, v)| {
        Some((
            HeaderName::from_static(name),
            HeaderValue::from_str(&v?).ok()?,
        ))
    })
    .collect()
}

pub struct AppState {
    pub config: Arc<Config>,
    pub models: HashMap<String, ModelRoute>,
    /// Comma-separated model names, for "model not found" messages.
    pub model_list: String,
    /// Comma-separated function names, for the same messages (a caller may have meant one).
    pub function_list: String,
    pub writer: TraceWriter,
    /// What each function variant serves now (refreshed off the request path).
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    /// Per-model metric handles; keys are the configured model names plus
    /// `UNKNOWN_MODEL` and `NO_MODEL`, so a client's made-up model names never
    /// become metric labels (no unbounded series).
    pub model_metrics: HashMap<String, ModelMetrics>,
    /// Keys, budgets, rate limits, spikes: asked per call (and, through
    /// `wants_downgrade`, by cheapest-variant routing). Inert for eval and replay.
    pub governor: Arc<keel_governance::Governor>,
    /// The store, for the admin endpoints (never touched on the request path).
    pub store: Option<Arc<keel_store::Store>>,
    /// The response cache, when `[cache] enabled`.
    pub cache: Option<crate::pipeline::cache::ResponseCache>,
    pub capture: Capture,
    /// Guardrail policies, compiled, indexed by function, model and key.
    pub guards: crate::guard::Guards,
    pub max_body_bytes: usize,
    /// Request body bytes held at once, across requests (`max_inflight_body_bytes`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    pub body_read_timeout: Duration,
    /// Per function with a shadow: permits for its shadow calls in flight
    /// (`max_concurrent`); a sampled call that finds none is skipped.
    pub shadow_slots: HashMap<String, Arc<tokio::sync::Semaphore>>,
    /// OTLP span export, when `[otel] endpoint` is set (started by `Gateway::start`).
    pub otel: Option<crate::otel::SpanExporter>,
    /// The playground's eval-suite runner (from keel-evals, given by `keel serve`).
    pub suites: Option<Arc<dyn crate::playground::suites::SuiteRunner>>,
    /// "Add to dataset" on the trace and review pages (`keel_evals`, via `keel serve`).
    pub case_drafts: Option<Arc<dyn crate::case_drafts::CaseDrafts>>,
    /// Work that outlives its response: reading an abandoned stream to its end for the
    /// provider's usage (`pipeline::close`). Shutdown waits for it, up to
    /// `shutdown_timeout`.
    pub afterwork: tokio_util::task::TaskTracker,
    /// Cancelled when shutdown stops waiting: afterwork closes with what it has.
    pub stopping: tokio_util::sync::CancellationToken,
    /// The dashboard's sign-in sessions and login throttle (in memory).
    pub sessions: crate::dashboard::Sessions,
    /// Online evals: which finished live calls go to the judges (`keel-online`).
    pub online: crate::online::OnlineSampler,
    /// Stored Responses API responses and their conversations (`conversations.rs`).
    pub conversations: crate::conversations::Conversations,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("provider `{name}`: {message}")]
    Provider { name: String, message: String },
    #[error("{0}")]
    Guardrails(String),
}

/// One HTTP client for all upstreams: a shared connection pool, rustls, keep-alive and
/// the environment's proxies (`keel_providers::client`).
pub fn http_client() -> Result<keel_providers::client::HttpClient, StateError> {
    keel_providers::client::HttpClient::from_env().map_err(StateError::Client)
}

impl AppState {
    /// Whether `model` names a configured function rather than a model.
    pub fn is_function(&self, model: &str) -> bool {
        self.config.functions.contains_key(model)
    }

    pub fn new(
        config: Arc<Config>,
        writer: TraceWriter,
        registry: Arc<Registry>,
    ) -> Result<AppState, StateError> {
        let client = http_client()?;
        let mut providers: HashMap<String, Arc<Provider>> = HashMap::new();
        for (name, p) in &config.providers {
            let api_key = p.kind.api_key();
            let provider = match &p.kind {
                ProviderKind::OpenAi { base_url, api, .. } => Provider::OpenAi(
                    openai::OpenAiProvider::new(client.clone(), base_url, api_key).with_api(*api),
                ),
                ProviderKind::Azure {
                    base_url,
                    api_version,
                    ..
                } => Provider::Azure(openai::OpenAiProvider::azure(
                    client.clone(),
                    base_url,
                    api_version,
                    match (p.kind.bearer_token(), api_key) {
                        (Some(token), _) => openai::Auth::Bearer(token),
                        (None, Some(key)) => openai::Auth::ApiKey(key),
                        (None, None) => openai::Auth::None,
                    },
                )),
                ProviderKind::Gemini { base_url, .. } => Provider::Gemini(
                    keel_providers::gemini::GeminiProvider::new(client.clone(), base_url, api_key),
                ),
                ProviderKind::Anthropic { base_url, .. } => Provider::Anthropic(
                    anthropic::AnthropicProvider::new(client.clone(), base_url.clone(), api_key),
                ),
                ProviderKind::Mock(settings) => {
                    Provider::Mock(mock::MockProvider::new(settings.clone()).map_err(|e| {
                        StateError::Provider {
                            name: name.clone(),
                            message: e.to_string(),
                        }
                    })?)
                }
            };
            providers.insert(name.clone(), Arc::new(provider));
        }
        let metrics = Metrics::new();
        let mut models = HashMap::new();
        for (name, m) in &config.models {
            let many = m.deployments.len() > 1;
            let mut deployments = Vec::with_capacity(m.deployments.len());
            for d in &m.deployments {
                let Some(provider) = providers.get(&d.provider) else {
                    // Unreachable after validation; refuse rather than panic.
                    return Err(StateError::Provider {
                        name: d.provider.clone(),
                        message: "not configured".into(),
                    });
                };
                let breaker = m.routing.breaker.map(|settings| {
                    let label = if many {
                        format!("{name}@{}/{}", d.provider, d.upstream_model)
                    } else {
                        name.clone()
                    };
                    let (gauge, opened) = metrics.for_breaker(&label);
                    crate::breaker::Breaker::new(settings, gauge, opened)
                });
                deployments.push(crate::balance::Deployment::new(
                    d.provider.clone(),
                    provider.clone(),
                    d.upstream_model.clone(),
                    d.weight,
                    d.rpm,
                    breaker,
                ));
            }
            if deployments.is_empty() {
                return Err(StateError::Provider {
                    name: name.clone(),
                    message: "the model has no deployment".into(),
                });
            }
            models.insert(
                name.clone(),
                ModelRoute {
                    config: m.clone(),
                    deployments,
                    lifecycle_headers: lifecycle_headers(m),
                },
            );
        }
        let model_list = config.models.keys().cloned().collect::<Vec<_>>().join(", ");
        let function_list = config
            .functions
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let mut model_metrics = HashMap::new();
        for m in config.models.values() {
            model_metrics.insert(
                m.name.clone(),
                metrics.for_model(&m.name, m.price.is_some()),
            );
        }
        for name in [UNKNOWN_MODEL, NO_MODEL] {
            model_metrics.insert(name.to_string(), metrics.for_model(name, false));
        }
        let shadow_slots = config
            .functions
            .values()
            .filter_map(|f| {
                let max = f.shadow.as_ref()?.max_concurrent.get();
                let permits = usize::try_from(max).unwrap_or(usize::MAX);
                Some((
                    f.name.clone(),
                    Arc::new(tokio::sync::Semaphore::new(permits)),
                ))
            })
            .collect();
        let online = crate::online::OnlineSampler::new(&config, &metrics.online);
        Ok(AppState {
            online,
            conversations: Default::default(),
            shadow_slots,
            otel: None,
            suites: None,
            case_drafts: None,
            afterwork: tokio_util::task::TaskTracker::new(),
            stopping: tokio_util::sync::CancellationToken::new(),
            sessions: crate::dashboard::Sessions::default(),
            governor: Arc::new(keel_governance::Governor::inert()),
            store: None,
            cache: config
                .cache
                .as_ref()
                .map(crate::pipeline::cache::ResponseCache::new),
            capture: config.gateway.capture,
            guards: crate::guard::Guards::new(&config.guardrails)
                .map_err(StateError::Guardrails)?,
            max_body_bytes: config.gateway.max_body_bytes.get(),
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                config
                    .gateway
                    .max_inflight_body_bytes
                    .get()
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            body_read_timeout: config.gateway.body_read_timeout,
            config,
            models,
            model_list,
            function_list,
            writer,
            registry,
            metrics,
            model_metrics,
        })
    }
}
