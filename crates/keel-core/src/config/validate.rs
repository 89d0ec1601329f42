//! Raw config → runtime config: resolve references, parse durations, check ranges,
//! price every model, and collect every problem (not just the first).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use super::error::ConfigIssue;
use super::function::{validate_functions, FunctionConfig};
use super::model::*;
use super::raw::*;
use crate::money::Nanos;
use crate::prices::{ModelPrice, PriceTable};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8100";
pub const DEFAULT_STORE: &str = "keel.db";
/// The environment variable that overrides `[gateway] store` (e.g. a PostgreSQL URL with
/// its password, kept out of the config file).
pub const STORE_ENV: &str = "KEEL_STORE";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// The validated parts of a config, assembled into `Config` by the caller.
pub(crate) struct Validated {
    pub gateway: GatewaySettings,
    pub registry: RegistrySettings,
    pub cache: Option<super::cache::CacheSettings>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub functions: BTreeMap<String, FunctionConfig>,
    pub governance: super::governance::Governance,
    pub alerting: super::alerting::Alerting,
    pub guardrails: Vec<super::guardrails::PolicyConfig>,
    pub otel: Option<super::otel::OtelSettings>,
    pub online_evals: Vec<super::online::OnlineEvalConfig>,
    pub review_queues: Vec<super::review::ReviewQueueConfig>,
    pub canaries: Vec<super::canary::CanaryConfig>,
    pub retention: Option<super::retention::RetentionConfig>,
    pub warnings: Vec<String>,
}

struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>, hint: Option<&str>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        match humantime::parse_duration(v) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.add(path, "must be greater than zero", Some("e.g. \"30s\""));
                default
            }
            Err(e) => {
                self.add(
                    path,
                    format!("`{v}` is not a duration: {e}"),
                    Some("write e.g. \"500ms\", \"30s\" or \"2m\""),
                );
                default
            }
        }
    }

    fn nonzero(&mut self, path: &str, value: Option<u64>, default: usize) -> NonZeroUsize {
        let fallback = NonZeroUsize::new(default).unwrap_or(NonZeroUsize::MIN);
        match value {
            None => fallback,
            Some(v) => match usize::try_from(v).ok().and_then(NonZeroUsize::new) {
                Some(n) => n,
                None => {
                    self.add(
                        path,
                        format!("{v} is out of range"),
                        Some("use a positive integer"),
                    );
                    fallback
                }
            },
        }
    }
}

pub(crate) fn validate(
    mut raw: RawConfig,
    config_dir: &Path,
    prices: &PriceTable,
) -> Result<Validated, Vec<ConfigIssue>> {
    let mut issues = Issues(Vec::new());
    let mut warnings = Vec::new();
    let gateway = validate_gateway(&raw.gateway, config_dir, &mut issues);
    let registry = validate_registry(&raw, &mut issues);
    let cache = {
        let mut found = Vec::new();
        let mut dur = Issues(Vec::new());
        let c = super::cache::validate_cache(
            &raw.cache,
            (
                raw.limits.redis_url.as_deref(),
                raw.limits.key_prefix.as_deref(),
            ),
            &mut |p, v, d| dur.duration(p, v, d),
            &mut found,
        );
        issues.0.extend(dur.0);
        issues.0.extend(found);
        c
    };
    let otel = {
        let mut found = Vec::new();
        let mut dur = Issues(Vec::new());
        let o =
            super::otel::validate_otel(&raw.otel, &mut |p, v, d| dur.duration(p, v, d), &mut found);
        issues.0.extend(dur.0);
        issues.0.extend(found);
        o
    };

    let mut providers = BTreeMap::new();
    for (name, p) in &raw.providers {
        let path = format!("providers.{name}");
        let base_url = |default: &str, issues: &mut Issues| {
            let url = p.base_url.clone().unwrap_or_else(|| default.to_string());
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                issues.add(
                    format!("{path}.base_url"),
                    format!("`{url}` is not an http(s) URL"),
                    Some("e.g. \"http://127.0.0.1:18080/v1\""),
                );
            }
            if url_has_credentials(&url) {
                issues.add(
                    format!("{path}.base_url"),
                    CREDENTIALS_IN_URL,
                    Some("remove them and give the key in api_key_env"),
                );
            }
            url.trim_end_matches('/').to_string()
        };
        let kind = match p.kind.as_str() {
            "openai" => ProviderKind::OpenAi {
                base_url: base_url("https://api.openai.com/v1", &mut issues),
                api_key_env: p.api_key_env.clone(),
                api: match p.api.as_deref() {
                    None | Some("chat") => OpenAiApi::Chat,
                    Some("responses") => OpenAiApi::Responses,
                    Some(other) => {
                        issues.add(
                            format!("{path}.api"),
                            format!("unknown API `{other}`"),
                            Some("use \"chat\" (Chat Completions, the default) or \"responses\""),
                        );
                        OpenAiApi::Chat
                    }
                },
            },
            "anthropic" => ProviderKind::Anthropic {
                base_url: base_url("https://api.anthropic.com/v1", &mut issues),
                api_key_env: p.api_key_env.clone(),
            },
            "gemini" => ProviderKind::Gemini {
                base_url: base_url(
                    "https://generativelanguage.googleapis.com/v1beta",
                    &mut issues,
                ),
                api_key_env: p.api_key_env.clone(),
            },
            "azure" => super::azure::validate_azure(p, &path, &mut issues.0),
            "mock" => {
                if p.base_url.is_some() || p.api_key_env.is_some() {
                    issues.add(
                        &path,
                        "a mock provider takes no base_url or api_key_env",
                        Some(
                            "remove them, or use kind = \"openai\" to call a mock server over HTTP",
                        ),
                    );
                }
                let mut settings = p.mock.clone().unwrap_or_default();
                // A rules file is relative to the config file, like the store.
                if let Some(rules) = settings.rules.as_mut() {
                    if Path::new(rules.as_str()).is_relative() {
                        *rules = config_dir
                            .join(rules.as_str())
                            .to_string_lossy()
                            .into_owned();
                    }
                }
                for (field, rate) in [
                    ("rate_429", settings.rate_429),
                    ("rate_500", settings.rate_500),
                    ("rate_timeout", settings.rate_timeout),
                    ("rate_cut", settings.rate_cut),
                ] {
                    if !(0.0..=1.0).contains(&rate) {
                        issues.add(
                            format!("{path}.mock.{field}"),
                            format!("{rate} is not a share between 0 and 1"),
                            Some("e.g. 0.05 for 5%"),
                        );
                    }
                }
                ProviderKind::Mock(settings)
            }
            other => {
                issues.add(
                    format!("{path}.kind"),
                    format!("unknown provider kind `{other}`"),
                    Some("use \"openai\", \"anthropic\", \"gemini\", \"azure\" or \"mock\""),
                );
                continue;
            }
        };
        if !matches!(kind, ProviderKind::Azure { .. }) {
            for (key, present) in [
                ("api_version", p.api_version.is_some()),
                ("bearer_token_env", p.bearer_token_env.is_some()),
            ] {
                if present {
                    issues.add(
                        format!("{path}.{key}"),
                        "only applies to kind = \"azure\"",
                        Some("remove it"),
                    );
                }
            }
        }
        if p.api.is_some() && !matches!(kind, ProviderKind::OpenAi { .. }) {
            issues.add(
                format!("{path}.api"),
                "only applies to kind = \"openai\"",
                Some("remove it"),
            );
        }
        if p.mock.is_some() && !matches!(kind, ProviderKind::Mock(_)) {
            issues.add(
                format!("{path}.mock"),
                "mock settings on a provider that is not kind = \"mock\"",
                Some("remove the [mock] table"),
            );
        }
        if let Some(env) = p.api_key_env.as_deref() {
            if std::env::var(env).map(|v| v.is_empty()).unwrap_or(true) {
                warnings.push(format!("{path}.api_key_env: environment variable {env} is not set; calls will be sent without a key"));
            }
        }
        providers.insert(
            name.clone(),
            ProviderConfig {
                name: name.clone(),
                kind,
            },
        );
    }

    let mut models = BTreeMap::new();
    for (name, m) in &raw.models {
        let path = format!("models.{name}");
        let (deployments, strategy) =
            super::deploy::validate_deployments(name, m, &raw.providers, &mut issues.0);
        let Some(primary) = deployments.first().cloned() else {
            continue;
        };
        let upstream_model = primary.upstream_model.clone();
        let price_of = |v: Option<f64>, key: &str, issues: &mut Issues| -> Option<Nanos> {
            let v = v?;
            let n = Nanos::from_dollars(v);
            if n.is_none() {
                issues.add(
                    format!("{path}.{key}"),
                    format!("{v} is not a price"),
                    Some("USD per million tokens, zero or more"),
                );
            }
            n
        };
        let input = price_of(m.input_price_per_mtok, "input_price_per_mtok", &mut issues);
        let output = price_of(
            m.output_price_per_mtok,
            "output_price_per_mtok",
            &mut issues,
        );
        let cached = price_of(
            m.cached_input_price_per_mtok,
            "cached_input_price_per_mtok",
            &mut issues,
        );
        let (price, price_source) = match (input, output) {
            (Some(i), Some(o)) => (
                Some(ModelPrice {
                    input_per_mtok: i,
                    output_per_mtok: o,
                    cached_input_per_mtok: cached,
                }),
                PriceSource::Config,
            ),
            (None, None)
                if m.input_price_per_mtok.is_none() && m.output_price_per_mtok.is_none() =>
            {
                match prices.lookup(&upstream_model) {
                    Some(mut p) => {
                        if cached.is_some() {
                            p.cached_input_per_mtok = cached;
                        }
                        (
                            Some(p),
                            PriceSource::Builtin {
                                as_of: prices.as_of.clone(),
                            },
                        )
                    }
                    None => {
                        warnings.push(format!("{path}: no price known for upstream model `{upstream_model}`; its calls will be recorded as unpriced (set input_price_per_mtok and output_price_per_mtok)"));
                        (None, PriceSource::Unpriced)
                    }
                }
            }
            _ => {
                if m.input_price_per_mtok.is_some() != m.output_price_per_mtok.is_some() {
                    issues.add(
                        &path,
                        "input_price_per_mtok and output_price_per_mtok must be set together",
                        Some("set both, or neither to use the built-in price table"),
                    );
                }
                (None, PriceSource::Unpriced)
            }
        };
        let timeout = issues.duration(
            &format!("{path}.timeout"),
            m.timeout.as_deref(),
            gateway.request_timeout,
        );
        let first_token_timeout = issues.duration(
            &format!("{path}.first_token_timeout"),
            m.first_token_timeout.as_deref(),
            gateway.first_token_timeout,
        );
        let routing = {
            let mut found = Vec::new();
            let mut dur = Issues(Vec::new());
            let r = super::routing::validate_routing(
                name,
                m,
                &raw.models,
                &mut |p, v, d| dur.duration(p, v, d),
                &mut found,
            );
            issues.0.extend(dur.0);
            issues.0.extend(found);
            r
        };
        let lifecycle = super::model_lifecycle::resolve(
            &path,
            m,
            prices.lookup_lifecycle(&upstream_model),
            &mut issues.0,
        );
        if let Some(w) = lifecycle
            .as_ref()
            .and_then(|l| l.warning(name, &upstream_model, crate::lifecycle::today()))
        {
            warnings.push(w);
        }
        models.insert(
            name.clone(),
            ModelConfig {
                name: name.clone(),
                provider: primary.provider.clone(),
                upstream_model,
                price,
                price_source,
                timeout,
                first_token_timeout,
                routing,
                deployments,
                strategy,
                lifecycle,
            },
        );
    }
    if raw.models.is_empty() {
        warnings.push("no [models.*] are configured: every chat request will get 404".to_string());
    }

    let functions = validate_functions(&raw.functions, &raw.models, &mut issues.0);
    let online_evals = super::online::validate_online_evals(
        &raw.online_evals,
        &raw.functions.keys().cloned().collect(),
        &raw.models,
        &mut issues.0,
    );
    let canaries = super::canary::validate_canaries(&raw.canaries, &raw.models, &mut issues.0);
    let retention = super::retention::validate_retention(&raw.retention, &mut issues.0);
    let review_queues = super::review::validate_review_queues(
        &raw.review_queues,
        &raw.functions.keys().cloned().collect(),
        &raw.models,
        &online_evals,
        &mut issues.0,
    );
    let (governance, mut alerting) = validate_governance_and_alerting(
        &raw,
        &online_evals,
        &functions,
        &review_queues,
        &mut issues.0,
        &mut warnings,
    );
    super::model_alerts::attach_lifecycles(&mut alerting.rules, &models);
    let function_names = raw.functions.keys().cloned().collect();
    let model_names = raw.models.keys().cloned().collect();
    let guardrails = super::guardrails::validate_guardrails(
        std::mem::take(&mut raw.guardrails),
        &function_names,
        &model_names,
        &mut issues.0,
    );

    if issues.0.is_empty() {
        Ok(Validated {
            gateway,
            registry,
            cache,
            providers,
            models,
            functions,
            governance,
            alerting,
            guardrails,
            otel,
            online_evals,
            review_queues,
            canaries,
            retention,
            warnings,
        })
    } else {
        Err(issues.0)
    }
}

fn validate_gateway(g: &RawGateway, config_dir: &Path, issues: &mut Issues) -> GatewaySettings {
    let listen_s = g.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen_s.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            issues.add(
                "gateway.listen",
                format!("`{listen_s}` is not an address:port"),
                Some("e.g. \"127.0.0.1:8100\" or \"0.0.0.0:8100\""),
            );
            SocketAddr::from(([127, 0, 0, 1], 8100))
        }
    };
    // KEEL_STORE overrides the file, so a PostgreSQL password stays out of it.
    let from_env = std::env::var(STORE_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    let store_s = from_env
        .as_deref()
        .or(g.store.as_deref())
        .unwrap_or(DEFAULT_STORE);
    let is_url = store_s.starts_with("postgres://") || store_s.starts_with("postgresql://");
    let store = if is_url || store_s == ":memory:" || Path::new(store_s).is_absolute() {
        store_s.to_string()
    } else {
        config_dir.join(store_s).to_string_lossy().into_owned()
    };
    if store_s.trim().is_empty() {
        issues.add(
            "gateway.store",
            "must not be empty",
            Some("a SQLite file path such as \"keel.db\", \":memory:\", or a PostgreSQL URL \"postgres://user@host:5432/db\""),
        );
    }
    let capture = match g.capture.as_deref().map(Capture::parse) {
        None => Capture::Full,
        Some(Some(c)) => c,
        Some(None) => {
            issues.add(
                "gateway.capture",
                format!(
                    "unknown capture mode `{}`",
                    g.capture.as_deref().unwrap_or_default()
                ),
                Some(Capture::HINT),
            );
            Capture::Full
        }
    };
    let max_body_bytes = issues.nonzero(
        "gateway.max_body_bytes",
        g.max_body_bytes,
        DEFAULT_MAX_BODY_BYTES as usize,
    );
    GatewaySettings {
        listen,
        store,
        capture,
        max_body_bytes,
        request_timeout: issues.duration(
            "gateway.request_timeout",
            g.request_timeout.as_deref(),
            Duration::from_secs(120),
        ),
        first_token_timeout: issues.duration(
            "gateway.first_token_timeout",
            g.first_token_timeout.as_deref(),
            Duration::from_secs(60),
        ),
        body_read_timeout: issues.duration(
            "gateway.body_read_timeout",
            g.body_read_timeout.as_deref(),
            Duration::from_secs(30),
        ),
        trace_queue_capacity: issues.nonzero(
            "gateway.trace_queue_capacity",
            g.trace_queue_capacity,
            65_536,
        ),
        trace_batch_max: issues.nonzero("gateway.trace_batch_max", g.trace_batch_max, 1024),
        header_read_timeout: issues.duration(
            "gateway.header_read_timeout",
            g.header_read_timeout.as_deref(),
            Duration::from_secs(10),
        ),
        idle_timeout: issues.duration(
            "gateway.idle_timeout",
            g.idle_timeout.as_deref(),
            Duration::from_secs(180),
        ),
        max_connections: issues.nonzero("gateway.max_connections", g.max_connections, 10_000),
        max_inflight_body_bytes: issues.nonzero(
            "gateway.max_inflight_body_bytes",
            g.max_inflight_body_bytes,
            256 * 1024 * 1024,
        ),
        shutdown_timeout: issues.duration(
            "gateway.shutdown_timeout",
            g.shutdown_timeout.as_deref(),
            Duration::from_secs(30),
        ),
        version_memory: issues.duration(
            "gateway.version_memory",
            g.version_memory.as_deref(),
            Duration::from_secs(7 * 86_400),
        ),
        worker_threads: g.worker_threads.and_then(|n| {
            let threads = super::model::thread_count(n);
            if threads.is_none() {
                issues.add(
                    "gateway.worker_threads",
                    format!("{n} is out of range"),
                    Some(&format!(
                        "use 1 to {} (or leave it out: one thread per core)",
                        super::model::MAX_WORKER_THREADS
                    )),
                );
            }
            threads
        }),
        trace_full_wait: match g.trace_full_wait.as_deref() {
            None => Duration::from_millis(50),
            Some("0") | Some("0s") | Some("0ms") => Duration::ZERO,
            Some(v) => issues.duration(
                "gateway.trace_full_wait",
                Some(v),
                Duration::from_millis(50),
            ),
        },
    }
}

fn validate_registry(raw: &RawConfig, issues: &mut Issues) -> RegistrySettings {
    let r = &raw.registry;
    let defaults = RegistrySettings::default();
    let refresh = issues.duration("registry.refresh", r.refresh.as_deref(), defaults.refresh);
    let push_on_start = r.push_on_start.unwrap_or(false);
    if push_on_start && raw.prompts.is_none() {
        issues.add(
            "registry.push_on_start",
            "push_on_start is set but no prompts folder is configured",
            Some("add prompts = \"prompts\" at the top of the file, or remove push_on_start"),
        );
    }
    let bootstrap_label = r.bootstrap_label.clone();
    if let Some(l) = &bootstrap_label {
        if l.is_empty()
            || !l
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            issues.add(
                "registry.bootstrap_label",
                format!("`{l}` is not a valid label name"),
                Some("use letters, digits, `.`, `_` and `-`, e.g. \"production\""),
            );
        }
    }
    RegistrySettings {
        refresh,
        push_on_start,
        bootstrap_label,
    }
}

fn validate_governance_and_alerting(
    raw: &RawConfig,
    online_evals: &[super::online::OnlineEvalConfig],
    functions: &BTreeMap<String, super::FunctionConfig>,
    review_queues: &[super::review::ReviewQueueConfig],
    issues: &mut Vec<ConfigIssue>,
    warnings: &mut Vec<String>,
) -> (super::governance::Governance, super::alerting::Alerting) {
    use super::{alerting, governance};
    // `model=` scopes name configured models (the model a call resolves to, functions included).
    let callable = |m: &str| raw.models.contains_key(m);
    let destinations = alerting::validate_destinations(&raw.alert_destinations, issues);
    let gov = governance::validate_governance(
        governance::RawGovernance {
            auth: &raw.auth,
            limits: &raw.limits,
            budgets: &raw.budgets,
            rate_limits: &raw.rate_limits,
        },
        &callable,
        &|d| destinations.contains_key(d),
        issues,
    );
    let spikes = alerting::validate_spikes(&raw.spikes, &destinations, issues);
    let rules = alerting::validate_alerts(
        &raw.alerts,
        &destinations,
        &|b| gov.budgets.iter().any(|x| x.name == b),
        &callable,
        super::alerting::Known {
            online_evals,
            functions,
            review_queues,
        },
        issues,
    );
    if gov.auth.mode == governance::AuthMode::Off {
        if raw.auth.mode.is_none() && !raw.budgets.is_empty() {
            warnings.push("auth is off: budgets and rate limits by key do not apply to callers without a key (set [auth] mode = \"required\" in production)".into());
        }
    } else if std::env::var(&gov.auth.admin_key_env)
        .map(|v| v.is_empty())
        .unwrap_or(true)
    {
        warnings.push(format!("auth.admin_key_env: environment variable {} is not set; admin endpoints (/admin/*, /status) will refuse every request", gov.auth.admin_key_env));
    }
    (
        gov,
        alerting::Alerting {
            spikes,
            destinations,
            rules,
        },
    )
}

/// What a provider's `base_url` with `user:password@` is told (the URL is not echoed).
pub(super) const CREDENTIALS_IN_URL: &str =
    "carries credentials (user:password@host), which Keel does not send";

/// Whether a URL's authority carries `user[:password]@`: such credentials would be sent
/// nowhere by the upstream client and could reach an error, so they are refused.
pub(super) fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    rest.split(['/', '?', '#'])
        .next()
        .is_some_and(|a| a.contains('@'))
}
