//! Replay: send recorded production inputs through a candidate — another variant, the
//! same variant with another prompt version, or with another model — in-process, with
//! the same pipeline a live request takes (variant choice by override, prompt
//! rendering, parameters, provider call, pricing), so the comparison is honest.
//!
//! A candidate that is not a configured variant becomes a synthetic, weight-0 variant
//! of the function (`control@v3`, `control@gpt-4o`) built from the variant that served
//! the recorded call. Replay calls are not production traffic: they are never written
//! to the trace table (the caller stores them as a replay run) and never touch the live
//! gateway's metrics.

use std::sync::Arc;
use std::time::Instant;

use keel_core::chat::ChatRequest;
use keel_core::config::{Capture, Config, PromptRef, VariantConfig};
use keel_core::money::Nanos;
use keel_core::trace::TraceRecord;
use keel_store::{Store, WriterHandle, WriterOptions};
use serde::Serialize;

use crate::error::GatewayError;
use crate::handlers::common::{self, Served};
use crate::pipeline::parse;
use crate::registry::{Registry, Snapshot};
use crate::state::AppState;

/// What to try the recorded inputs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// Another configured variant of the function.
    Variant(String),
    /// The variant that served each call, with this prompt version.
    PromptVersion(i64),
    /// The variant that served each call, on this configured model.
    Model(String),
}

impl Candidate {
    /// The variant name a recorded call made by `base` is replayed on.
    fn variant_for(&self, base: &str) -> String {
        match self {
            Candidate::Variant(v) => v.clone(),
            Candidate::PromptVersion(n) => format!("{base}@v{n}"),
            Candidate::Model(m) => format!("{base}@{m}"),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Candidate::Variant(v) => format!("variant {v}"),
            Candidate::PromptVersion(n) => format!("prompt version {n}"),
            Candidate::Model(m) => format!("model {m}"),
        }
    }
}

/// One replayed call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayOutcome {
    pub variant: Option<String>,
    pub prompt_version: Option<i64>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub output: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost: Option<Nanos>,
    pub unpriced: bool,
    pub latency_ms: u64,
    /// The error class and message when the candidate failed.
    pub error: Option<String>,
}

/// Why a replay cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no function `{0}` in the config; `keel check` lists the configured functions")]
    NoFunction(String),
    #[error("function `{function}` has no variant `{variant}`; its variants are: {known}")]
    NoVariant {
        function: String,
        variant: String,
        known: String,
    },
    #[error(
        "no model `{0}` in the config; a candidate model must be a configured [models.*] name"
    )]
    NoModel(String),
    #[error("the candidate cannot serve: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Setup(#[from] anyhow::Error),
}

/// An in-process pipeline for replaying one function's calls on one candidate.
pub struct Replayer {
    app: Arc<AppState>,
    candidate: Candidate,
    function: String,
    _writer: WriterHandle,
    _scratch: Store,
}

impl Replayer {
    /// Prepare the candidate against `store` (where prompt versions live).
    pub fn new(
        config: &Config,
        store: &Store,
        function: &str,
        candidate: Candidate,
    ) -> Result<Replayer, ReplayError> {
        let mut config = config.clone();
        config.gateway.capture = Capture::Full;
        let f = config
            .functions
            .get_mut(function)
            .ok_or_else(|| ReplayError::NoFunction(function.to_string()))?;
        let known = || f_names(&f.variants);
        let original_len = f.variants.len();
        match &candidate {
            Candidate::Variant(v) => {
                if f.variant(v).is_none() {
                    return Err(ReplayError::NoVariant {
                        function: function.into(),
                        variant: v.clone(),
                        known: known(),
                    });
                }
            }
            Candidate::PromptVersion(_) | Candidate::Model(_) => {
                if let Candidate::Model(m) = &candidate {
                    if !config.models.contains_key(m) {
                        return Err(ReplayError::NoModel(m.clone()));
                    }
                }
                let synthetic: Vec<VariantConfig> = f
                    .variants
                    .iter()
                    .map(|base| {
                        let mut v = base.clone();
                        v.name = candidate.variant_for(&base.name);
                        v.weight = 0;
                        match &candidate {
                            Candidate::PromptVersion(n) => {
                                if let Some(n) =
                                    u32::try_from(*n).ok().and_then(std::num::NonZeroU32::new)
                                {
                                    v.prompt_ref = PromptRef::Version(n);
                                }
                            }
                            Candidate::Model(m) => v.model.clone_from(m),
                            Candidate::Variant(_) => {}
                        }
                        v
                    })
                    .collect();
                f.variants.extend(synthetic);
            }
        }
        let config = Arc::new(config);
        let reader = store.reader().map_err(anyhow::Error::from)?;
        let snapshot =
            Snapshot::build(&reader, &config, &Snapshot::empty()).map_err(anyhow::Error::from)?;
        // A candidate that cannot serve is an error now, not N failed cases.
        let variants = config
            .functions
            .get(function)
            .map_or(&[][..], |f| &f.variants[..]);
        for (i, v) in variants.iter().enumerate() {
            let is_candidate = match &candidate {
                Candidate::Variant(name) => &v.name == name,
                _ => i >= original_len,
            };
            if let (true, Some(Err(why))) = (is_candidate, snapshot.slot(function, i)) {
                return Err(ReplayError::Unavailable(why.to_string()));
            }
        }
        let scratch = Store::open(":memory:").map_err(anyhow::Error::from)?;
        let (writer, handle) =
            keel_store::spawn(&scratch, WriterOptions::default()).map_err(anyhow::Error::from)?;
        let registry = Arc::new(Registry::new(snapshot));
        let app = AppState::new(config, writer, registry).map_err(anyhow::Error::from)?;
        Ok(Replayer {
            app: Arc::new(app),
            candidate,
            function: function.to_string(),
            _writer: handle,
            _scratch: scratch,
        })
    }

    /// Replay one recorded request body, made by `recorded_variant`.
    pub async fn replay(
        &self,
        recorded_input: &str,
        recorded_variant: Option<&str>,
    ) -> ReplayOutcome {
        let started = Instant::now();
        let mut trace = TraceRecord::new(String::new(), common::now_ms(), "openai", "replay");
        let result = self.run(recorded_input, recorded_variant, &mut trace).await;
        let mut out = ReplayOutcome {
            variant: trace.variant.clone(),
            prompt_version: trace.prompt_version,
            model: trace.model_requested.clone(),
            upstream_model: trace.upstream_model.clone(),
            output: None,
            input_tokens: trace.input_tokens,
            output_tokens: trace.output_tokens,
            cost: trace.cost,
            unpriced: trace.unpriced,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error: None,
        };
        match result {
            Ok(()) => out.output = trace.output,
            Err(e) => out.error = Some(format!("{}: {}", e.class(), e.view().message)),
        }
        out
    }

    async fn run(
        &self,
        recorded_input: &str,
        recorded_variant: Option<&str>,
        trace: &mut TraceRecord,
    ) -> Result<(), GatewayError> {
        let mut req: ChatRequest = parse::parse_json(recorded_input.as_bytes())?;
        if req.model != self.function {
            // A trace of the function always records the function as its model; anything
            // else was not a call to it.
            req.model.clone_from(&self.function);
        }
        req.stream = false;
        req.stream_options = None;
        let variant = match (&self.candidate, recorded_variant) {
            (Candidate::Variant(v), _) => v.clone(),
            (c, Some(base)) => c.variant_for(base),
            (_, None) => {
                return Err(GatewayError::InvalidRequest(
                    "the recorded call has no variant to base the candidate on".into(),
                ))
            }
        };
        match common::run(&self.app, req, Some(&variant), trace).await? {
            Served::Whole { resp, .. } => {
                if trace.output.is_none() {
                    trace.output = Some(resp.output_text());
                }
                Ok(())
            }
            Served::Stream(_) => Err(GatewayError::Internal(
                "replay asked for a whole reply but got a stream".into(),
            )),
        }
    }
}

fn f_names(variants: &[VariantConfig]) -> String {
    variants
        .iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
