//! The governor: one object the gateway asks, per call, "who is this?" and "may this
//! call go ahead, and what does it hold?".
//!
//! - [`Governor::authenticate`] checks a presented key against the key table (an
//!   `ArcSwap` snapshot the refresher replaces; no lock, no store I/O);
//! - [`Governor::admit`] applies, in order, spike blocks, rate limits (requests and
//!   tokens per minute, GCRA) and budgets (a reservation of the call's worst case in
//!   every bucket it falls in) and returns an [`Admission`] whose [`Ticket`] settles the
//!   reservation to the real cost when the call ends — or releases it if the ticket is
//!   dropped unsettled (a failure, a disconnect);
//! - [`Governor::observe`] feeds finished live calls to the spike detector;
//! - [`Governor::wants_downgrade`] is the budget / spike hook of cheapest-variant routing.
//!
//! The overshoot of a hard budget is bounded by design: a call is admitted only when
//! `spent + reserved + its worst case ≤ limit`, so the spend can pass the limit only by
//! what calls cost beyond their reservation — zero for OpenAI-family models (exact
//! token counts, output capped at the reserve), and for estimated models at most the
//! input under-count beyond `input_margin` of the calls in flight together.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use keel_core::config::alerting::{SpikeAction, SpikeSettings};
use keel_core::config::governance::{AuthMode, BudgetMode, FailMode, Governance};
use keel_core::money::Nanos;
use keel_core::prices::ModelPrice;
use keel_core::scope::{CallScope, Scope, ScopeKind, Window};
use keel_core::trace::{Origin, TraceRecord};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::alerts::{AlertNotice, AlertSink, AlertState};
use crate::backend::{Acquire, Backend, BucketSpec, RateSpec, Reserve};
use crate::error::{BudgetExhausted, GovError};
use crate::estimate::Estimate;
use crate::gcra::{RateState, Refusal};
use crate::keys::{KeyEntry, KeyTable};
use crate::spikes::Detector;
pub use crate::ticket::Ticket;

/// What a budget bucket is, beyond its counters: for messages and alerts.
#[derive(Debug, Clone)]
pub(crate) struct BucketMeta {
    /// The budget's name, or `key <id>` for a key's own budget.
    pub name: String,
    pub scope: String,
    pub limit: Nanos,
    pub window: Window,
    pub window_label: String,
    pub alert_at: Vec<f64>,
    pub downgrade_at: Option<f64>,
    pub to: Vec<String>,
}

/// A budget's use in its current window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BudgetUse {
    pub budget: String,
    pub scope: String,
    pub window: String,
    pub spent: Nanos,
    pub reserved: Nanos,
    pub limit: Nanos,
    pub hard: bool,
}

impl BudgetUse {
    pub fn share(&self) -> f64 {
        if self.limit.0 == 0 {
            0.0
        } else {
            self.spent.0 as f64 / self.limit.0 as f64
        }
    }
}

/// Which rate limit a header reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    Requests,
    Tokens,
}

/// What a caller may know after admission: the tightest request and token limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateHeaders {
    pub requests: Option<RateState>,
    pub tokens: Option<RateState>,
}

/// A call that was let through.
pub struct Admission {
    pub ticket: Option<Ticket>,
    pub rate: RateHeaders,
    /// Set `max_tokens` to this (the request had none and a hard budget applies).
    pub cap_output: Option<u32>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct GovStats {
    pub backend_errors: AtomicU64,
    pub fail_open_admits: AtomicU64,
    pub spikes: AtomicU64,
}

pub struct Governor {
    cfg: Governance,
    keys: ArcSwap<KeyTable>,
    admin: Option<[u8; 32]>,
    pub(crate) backend: Backend,
    spikes: Option<Detector>,
    sink: arc_swap::ArcSwapOption<AlertSink>,
    /// Budget buckets at or past their `downgrade_at` (bucket id → window end).
    pub(crate) downgraded: DashMap<String, i64>,
    /// Budget buckets seen (for `/admin/budgets`), bounded.
    seen: DashMap<String, (usize, String)>,
    hold: Duration,
    backend_down: AtomicBool,
    pub stats: GovStats,
}

pub(crate) fn now_ms() -> i64 {
    keel_store::prompts::now_ms()
}

const MAX_SEEN: usize = 10_000;

impl Governor {
    /// `hold`: how long a reservation may stay unsettled before it lapses (the longest a
    /// call can take, plus a margin). `admin_key`: the admin key's value, if set.
    pub fn new(
        cfg: Governance,
        spikes: Option<SpikeSettings>,
        backend: Backend,
        admin_key: Option<&str>,
        hold: Duration,
    ) -> Governor {
        Governor {
            admin: admin_key
                .filter(|k| !k.is_empty())
                .map(|k| Sha256::digest(k.as_bytes()).into()),
            cfg,
            keys: ArcSwap::from_pointee(KeyTable::default()),
            backend,
            spikes: spikes.map(Detector::new),
            sink: arc_swap::ArcSwapOption::empty(),
            downgraded: DashMap::new(),
            seen: DashMap::new(),
            hold,
            backend_down: AtomicBool::new(false),
            stats: GovStats::default(),
        }
    }

    /// A governor that lets everything through: no auth, no limits (eval and replay).
    pub fn inert() -> Governor {
        Governor::new(
            Governance::default(),
            None,
            Backend::Local(crate::backend::local::Local::new()),
            None,
            Duration::from_secs(600),
        )
    }

    pub fn config(&self) -> &Governance {
        &self.cfg
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Where alerts go (set once the dispatcher runs).
    pub fn set_sink(&self, sink: AlertSink) {
        self.sink.store(Some(Arc::new(sink)));
    }

    /// Stop sending alerts (shutdown: lets the dispatcher drain and end).
    pub fn clear_sink(&self) {
        self.sink.store(None);
    }

    pub(crate) fn alert(&self, n: AlertNotice) {
        match self.sink.load().as_ref() {
            Some(s) => s.send(n),
            None => tracing::warn!(alert = %n.name, "{}", n.message),
        }
    }

    pub fn replace_keys(&self, table: KeyTable) {
        self.keys.store(Arc::new(table));
    }

    pub fn keys(&self) -> arc_swap::Guard<Arc<KeyTable>> {
        self.keys.load()
    }

    /// Who is calling. `presented` is the bearer token or `x-api-key`, if any. With auth
    /// off, a token that is not a Keel key (an SDK's placeholder) is ignored.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Option<Arc<KeyEntry>>, GovError> {
        let required = self.cfg.auth.mode == AuthMode::Required;
        match presented {
            None if required => Err(GovError::MissingKey),
            None => Ok(None),
            Some(t) if !t.starts_with(crate::keys::PREFIX) && !required => Ok(None),
            Some(t) => self.keys.load().authenticate(t, now_ms()).map(Some),
        }
    }

    /// Admin endpoints: open when auth is off and no admin key is set; otherwise the
    /// admin key, compared in constant time.
    pub fn check_admin(&self, presented: Option<&str>) -> Result<(), GovError> {
        let Some(want) = &self.admin else {
            return if self.cfg.auth.mode == AuthMode::Off {
                Ok(())
            } else {
                Err(GovError::AdminDisabled)
            };
        };
        let given: [u8; 32] = Sha256::digest(presented.unwrap_or("").as_bytes()).into();
        if bool::from(given.ct_eq(want)) {
            Ok(())
        } else {
            Err(GovError::AdminKeyRequired)
        }
    }

    /// Whether a call by `key` can meet any limit at all (else admission is skipped).
    pub fn limits_apply(&self, key: Option<&KeyEntry>) -> bool {
        !self.cfg.budgets.is_empty()
            || !self.cfg.rate_limits.is_empty()
            || self
                .spikes
                .as_ref()
                .is_some_and(|s| s.settings().action == SpikeAction::Block)
            || key.is_some_and(|k| k.budget.is_some() || k.rpm.is_some() || k.tpm.is_some())
    }

    fn spike_scopes(&self, cs: &CallScope<'_>) -> Vec<String> {
        let Some(d) = &self.spikes else {
            return Vec::new();
        };
        d.settings()
            .scopes
            .iter()
            .filter_map(|k| {
                let sc = Scope {
                    kind: *k,
                    value: None,
                };
                sc.applies(cs).map(|v| scope_string(*k, v))
            })
            .collect()
    }

    /// Rate limits, then budgets; see the module doc.
    pub async fn admit(
        self: &Arc<Self>,
        key: Option<&KeyEntry>,
        cs: CallScope<'_>,
        price: Option<ModelPrice>,
        estimate: &(dyn Fn() -> Estimate + Sync),
        request_id: &str,
    ) -> Result<Admission, GovError> {
        let now = now_ms();
        if let Some(d) = &self.spikes {
            if d.settings().action == SpikeAction::Block {
                for s in self.spike_scopes(&cs) {
                    if let Some(until) = d.flagged(&s, now) {
                        return Err(GovError::SpikeBlocked {
                            scope: s,
                            detail: format!("z ≥ {}", d.settings().z),
                            until: rfc3339(until),
                        });
                    }
                }
            }
        }
        let mut est: Option<Estimate> = None;
        let mut get_est = || *est.get_or_insert_with(estimate);

        // Rate limits.
        let mut rates: Vec<(RateSpec, RateKind, String)> = Vec::new();
        if let Some(k) = key {
            if let Some(rpm) = k.rpm {
                rates.push((
                    rate(format!("key:{}|rpm", k.id), rpm.into(), 1),
                    RateKind::Requests,
                    format!("key {}", k.id),
                ));
            }
            if let Some(tpm) = k.tpm {
                let cost = get_est().total_tokens();
                rates.push((
                    rate(format!("key:{}|tpm", k.id), tpm, cost),
                    RateKind::Tokens,
                    format!("key {}", k.id),
                ));
            }
        }
        for (i, r) in self.cfg.rate_limits.iter().enumerate() {
            let Some(v) = r.scope.applies(&cs) else {
                continue;
            };
            let scope = scope_string(r.scope.kind, v);
            if let Some(rpm) = r.rpm {
                rates.push((
                    rate(format!("cfg{i}:{scope}|rpm"), rpm.get().into(), 1),
                    RateKind::Requests,
                    scope.clone(),
                ));
            }
            if let Some(tpm) = r.tpm {
                let cost = get_est().total_tokens();
                rates.push((
                    rate(format!("cfg{i}:{scope}|tpm"), tpm.get(), cost),
                    RateKind::Tokens,
                    scope,
                ));
            }
        }
        let mut headers = RateHeaders::default();
        let mut charged_tokens: Vec<RateSpec> = Vec::new();
        if !rates.is_empty() {
            let specs: Vec<RateSpec> = rates.iter().map(|(s, _, _)| s.clone()).collect();
            match self.backend.acquire(&specs, now.saturating_mul(1000)).await {
                Ok(Acquire::Admitted(states)) => {
                    self.backend_ok();
                    for ((spec, kind, _), st) in rates.iter().zip(states) {
                        let slot = match kind {
                            RateKind::Requests => &mut headers.requests,
                            RateKind::Tokens => {
                                charged_tokens.push(spec.clone());
                                &mut headers.tokens
                            }
                        };
                        if slot.is_none_or(|s| st.remaining < s.remaining) {
                            *slot = Some(st);
                        }
                    }
                }
                Ok(Acquire::Refused { index, why }) => {
                    self.backend_ok();
                    let (spec, kind, scope) = &rates[index];
                    let unit = match kind {
                        RateKind::Requests => "requests",
                        RateKind::Tokens => "tokens",
                    };
                    let limit = format!("{} {unit} per minute", spec.per_minute);
                    return Err(match why {
                        Refusal::Wait(retry_after) => GovError::RateLimited {
                            limit,
                            scope: scope.clone(),
                            retry_after,
                        },
                        Refusal::TooLarge => GovError::TooLargeForLimit {
                            limit,
                            scope: scope.clone(),
                            needed: spec.cost,
                        },
                    });
                }
                Err(e) => self.backend_failed(&e.0)?,
            }
        }

        // Budgets.
        let mut buckets: Vec<BucketSpec> = Vec::new();
        let mut metas: Vec<BucketMeta> = Vec::new();
        for (i, b) in self.cfg.budgets.iter().enumerate() {
            let Some(v) = b.scope.applies(&cs) else {
                continue;
            };
            let span = b.window.span(now);
            let id = format!("cfg:{}|{}|{}", b.name, v, span.label);
            if self.seen.len() < MAX_SEEN {
                self.seen.entry(id.clone()).or_insert((i, v.to_string()));
            }
            buckets.push(BucketSpec {
                id,
                limit: (b.mode == BudgetMode::Hard).then_some(b.limit),
                window_end_ms: span.end_ms,
            });
            metas.push(BucketMeta {
                name: b.name.clone(),
                scope: scope_string(b.scope.kind, v),
                limit: b.limit,
                window: b.window,
                window_label: span.label,
                alert_at: b.alert_at.clone(),
                downgrade_at: b.downgrade_at,
                to: b.alert_to.clone(),
            });
        }
        if let Some((k, (limit, window))) = key.and_then(|k| k.budget.map(|b| (k, b))) {
            let span = window.span(now);
            buckets.push(BucketSpec {
                id: key_bucket(&k.id, &span.label),
                limit: Some(limit),
                window_end_ms: span.end_ms,
            });
            metas.push(BucketMeta {
                name: format!("key {}", k.id),
                scope: format!("key={}", k.id),
                limit,
                window,
                window_label: span.label,
                alert_at: vec![0.8, 1.0],
                downgrade_at: None,
                to: vec!["log".into()],
            });
        }
        let hard = buckets.iter().any(|b| b.limit.is_some());
        let mut reserved = Nanos(0);
        let mut cap_output = None;
        if !buckets.is_empty() {
            if let Some(p) = price {
                let e = get_est();
                let amount = e.cost(&p);
                if hard && e.output_defaulted {
                    cap_output = u32::try_from(e.output_tokens).ok();
                }
                let id = reservation_id(request_id);
                match self
                    .backend
                    .reserve(&buckets, amount, &id, self.hold, now)
                    .await
                {
                    Ok(Reserve::Admitted) => {
                        self.backend_ok();
                        reserved = amount;
                        return Ok(Admission {
                            ticket: Some(Ticket::new(
                                self.clone(),
                                buckets,
                                metas,
                                id,
                                reserved,
                                charged_tokens,
                                e.total_tokens(),
                            )),
                            rate: headers,
                            cap_output,
                        });
                    }
                    Ok(Reserve::Blocked {
                        index,
                        spent,
                        reserved: held,
                    }) => {
                        self.backend_ok();
                        self.give_back_tokens(&charged_tokens, e.total_tokens())
                            .await;
                        let m = &metas[index];
                        return Err(GovError::BudgetExceeded(Box::new(BudgetExhausted {
                            budget: m.name.clone(),
                            scope: m.scope.clone(),
                            window: m.window.as_str().to_string(),
                            spent: spent.saturating_add(held).to_dollar_string(),
                            limit: m.limit.to_dollar_string(),
                            needed: amount.to_dollar_string(),
                        })));
                    }
                    Err(e) => self.backend_failed(&e.0)?,
                }
            }
        }
        let tokens = est.map_or(0, |e| e.total_tokens());
        let ticket = (!buckets.is_empty() || !charged_tokens.is_empty()).then(|| {
            Ticket::new(
                self.clone(),
                buckets,
                metas,
                reservation_id(request_id),
                reserved,
                charged_tokens,
                tokens,
            )
        });
        Ok(Admission {
            ticket,
            rate: headers,
            cap_output,
        })
    }

    fn backend_ok(&self) {
        if self.backend_down.swap(false, Ordering::AcqRel) {
            tracing::info!("the limits backend answers again");
            self.alert(backend_notice(
                AlertState::Resolved,
                "the limits backend answers again".into(),
            ));
        }
    }

    /// Fail closed (refuse) or open (admit, count, alert).
    fn backend_failed(&self, why: &str) -> Result<(), GovError> {
        self.stats.backend_errors.fetch_add(1, Ordering::Relaxed);
        if !self.backend_down.swap(true, Ordering::AcqRel) {
            let policy = match self.cfg.limits.on_error {
                FailMode::Closed => "calls are refused (fail_closed)",
                FailMode::Open => "calls are admitted without limits (fail_open)",
            };
            tracing::error!(error = %why, "the limits backend is unreachable; {policy}");
            self.alert(backend_notice(
                AlertState::Firing,
                format!("the limits backend is unreachable ({why}); {policy}"),
            ));
        }
        match self.cfg.limits.on_error {
            FailMode::Closed => Err(GovError::BackendUnavailable(why.to_string())),
            FailMode::Open => {
                self.stats.fail_open_admits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    async fn give_back_tokens(&self, charged: &[RateSpec], tokens: u64) {
        let now_us = now_ms().saturating_mul(1000);
        for spec in charged {
            let delta = -i64::try_from(tokens).unwrap_or(i64::MAX);
            if let Err(e) = self.backend.adjust(spec, delta, now_us).await {
                tracing::debug!(error = %e, "cannot give tokens back to a rate limit");
            }
        }
    }

    /// Feed a finished call to the spike detector (live, priced calls only).
    pub fn observe(&self, trace: &TraceRecord) {
        let (Some(d), Some(cost)) = (&self.spikes, trace.cost) else {
            return;
        };
        if trace.origin != Origin::Live || cost.0 <= 0 {
            return;
        }
        let cs = trace_scope(trace);
        let now = now_ms();
        for s in self.spike_scopes(&cs) {
            if let Some(spike) = d.observe(&s, cost, now) {
                self.stats.spikes.fetch_add(1, Ordering::Relaxed);
                let st = d.settings();
                let message = format!(
                    "spend this {} is ${} against a normal of ${} (z = {:.1}); action: {} until {}",
                    humantime::format_duration(st.bucket),
                    spike.bucket_spend.to_dollar_string(),
                    spike.mean.to_dollar_string(),
                    spike.z,
                    st.action.as_str(),
                    rfc3339(spike.until_ms)
                );
                self.alert(AlertNotice {
                    source: "spike",
                    name: "spend_spike".into(),
                    scope: s.clone(),
                    state: AlertState::Firing,
                    value: Some(spike.bucket_spend.as_dollars()),
                    threshold: Some(st.z),
                    message,
                    dedupe_key: format!("spike|{s}|{}", spike.until_ms),
                    to: st.alert_to.clone(),
                    repeat: None,
                    at_ms: now,
                });
            }
        }
    }

    /// Should this function call take its cheapest qualifying variant? Yes while a
    /// budget it falls in is past `downgrade_at`, or (action `downgrade`) its scope spikes.
    pub fn wants_downgrade(&self, trace: &TraceRecord) -> bool {
        let cs = trace_scope(trace);
        let now = now_ms();
        if let Some(d) = &self.spikes {
            if d.settings().action == SpikeAction::Downgrade
                && self
                    .spike_scopes(&cs)
                    .iter()
                    .any(|s| d.flagged(s, now).is_some())
            {
                return true;
            }
        }
        if self.downgraded.is_empty() {
            return false;
        }
        self.cfg.budgets.iter().any(|b| {
            b.downgrade_at.is_some()
                && b.scope.applies(&cs).is_some_and(|v| {
                    let id = format!("cfg:{}|{}|{}", b.name, v, b.window.span(now).label);
                    self.downgraded.contains_key(&id)
                })
        })
    }

    /// Seed the budget buckets of the current windows from the store's live spend (at
    /// startup, before serving; blocking).
    pub fn seed_from_store(
        &self,
        conn: &keel_store::Connection,
    ) -> Result<usize, keel_store::StoreError> {
        let now = now_ms();
        let mut n = 0;
        for b in &self.cfg.budgets {
            let span = b.window.span(now);
            for (v, spent) in
                keel_store::spend::spend_by_scope(conn, &b.scope, span.start_ms, span.end_ms)?
            {
                let id = format!("cfg:{}|{}|{}", b.name, v, span.label);
                self.backend.seed(
                    &BucketSpec {
                        id,
                        limit: None,
                        window_end_ms: span.end_ms,
                    },
                    spent,
                );
                n += 1;
            }
        }
        for k in self.keys.load().entries() {
            let Some((_, window)) = k.budget else {
                continue;
            };
            let span = window.span(now);
            let scope = Scope {
                kind: ScopeKind::Key,
                value: Some(k.id.clone()),
            };
            for (_, spent) in
                keel_store::spend::spend_by_scope(conn, &scope, span.start_ms, span.end_ms)?
            {
                let id = key_bucket(&k.id, &span.label);
                self.backend.seed(
                    &BucketSpec {
                        id,
                        limit: None,
                        window_end_ms: span.end_ms,
                    },
                    spent,
                );
                n += 1;
            }
        }
        Ok(n)
    }

    /// The use of budget `name` for scope value `value` ("" for global) now.
    pub async fn budget_use(
        &self,
        name: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<Option<BudgetUse>, String> {
        let Some(b) = self.cfg.budgets.iter().find(|b| b.name == name) else {
            return Ok(None);
        };
        if b.scope.value.as_deref().is_some_and(|v| v != value) {
            return Ok(None);
        }
        let span = b.window.span(now_ms);
        let id = format!("cfg:{}|{}|{}", b.name, value, span.label);
        let (spent, reserved) = self.backend.usage(&[id]).await.map_err(|e| e.0)?[0];
        Ok(Some(BudgetUse {
            budget: b.name.clone(),
            scope: scope_string(b.scope.kind, value),
            window: span.label,
            spent,
            reserved,
            limit: b.limit,
            hard: b.mode == BudgetMode::Hard,
        }))
    }

    /// Every budget bucket of the current windows this gateway has seen (fixed-scope
    /// budgets always), with its live use.
    pub async fn all_budget_use(&self) -> Result<Vec<BudgetUse>, String> {
        let now = now_ms();
        let mut wanted: Vec<(String, String)> = Vec::new();
        for b in &self.cfg.budgets {
            if b.scope.kind == ScopeKind::Global || b.scope.value.is_some() {
                wanted.push((b.name.clone(), b.scope.value.clone().unwrap_or_default()));
            }
        }
        for e in self.seen.iter() {
            let (i, v) = e.value();
            if let Some(b) = self.cfg.budgets.get(*i) {
                if !wanted.iter().any(|(n, x)| n == &b.name && x == v) {
                    wanted.push((b.name.clone(), v.clone()));
                }
            }
        }
        let mut out = Vec::new();
        for (name, v) in wanted {
            if let Some(u) = self.budget_use(&name, &v, now).await? {
                out.push(u);
            }
        }
        out.sort_by(|a, b| (&a.budget, &a.scope).cmp(&(&b.budget, &b.scope)));
        Ok(out)
    }

    /// Housekeeping: forget ended windows (call every minute or so).
    pub fn tick(&self) {
        let now = now_ms();
        self.backend.prune(now);
        self.downgraded.retain(|_, end| *end > now);
    }
}

fn rate(id: String, per_minute: u64, cost: u64) -> RateSpec {
    RateSpec {
        id,
        per_minute,
        cost,
    }
}

fn key_bucket(id: &str, label: &str) -> String {
    format!("key:{id}|{label}")
}

fn scope_string(kind: ScopeKind, v: &str) -> String {
    if kind == ScopeKind::Global {
        "global".into()
    } else {
        format!("{}={v}", kind.as_str())
    }
}

fn trace_scope(t: &TraceRecord) -> CallScope<'_> {
    CallScope {
        key: t.key_id.as_deref(),
        tenant: t.tenant.as_deref(),
        feature: t.feature.as_deref(),
        model: t.model_requested.as_deref(),
    }
}

fn reservation_id(request_id: &str) -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    format!("{request_id}:{}", hex::encode(b))
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn backend_notice(state: AlertState, message: String) -> AlertNotice {
    AlertNotice {
        source: "backend",
        name: "limits_backend".into(),
        scope: "global".into(),
        state,
        value: None,
        threshold: None,
        message,
        dedupe_key: "backend|limits".into(),
        to: vec!["log".into()],
        repeat: Some(Duration::from_secs(600)),
        at_ms: now_ms(),
    }
}
