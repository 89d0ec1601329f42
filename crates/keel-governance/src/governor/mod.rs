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
//!
//! Files: this one holds the governor and its keys; [`admit`] the admission of a call;
//! [`spend`] what happens after (spike detection, downgrades, budget use and seeding).

mod admit;
mod spend;

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
use crate::backend::{Backend, BucketSpec, RateSpec};
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
    /// Budget buckets a shared ledger had lost, started again from the store.
    pub reseeded: AtomicU64,
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
    /// The store: what a shared ledger that lost a bucket is re-seeded from, and where
    /// a budget's first refusal in a window is audited (set by the gateway at start).
    store: std::sync::OnceLock<Arc<keel_store::Store>>,
    /// Budget buckets whose first refusal was alerted and audited (bounded).
    refusals_noted: DashMap<String, ()>,
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
            store: std::sync::OnceLock::new(),
            refusals_noted: DashMap::new(),
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

    /// The store budgets are re-seeded from and refusals audited in.
    pub fn set_store(&self, store: Arc<keel_store::Store>) {
        let _ = self.store.set(store);
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

    /// The SHA-256 of the admin key, when one is set: what a dashboard session is bound
    /// to, so a session opened with one key ends when the key changes.
    pub fn admin_digest(&self) -> Option<[u8; 32]> {
        self.admin
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

/// The request's id and 48 random bits. The request id may come from the client's
/// header, so two requests can share it: the random bits keep their reservations apart.
/// Unique, not secret — so from the thread's generator, not a `getrandom` system call
/// per admitted call (bench/RESULTS.md, 2026-12-07 16:51–17:29).
fn reservation_id(request_id: &str) -> String {
    let bits = fastrand::u64(..) & 0xffff_ffff_ffff;
    format!("{request_id}:{bits:012x}")
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
        incident: None,
    }
}
