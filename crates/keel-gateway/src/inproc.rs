//! The gateway without HTTP: the same pipeline a live request takes (function variant,
//! prompt rendering, parameters, provider call under the model's deadlines, pricing),
//! called directly by `keel eval` and `keel replay`.
//!
//! It resolves functions once from the store (a fixed snapshot: a run must not change
//! prompt version half-way), and either records each call as a trace with the given
//! [`Origin`] — eval traffic is traced but kept apart from live traffic — or records
//! nothing (replay keeps its own run records).

use std::sync::Arc;
use std::time::Instant;

use keel_core::chat::{ChatRequest, ChatResponse};
use keel_core::config::Config;
use keel_core::trace::{Origin, TraceRecord};
use keel_store::{Store, WriterHandle, WriterOptions};

use crate::error::GatewayError;
use crate::pipeline::account;
use crate::pipeline::drive::{self, Served};
use crate::registry::{PromptOverrides, Registry, Snapshot};
use crate::state::AppState;

/// One call's result: the trace as it would be written, and the reply or the error.
pub struct CallOutcome {
    pub trace: TraceRecord,
    pub result: Result<ChatResponse, GatewayError>,
}

pub struct InProcess {
    app: Arc<AppState>,
    /// Calls are admitted against the (serving gateway's) governor.
    governed: bool,
    origin: Option<Origin>,
    writer: Option<WriterHandle>,
    _scratch: Option<Store>,
}

impl InProcess {
    /// A pipeline over `config`, with functions resolved from `store`. With `record =
    /// Some(origin)`, every call is written to `store` as a trace of that origin; with
    /// `None`, nothing is written.
    pub fn new(config: Config, store: &Store, record: Option<Origin>) -> anyhow::Result<InProcess> {
        InProcess::with_overrides(config, store, record, &PromptOverrides::default())
    }

    /// [`InProcess::new`], with some prompts taken from the prompts folder.
    pub fn with_overrides(
        config: Config,
        store: &Store,
        record: Option<Origin>,
        overrides: &PromptOverrides,
    ) -> anyhow::Result<InProcess> {
        InProcess::governed(config, store, record, overrides, None)
    }

    /// [`InProcess::with_overrides`]; with `governor` (a serving gateway's), its calls are
    /// admitted against that gateway's budgets and rate limits and settled with their cost
    /// — scheduled canaries spend from the same budgets as live traffic.
    pub fn governed(
        config: Config,
        store: &Store,
        record: Option<Origin>,
        overrides: &PromptOverrides,
        governor: Option<Arc<keel_governance::Governor>>,
    ) -> anyhow::Result<InProcess> {
        let config = Arc::new(config);
        let snapshot =
            Snapshot::build_with(store.conn()?.db(), &config, &Snapshot::empty(), overrides)?;
        let (writer, handle, scratch) = match record {
            Some(_) => {
                let (w, h) = keel_store::spawn(store, WriterOptions::default())?;
                (w, h, None)
            }
            None => {
                let scratch = Store::open(":memory:")?;
                let (w, h) = keel_store::spawn(&scratch, WriterOptions::default())?;
                (w, h, Some(scratch))
            }
        };
        let mut app = AppState::new(config, writer, Arc::new(Registry::new(snapshot)))?;
        let governed = governor.is_some();
        if let Some(g) = governor {
            app.governor = g;
        }
        Ok(InProcess {
            governed,
            app: Arc::new(app),
            origin: record,
            writer: Some(handle),
            _scratch: scratch,
        })
    }

    /// The functions as resolved for this run.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.app.registry.current()
    }

    pub fn config(&self) -> &Config {
        &self.app.config
    }

    /// The pipeline's state, for callers that run calls of their own through it (an
    /// online eval's backfill judges with [`call_through`]).
    pub fn app(&self) -> Arc<AppState> {
        self.app.clone()
    }

    /// Run `req` (never streamed) through the pipeline; `variant` is the
    /// `x-keel-variant` override for a function call. `tags` go on the trace.
    pub async fn call(
        &self,
        req: ChatRequest,
        variant: Option<&str>,
        tags: &[String],
    ) -> CallOutcome {
        call_inner(
            &self.app,
            self.origin,
            req,
            variant,
            tags,
            None,
            self.governed,
        )
        .await
    }

    /// Drain the trace queue (blocking; call from a blocking context at the end).
    pub fn finish(mut self) -> u64 {
        self.writer.take().map_or(0, |w| w.shutdown().written_total)
    }
}

/// Run `req` (never streamed) through `app`'s pipeline as a call of `origin`, without
/// HTTP: `keel eval` and `keel replay` through [`InProcess`], and an online eval's judge
/// on the live gateway (`origin = Judge`, `parent_id` = the judged call). With `origin =
/// None` nothing is recorded. The response cache is never read or filled: these calls
/// measure the upstream.
pub async fn call_through(
    app: &AppState,
    origin: Option<Origin>,
    req: ChatRequest,
    variant: Option<&str>,
    tags: &[String],
    parent_id: Option<String>,
) -> CallOutcome {
    call_inner(app, origin, req, variant, tags, parent_id, false).await
}

/// [`call_through`]; `governed`: admitted against `app`'s budgets and rate limits, the
/// reservation settled with the call's cost.
async fn call_inner(
    app: &AppState,
    origin: Option<Origin>,
    mut req: ChatRequest,
    variant: Option<&str>,
    tags: &[String],
    parent_id: Option<String>,
    governed: bool,
) -> CallOutcome {
    let started = Instant::now();
    let endpoint = match origin {
        Some(Origin::Eval) => "eval",
        Some(Origin::Replay) | None => "replay",
        Some(Origin::Shadow) => "shadow",
        Some(Origin::Judge) => "judge",
        Some(Origin::Canary) => "canary",
        Some(Origin::Live) => "/v1/chat/completions",
    };
    let mut trace = TraceRecord::new(
        uuid::Uuid::now_v7().to_string(),
        drive::now_ms(),
        "openai",
        endpoint,
    );
    trace.origin = origin.unwrap_or(Origin::Replay);
    trace.tags = tags.to_vec();
    trace.parent_id = parent_id;
    if let Ok(json) = serde_json::to_string(&req) {
        trace.input = Some(json);
    }
    req.stream = false;
    req.stream_options = None;
    let opts = drive::CallOptions {
        variant,
        bypass_cache: true,
        key: None,
        registry: None,
    };
    let mut admission = crate::pipeline::admit::Governed::default();
    let gov = governed.then_some(&mut admission);
    let result = match drive::run(app, req, opts, &mut trace, gov).await {
        Ok(Served::Whole { resp, .. }) => Ok(resp),
        Ok(Served::Stream(..)) => Err(GatewayError::Internal(
            "asked for a whole reply but got a stream".into(),
        )),
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        account::fail(&mut trace, e);
    }
    trace.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Some(ticket) = admission.ticket.take() {
        // As a live call settles (pipeline/account.rs): the cost, and the tokens if known.
        let tokens = match (trace.input_tokens, trace.output_tokens) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
        };
        ticket.settle(trace.cost, tokens);
    }
    if origin.is_some() {
        // Straight to the writer: these calls stay out of the live gateway metrics.
        app.writer.record(trace.clone());
    }
    CallOutcome { trace, result }
}
