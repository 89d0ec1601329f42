//! The validated, runtime configuration. Code past `Config::load` never re-checks it:
//! references are resolved, durations parsed, ranges checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::function::FunctionConfig;
use super::mock::MockSettings;
use crate::prices::ModelPrice;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from.
    pub source: PathBuf,
    /// The prompts folder, resolved against the config file's folder (`prompts = "..."`).
    pub prompts_dir: Option<PathBuf>,
    /// The eval suites folder (`evals = "..."`, default `evals` beside the config).
    pub evals_dir: PathBuf,
    pub gateway: GatewaySettings,
    pub registry: RegistrySettings,
    /// The response cache; `None` when off (the default).
    pub cache: Option<super::cache::CacheSettings>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    /// Functions by name (`model = "NAME"` in a request), each with its variants.
    pub functions: BTreeMap<String, FunctionConfig>,
    /// Keys, limits, budgets and rate limits.
    pub governance: super::governance::Governance,
    /// Spend-spike detection, alert rules and their destinations.
    pub alerting: super::alerting::Alerting,
    /// Guardrail policies (`[guardrails.policies.*]`), each with what it is attached to.
    pub guardrails: Vec<super::guardrails::PolicyConfig>,
    /// OTLP span export (`[otel]`); `None` when off (no endpoint).
    pub otel: Option<super::otel::OtelSettings>,
    /// `[[online_evals]]`: assertions on a sampled share of live calls.
    pub online_evals: Vec<super::online::OnlineEvalConfig>,
    /// `[[review_queues]]`: where people review a share of real calls.
    pub review_queues: Vec<super::review::ReviewQueueConfig>,
    /// `[[canaries]]`: locked suites run on a schedule against pinned models.
    pub canaries: Vec<super::canary::CanaryConfig>,
    /// `[retention]`: how long traces and their text are kept (`None`: forever).
    pub retention: Option<super::retention::RetentionConfig>,
    /// Non-fatal findings (an unset key env var, unpriced models) for `keel check` and startup.
    pub warnings: Vec<String>,
}

/// What Keel stores of request and response bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// The request JSON and the output text.
    Full,
    /// The request JSON and the output text with every PII and secret detector's
    /// findings replaced by typed placeholders before they are stored.
    Redacted,
    /// Metadata only: no message or output text.
    None,
}

impl Capture {
    pub const HINT: &'static str = "use \"full\", \"redacted\" or \"none\"";

    pub fn parse(s: &str) -> Option<Capture> {
        match s {
            "full" => Some(Capture::Full),
            "redacted" => Some(Capture::Redacted),
            "none" => Some(Capture::None),
            _ => None,
        }
    }

    /// Whether any text is kept.
    pub fn keeps_text(self) -> bool {
        self != Capture::None
    }
}

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// SQLite path (resolved against the config file's folder) or `:memory:`.
    pub store: String,
    pub capture: Capture,
    /// Request bodies above this are refused with 413.
    pub max_body_bytes: NonZeroUsize,
    /// Default total time for one upstream call.
    pub request_timeout: Duration,
    /// Default time to the first streamed chunk.
    pub first_token_timeout: Duration,
    /// A client must finish sending its body within this (slow clients get 408).
    pub body_read_timeout: Duration,
    pub trace_queue_capacity: NonZeroUsize,
    pub trace_batch_max: NonZeroUsize,
    /// When the trace queue is full, how long a trace may wait for room before it is dropped.
    pub trace_full_wait: Duration,
    /// A connection must send a request's whole header within this, counted from the
    /// connection's start or the end of its previous response; else it is closed.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Open client connections at most; past it a new one gets 503 `overloaded` and is
    /// closed.
    pub max_connections: NonZeroUsize,
    /// Request body bytes held at once across all requests; past it a request gets 503
    /// `overloaded` before its body is read.
    pub max_inflight_body_bytes: NonZeroUsize,
    /// After a stop signal, in-flight work (and streams read for their usage) gets this
    /// long; then it is traced as `shutdown` and the process exits.
    pub shutdown_timeout: Duration,
    /// A model version not seen for this long counts as new when it comes back
    /// (`version_memory`, default 7 days): flapping between versions is not a change.
    pub version_memory: Duration,
    /// Threads serving requests (`keel serve`'s runtime workers); `None`: one per core
    /// (or `TOKIO_WORKER_THREADS`). Fewer threads than cores spend less CPU per call
    /// where the gateway shares a small machine (bench/RESULTS.md, 2026-12-07 13:52).
    pub worker_threads: Option<NonZeroUsize>,
}

/// The most `[gateway] worker_threads` accepts: more threads than this only add
/// switching between them.
pub const MAX_WORKER_THREADS: u64 = 1024;

/// `n` as a worker thread count, when it is one (1 to [`MAX_WORKER_THREADS`]): the one
/// range check for the config key and the environment variable.
pub(crate) fn thread_count(n: u64) -> Option<NonZeroUsize> {
    if n > MAX_WORKER_THREADS {
        return None;
    }
    usize::try_from(n).ok().and_then(NonZeroUsize::new)
}

/// How many threads `keel serve` runs requests on: `[gateway] worker_threads`, else
/// `TOKIO_WORKER_THREADS` (read here so a bad value is an error that names it, not a
/// panic inside the runtime), else `None` (one per core).
pub fn worker_threads(
    configured: Option<NonZeroUsize>,
    env: Option<&std::ffi::OsStr>,
) -> Result<Option<NonZeroUsize>, String> {
    if configured.is_some() {
        return Ok(configured);
    }
    let Some(raw) = env else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    text.trim()
        .parse::<u64>()
        .ok()
        .and_then(thread_count)
        .map(Some)
        .ok_or_else(|| {
            format!(
                "TOKIO_WORKER_THREADS={text:?} is not a thread count: use 1 to \
                 {MAX_WORKER_THREADS}, set [gateway] worker_threads, or unset it for one thread per core"
            )
        })
}

/// `[registry]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// How often a running gateway re-reads prompt labels from the store (a moved label
    /// is served within this long).
    pub refresh: Duration,
    /// `keel serve` pushes the prompts folder at startup (author `keel serve`), like
    /// `keel prompt push`. A convenience for local work and the quickstart; teams push
    /// from CI instead.
    pub push_on_start: bool,
    /// At startup, point this label at the latest version of every prompt that does not
    /// have it yet (never moves an existing label).
    pub bootstrap_label: Option<String>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            refresh: Duration::from_secs(2),
            push_on_start: false,
            bootstrap_label: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    OpenAi {
        base_url: String,
        api_key_env: Option<String>,
        /// The API calls go out on (`api = "chat" | "responses"`).
        api: OpenAiApi,
    },
    Anthropic {
        base_url: String,
        api_key_env: Option<String>,
    },
    /// Google's Gemini API: `base_url` is the API root with its version
    /// (`https://generativelanguage.googleapis.com/v1beta`).
    Gemini {
        base_url: String,
        api_key_env: Option<String>,
    },
    /// Azure OpenAI: `base_url` is the resource endpoint
    /// (`https://RESOURCE.openai.azure.com`); a model's `upstream_model` is its
    /// deployment name.
    Azure {
        base_url: String,
        api_version: String,
        api_key_env: Option<String>,
        bearer_token_env: Option<String>,
    },
    Mock(MockSettings),
}

/// Which of OpenAI's APIs an `openai` provider is called with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OpenAiApi {
    /// `POST {base_url}/chat/completions`.
    #[default]
    Chat,
    /// `POST {base_url}/responses` (stateless: `store: false`, Keel keeps conversations).
    Responses,
}

/// The Azure OpenAI data-plane `api-version` used unless a provider sets one (the latest
/// generally available inference version when this was written).
pub const AZURE_API_VERSION: &str = "2024-10-21";

fn env_value(var: Option<&String>) -> Option<String> {
    var.and_then(|v| std::env::var(v).ok())
        .filter(|k| !k.is_empty())
}

impl ProviderKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::OpenAi { .. } => "openai",
            ProviderKind::Anthropic { .. } => "anthropic",
            ProviderKind::Gemini { .. } => "gemini",
            ProviderKind::Azure { .. } => "azure",
            ProviderKind::Mock(_) => "mock",
        }
    }

    /// The upstream key, read from its environment variable now (never stored in config).
    pub fn api_key(&self) -> Option<String> {
        match self {
            ProviderKind::OpenAi { api_key_env, .. }
            | ProviderKind::Anthropic { api_key_env, .. }
            | ProviderKind::Gemini { api_key_env, .. }
            | ProviderKind::Azure { api_key_env, .. } => env_value(api_key_env.as_ref()),
            ProviderKind::Mock(_) => None,
        }
    }

    /// Azure: the Entra ID token, read from its environment variable now.
    pub fn bearer_token(&self) -> Option<String> {
        match self {
            ProviderKind::Azure {
                bearer_token_env, ..
            } => env_value(bearer_token_env.as_ref()),
            _ => None,
        }
    }
}

/// Where a model's price came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceSource {
    Config,
    /// The built-in table, dated.
    Builtin {
        as_of: String,
    },
    /// No price known: calls are recorded as unpriced.
    Unpriced,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The name clients use (`model` in the request).
    pub name: String,
    pub provider: String,
    /// The pinned id sent upstream.
    pub upstream_model: String,
    pub price: Option<ModelPrice>,
    pub price_source: PriceSource,
    pub timeout: Duration,
    pub first_token_timeout: Duration,
    /// Retries and the fallback chain.
    pub routing: super::routing::Routing,
    /// Where it is served: one deployment, or several balanced by `strategy`.
    /// `provider` and `upstream_model` above are the first deployment's.
    pub deployments: Vec<super::deploy::DeploymentConfig>,
    pub strategy: super::deploy::Strategy,
    /// When the provider deprecates and retires it, and its successor (config over the
    /// built-in table); `None` when nothing is known.
    pub lifecycle: Option<crate::lifecycle::Lifecycle>,
}
