//! The configuration exactly as written in `keel.toml`.
//!
//! Every table rejects unknown keys; nothing here is trusted until `validate` turns it
//! into the runtime types of `config::model`. Keep field names in sync with the README's
//! config reference.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::function::RawFunction;
use super::mock::MockSettings;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The prompts folder (prompts as code), relative to this file.
    pub prompts: Option<String>,
    /// The eval suites folder (`evals/<suite>.toml`), relative to this file.
    pub evals: Option<String>,
    #[serde(default)]
    pub gateway: RawGateway,
    #[serde(default)]
    pub registry: RawRegistry,
    #[serde(default)]
    pub cache: super::cache::RawCache,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    /// `[functions.NAME]`: stable names with variants and a traffic split.
    #[serde(default)]
    pub functions: BTreeMap<String, RawFunction>,
    /// Governance: `[auth]`, `[limits]`, `[[budgets]]`, `[[rate_limits]]`.
    #[serde(default)]
    pub auth: super::governance::RawAuth,
    #[serde(default)]
    pub limits: super::governance::RawLimits,
    #[serde(default)]
    pub budgets: Vec<super::governance::RawBudget>,
    #[serde(default)]
    pub rate_limits: Vec<super::governance::RawRateLimit>,
    /// Alerting: `[spikes]`, `[alert_destinations.NAME]`, `[[alerts]]`.
    #[serde(default)]
    pub spikes: super::alerting::RawSpikes,
    #[serde(default)]
    pub alert_destinations: BTreeMap<String, super::alerting::RawDestination>,
    #[serde(default)]
    pub alerts: Vec<super::alerting::RawAlert>,
    /// Guardrail policies: `[guardrails.policies.NAME]`.
    #[serde(default)]
    pub guardrails: super::guardrails::RawGuardrails,
    /// OpenTelemetry export: `[otel]`.
    #[serde(default)]
    pub otel: super::otel::RawOtel,
    /// Online evals: `[[online_evals]]`.
    #[serde(default)]
    pub online_evals: Vec<super::online::RawOnlineEval>,
    /// Human review queues: `[[review_queues]]`.
    #[serde(default)]
    pub review_queues: Vec<super::review::RawReviewQueue>,
    /// Scheduled canary evals: `[[canaries]]`.
    #[serde(default)]
    pub canaries: Vec<super::canary::RawCanary>,
    /// How long traces and their text are kept: `[retention]`.
    #[serde(default)]
    pub retention: super::retention::RawRetention,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub listen: Option<String>,
    pub store: Option<String>,
    /// `"full"` (default), `"redacted"` or `"none"`.
    pub capture: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub request_timeout: Option<String>,
    pub first_token_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub trace_queue_capacity: Option<u64>,
    pub trace_batch_max: Option<u64>,
    pub trace_full_wait: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<u64>,
    pub max_inflight_body_bytes: Option<u64>,
    pub shutdown_timeout: Option<String>,
    /// A model version not seen for this long counts as new when it comes back.
    pub version_memory: Option<String>,
    /// Threads serving requests (the async runtime's workers); default one per core.
    pub worker_threads: Option<u64>,
}

/// `[registry]`: how a running gateway follows prompt versions and labels.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    pub refresh: Option<String>,
    pub push_on_start: Option<bool>,
    pub bootstrap_label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    /// `kind = "azure"`: the data-plane `api-version` (default [`super::model::AZURE_API_VERSION`]).
    pub api_version: Option<String>,
    /// `kind = "azure"`: a Microsoft Entra ID token's environment variable, sent as a
    /// bearer token instead of the `api-key` header.
    pub bearer_token_env: Option<String>,
    /// `kind = "openai"`: which API the upstream is called with, `"chat"` (Chat
    /// Completions, the default) or `"responses"` (the Responses API).
    pub api: Option<String>,
    /// Behaviour of a `kind = "mock"` provider.
    pub mock: Option<MockSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// One deployment's provider; or list `deployments` instead.
    pub provider: Option<String>,
    pub deployments: Option<Vec<super::deploy::RawDeployment>>,
    /// `"weighted"` (default) or `"least_latency"` across deployments.
    pub strategy: Option<String>,
    pub upstream_model: Option<String>,
    pub input_price_per_mtok: Option<f64>,
    pub output_price_per_mtok: Option<f64>,
    pub cached_input_price_per_mtok: Option<f64>,
    pub timeout: Option<String>,
    pub first_token_timeout: Option<String>,
    /// Resilience (see `config::routing`).
    pub retries: Option<u32>,
    pub retry_backoff: Option<String>,
    pub max_retry_wait: Option<String>,
    pub fallbacks: Option<Vec<String>>,
    pub fallback_on: Option<Vec<String>>,
    /// Continue a stream cut mid-way on the chain (see `config::routing`).
    pub resume_streams: Option<bool>,
    pub circuit_breaker: Option<RawBreaker>,
    /// Lifecycle (`YYYY-MM-DD`): override or add to the built-in table.
    pub deprecated: Option<String>,
    pub retires: Option<String>,
    /// The model to move to (a configured model's name, or an upstream id).
    pub successor: Option<String>,
}

/// `[models.NAME.circuit_breaker]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub enabled: Option<bool>,
    pub consecutive_failures: Option<u32>,
    pub failure_rate: Option<f64>,
    pub min_requests: Option<u32>,
    pub window: Option<String>,
    pub cooldown: Option<String>,
}
