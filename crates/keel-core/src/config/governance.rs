//! Governance config: who may call (`[auth]`), where limits are counted (`[limits]`),
//! and what they are (`[[budgets]]`, `[[rate_limits]]`).
//!
//! ```toml
//! [auth]
//! mode = "required"            # "off" (default: no key needed) | "required"
//! admin_key_env = "KEEL_ADMIN_KEY"
//! refresh = "2s"               # a created or revoked key takes effect within this long
//! public_metrics = true        # GET /metrics without the admin key (default: true only with mode = "off")
//! public_models = true         # GET /v1/models without a key (default: true only with mode = "off")
//!
//! [limits]
//! backend = "local"            # "local" (this process) | "redis" (shared by replicas)
//! redis_url = "redis://127.0.0.1:6379"
//! key_prefix = "keel:"
//! on_backend_error = "fail_closed"   # or "fail_open" (admit, count, alert)
//! backend_timeout = "250ms"
//! output_reserve_tokens = 4096 # reserved when a request sets no max_tokens
//! input_margin = 0.25          # extra share reserved on estimated (non-OpenAI) input counts
//!
//! [[budgets]]
//! name = "acme-monthly"
//! scope = "tenant=acme"        # global | key | tenant | feature | model, "=value" for one
//! limit_usd = 100
//! window = "month"             # day | week | month | total (UTC calendar)
//! mode = "hard"                # hard (blocks) | soft (alerts only)
//! alert_at = [0.5, 0.8, 1.0]
//! downgrade_at = 0.8           # optional: from here on, function calls take the cheapest variant
//! alert_to = ["log"]
//!
//! [[rate_limits]]
//! scope = "tenant"             # key | tenant | feature | global
//! rpm = 600
//! tpm = 200000
//! ```

use std::collections::{BTreeMap, HashSet};
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigIssue;
use crate::money::Nanos;
use crate::scope::{Scope, ScopeKind, Window};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub mode: Option<String>,
    pub admin_key_env: Option<String>,
    pub refresh: Option<String>,
    pub public_metrics: Option<bool>,
    pub public_models: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub backend: Option<String>,
    pub redis_url: Option<String>,
    pub key_prefix: Option<String>,
    pub on_backend_error: Option<String>,
    pub backend_timeout: Option<String>,
    pub output_reserve_tokens: Option<u32>,
    pub input_margin: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub name: String,
    pub scope: Option<String>,
    pub limit_usd: f64,
    pub window: Option<String>,
    pub mode: Option<String>,
    pub alert_at: Option<Vec<f64>>,
    pub downgrade_at: Option<f64>,
    pub alert_to: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub scope: String,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

/// `[auth] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No key needed (the quickstart); a key that is sent is still checked and used.
    Off,
    /// Every model call needs a valid virtual key.
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// The env var holding the admin key (for `/admin/*` and `/status`).
    pub admin_key_env: String,
    pub refresh: Duration,
    /// `GET /metrics` without the admin key. Default: true with `mode = "off"`, false
    /// with `mode = "required"` (opening it is an explicit choice).
    pub public_metrics: bool,
    /// `GET /v1/models` without a virtual key (or the admin key). Same default.
    pub public_models: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::Off,
            admin_key_env: "KEEL_ADMIN_KEY".into(),
            refresh: Duration::from_secs(2),
            public_metrics: true,
            public_models: true,
        }
    }
}

/// Where budgets and rate limits are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsBackend {
    /// In this process (one gateway).
    Local,
    /// In Redis, with atomic scripts: global across replicas.
    Redis { url: String, prefix: String },
}

/// What happens when the shared backend cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Refuse the call (503 `limits_unavailable`).
    Closed,
    /// Admit the call unlimited, count it and alert.
    Open,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitsSettings {
    pub backend: LimitsBackend,
    pub on_error: FailMode,
    pub timeout: Duration,
    pub output_reserve_tokens: u32,
    pub input_margin: f64,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            backend: LimitsBackend::Local,
            on_error: FailMode::Closed,
            timeout: Duration::from_millis(250),
            output_reserve_tokens: 4096,
            input_margin: 0.25,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetMode {
    Hard,
    Soft,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    pub name: String,
    pub scope: Scope,
    pub limit: Nanos,
    pub window: Window,
    pub mode: BudgetMode,
    /// Shares of the limit (ascending) at which an alert is sent.
    pub alert_at: Vec<f64>,
    pub downgrade_at: Option<f64>,
    pub alert_to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub scope: Scope,
    pub rpm: Option<NonZeroU32>,
    pub tpm: Option<NonZeroU64>,
}

/// The validated governance tables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Governance {
    pub auth: AuthSettings,
    pub limits: LimitsSettings,
    pub budgets: Vec<BudgetConfig>,
    pub rate_limits: Vec<RateLimitConfig>,
}

fn issue(issues: &mut Vec<ConfigIssue>, path: String, message: String, hint: &str) {
    issues.push(ConfigIssue {
        path,
        message,
        hint: (!hint.is_empty()).then(|| hint.to_string()),
    });
}

/// A positive duration, or `default` (with an issue) when it is not one.
pub(crate) fn duration(
    issues: &mut Vec<ConfigIssue>,
    path: &str,
    value: Option<&str>,
    default: Duration,
) -> Duration {
    let Some(v) = value else { return default };
    match humantime::parse_duration(v) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            issue(
                issues,
                path.into(),
                "must be greater than zero".into(),
                "e.g. \"30s\"",
            );
            default
        }
        Err(e) => {
            issue(
                issues,
                path.into(),
                format!("`{v}` is not a duration: {e}"),
                "write e.g. \"500ms\", \"30s\" or \"2m\"",
            );
            default
        }
    }
}

/// Parse a scope, naming the key path on failure.
pub(crate) fn scope(issues: &mut Vec<ConfigIssue>, path: &str, s: &str) -> Option<Scope> {
    match Scope::parse(s) {
        Ok(sc) => Some(sc),
        Err(e) => {
            issue(
                issues,
                path.into(),
                e.to_string(),
                "use global, key, tenant, feature or model, optionally with =VALUE (e.g. \"tenant=acme\")",
            );
            None
        }
    }
}

/// A scope's `model=` must name a configured model.
pub(crate) fn check_model_scope(
    issues: &mut Vec<ConfigIssue>,
    path: &str,
    sc: &Scope,
    callable: &dyn Fn(&str) -> bool,
) {
    if let (ScopeKind::Model, Some(m)) = (sc.kind, &sc.value) {
        if !callable(m) {
            issue(
                issues,
                path.into(),
                format!("model `{m}` is not configured"),
                "name a [models.*] entry (a function call counts against the model its variant resolves to)",
            );
        }
    }
}

pub(crate) struct RawGovernance<'a> {
    pub auth: &'a RawAuth,
    pub limits: &'a RawLimits,
    pub budgets: &'a [RawBudget],
    pub rate_limits: &'a [RawRateLimit],
}

pub(crate) fn validate_governance(
    raw: RawGovernance<'_>,
    callable: &dyn Fn(&str) -> bool,
    destinations: &dyn Fn(&str) -> bool,
    issues: &mut Vec<ConfigIssue>,
) -> Governance {
    let d = AuthSettings::default();
    let mode = match raw.auth.mode.as_deref().unwrap_or("off") {
        "off" => AuthMode::Off,
        "required" => AuthMode::Required,
        other => {
            issue(
                issues,
                "auth.mode".into(),
                format!("unknown auth mode `{other}`"),
                "use \"off\" or \"required\"",
            );
            AuthMode::Off
        }
    };
    let auth = AuthSettings {
        mode,
        admin_key_env: raw.auth.admin_key_env.clone().unwrap_or(d.admin_key_env),
        refresh: duration(
            issues,
            "auth.refresh",
            raw.auth.refresh.as_deref(),
            d.refresh,
        ),
        // Open by default only when auth is off: under `mode = "required"` each endpoint
        // stays closed unless the config opens it by name.
        public_metrics: raw.auth.public_metrics.unwrap_or(mode == AuthMode::Off),
        public_models: raw.auth.public_models.unwrap_or(mode == AuthMode::Off),
    };
    let limits = validate_limits(raw.limits, issues);
    let mut budgets = Vec::new();
    let mut names = HashSet::new();
    for (i, b) in raw.budgets.iter().enumerate() {
        let path = format!("budgets[{i}]");
        if b.name.trim().is_empty() || !names.insert(b.name.clone()) {
            issue(
                issues,
                format!("{path}.name"),
                format!("budget name `{}` is empty or used twice", b.name),
                "give every budget its own name",
            );
        }
        let Some(sc) = scope(
            issues,
            &format!("{path}.scope"),
            b.scope.as_deref().unwrap_or("global"),
        ) else {
            continue;
        };
        check_model_scope(issues, &format!("{path}.scope"), &sc, callable);
        let limit = match Nanos::from_dollars(b.limit_usd) {
            Some(n) if n.0 > 0 => n,
            _ => {
                issue(
                    issues,
                    format!("{path}.limit_usd"),
                    format!("{} is not a positive amount of dollars", b.limit_usd),
                    "e.g. limit_usd = 100",
                );
                continue;
            }
        };
        let window = match Window::parse(b.window.as_deref().unwrap_or("month")) {
            Some(w) => w,
            None => {
                issue(
                    issues,
                    format!("{path}.window"),
                    format!("unknown window `{}`", b.window.as_deref().unwrap_or("")),
                    "use \"day\", \"week\", \"month\" or \"total\"",
                );
                continue;
            }
        };
        let mode = match b.mode.as_deref().unwrap_or("hard") {
            "hard" => BudgetMode::Hard,
            "soft" => BudgetMode::Soft,
            other => {
                issue(
                    issues,
                    format!("{path}.mode"),
                    format!("unknown budget mode `{other}`"),
                    "use \"hard\" (blocks) or \"soft\" (alerts only)",
                );
                continue;
            }
        };
        let mut alert_at = b.alert_at.clone().unwrap_or_else(|| vec![0.5, 0.8, 1.0]);
        if alert_at
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0 && *s <= 10.0))
        {
            issue(
                issues,
                format!("{path}.alert_at"),
                "every threshold must be a share of the limit above 0 (1.0 = 100%)".into(),
                "e.g. alert_at = [0.5, 0.8, 1.0]",
            );
        }
        alert_at.sort_by(f64::total_cmp);
        alert_at.dedup();
        if let Some(s) = b.downgrade_at {
            if !(s.is_finite() && s > 0.0 && s <= 1.0) {
                issue(
                    issues,
                    format!("{path}.downgrade_at"),
                    format!("{s} is not a share between 0 and 1"),
                    "e.g. downgrade_at = 0.8",
                );
            }
        }
        let alert_to = b.alert_to.clone().unwrap_or_else(|| vec!["log".into()]);
        for to in &alert_to {
            if !destinations(to) {
                issue(
                    issues,
                    format!("{path}.alert_to"),
                    format!("alert destination `{to}` is not configured"),
                    "add [alert_destinations.NAME], or use \"log\"",
                );
            }
        }
        budgets.push(BudgetConfig {
            name: b.name.clone(),
            scope: sc,
            limit,
            window,
            mode,
            alert_at,
            downgrade_at: b.downgrade_at,
            alert_to,
        });
    }
    let mut rate_limits = Vec::new();
    for (i, r) in raw.rate_limits.iter().enumerate() {
        let path = format!("rate_limits[{i}]");
        let Some(sc) = scope(issues, &format!("{path}.scope"), &r.scope) else {
            continue;
        };
        check_model_scope(issues, &format!("{path}.scope"), &sc, callable);
        let rpm = r.rpm.and_then(NonZeroU32::new);
        let tpm = r.tpm.and_then(NonZeroU64::new);
        if rpm.is_none() && tpm.is_none() {
            issue(
                issues,
                path,
                "a rate limit needs rpm or tpm (greater than zero)".into(),
                "e.g. rpm = 600",
            );
            continue;
        }
        rate_limits.push(RateLimitConfig {
            scope: sc,
            rpm,
            tpm,
        });
    }
    Governance {
        auth,
        limits,
        budgets,
        rate_limits,
    }
}

fn validate_limits(raw: &RawLimits, issues: &mut Vec<ConfigIssue>) -> LimitsSettings {
    let d = LimitsSettings::default();
    let backend = match raw.backend.as_deref().unwrap_or("local") {
        "local" => {
            if raw.redis_url.is_some() {
                issue(
                    issues,
                    "limits.redis_url".into(),
                    "redis_url is set but backend is \"local\"".into(),
                    "set backend = \"redis\", or remove redis_url",
                );
            }
            LimitsBackend::Local
        }
        "redis" => {
            let url = raw
                .redis_url
                .clone()
                .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                issue(
                    issues,
                    "limits.redis_url".into(),
                    format!("`{url}` is not a redis:// URL"),
                    "e.g. \"redis://127.0.0.1:6379\"",
                );
            }
            LimitsBackend::Redis {
                url,
                prefix: raw.key_prefix.clone().unwrap_or_else(|| "keel:".into()),
            }
        }
        other => {
            issue(
                issues,
                "limits.backend".into(),
                format!("unknown limits backend `{other}`"),
                "use \"local\" or \"redis\"",
            );
            LimitsBackend::Local
        }
    };
    let on_error = match raw.on_backend_error.as_deref().unwrap_or("fail_closed") {
        "fail_closed" => FailMode::Closed,
        "fail_open" => FailMode::Open,
        other => {
            issue(
                issues,
                "limits.on_backend_error".into(),
                format!("unknown choice `{other}`"),
                "use \"fail_closed\" (refuse calls) or \"fail_open\" (admit them and alert)",
            );
            FailMode::Closed
        }
    };
    let input_margin = raw.input_margin.unwrap_or(d.input_margin);
    if !(input_margin.is_finite() && (0.0..=4.0).contains(&input_margin)) {
        issue(
            issues,
            "limits.input_margin".into(),
            format!("{input_margin} is not a share between 0 and 4"),
            "e.g. 0.25 reserves 25% more than the estimated input tokens",
        );
    }
    let output_reserve_tokens = raw.output_reserve_tokens.unwrap_or(d.output_reserve_tokens);
    if output_reserve_tokens == 0 {
        issue(
            issues,
            "limits.output_reserve_tokens".into(),
            "must be greater than zero".into(),
            "e.g. 4096",
        );
    }
    LimitsSettings {
        backend,
        on_error,
        timeout: duration(
            issues,
            "limits.backend_timeout",
            raw.backend_timeout.as_deref(),
            d.timeout,
        ),
        output_reserve_tokens,
        input_margin,
    }
}

/// A key's own limits, as `keel keys create` takes them (`--budget 10/day`).
pub fn parse_budget_flag(s: &str) -> Result<(Nanos, Window), String> {
    let (amount, window) = s.split_once('/').unwrap_or((s, "month"));
    let amount = amount.trim().trim_start_matches('$');
    let usd: f64 = amount
        .parse()
        .map_err(|_| format!("`{s}`: `{amount}` is not an amount of dollars"))?;
    let nanos = Nanos::from_dollars(usd)
        .filter(|n| n.0 > 0)
        .ok_or_else(|| format!("`{s}`: the amount must be above zero"))?;
    let window = Window::parse(window.trim())
        .ok_or_else(|| format!("`{s}`: window `{window}` is not day, week, month or total"))?;
    Ok((nanos, window))
}

/// The names used by `[[budgets]]`, to check references from alert rules.
pub fn budget_names(budgets: &[BudgetConfig]) -> BTreeMap<&str, &BudgetConfig> {
    budgets.iter().map(|b| (b.name.as_str(), b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_flags_parse() {
        let (n, w) = parse_budget_flag("$10/day").unwrap();
        assert_eq!(n, Nanos::from_dollars(10.0).unwrap());
        assert_eq!(w, Window::Day);
        assert_eq!(parse_budget_flag("2.5").unwrap().1, Window::Month);
        assert!(parse_budget_flag("0/day").is_err());
        assert!(parse_budget_flag("ten/day").unwrap_err().contains("ten"));
        assert!(parse_budget_flag("5/year").unwrap_err().contains("year"));
    }
}
