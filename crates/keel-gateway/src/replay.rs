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

use std::time::Instant;

use keel_core::chat::ChatRequest;
use keel_core::config::{Capture, Config, PromptRef, VariantConfig};
use keel_core::money::Nanos;
use keel_store::Store;
use serde::Serialize;

use crate::inproc::{CallOutcome, InProcess};
use crate::pipeline::parse;

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
    engine: InProcess,
    candidate: Candidate,
    function: String,
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
        let engine = InProcess::new(config, store, None)?;
        // A candidate that cannot serve is an error now, not N failed cases.
        let problem = {
            let snapshot = engine.snapshot();
            let variants = engine
                .config()
                .functions
                .get(function)
                .map_or(&[][..], |f| &f.variants[..]);
            variants.iter().enumerate().find_map(|(i, v)| {
                let is_candidate = match &candidate {
                    Candidate::Variant(name) => &v.name == name,
                    _ => i >= original_len,
                };
                match (is_candidate, snapshot.slot(function, i)) {
                    (true, Some(Err(why))) => Some(why.to_string()),
                    _ => None,
                }
            })
        };
        if let Some(why) = problem {
            return Err(ReplayError::Unavailable(why));
        }
        Ok(Replayer {
            engine,
            candidate,
            function: function.to_string(),
        })
    }

    /// Replay one recorded request body, made by `recorded_variant`.
    pub async fn replay(
        &self,
        recorded_input: &str,
        recorded_variant: Option<&str>,
    ) -> ReplayOutcome {
        let started = Instant::now();
        let failed = |error: String| ReplayOutcome {
            variant: None,
            prompt_version: None,
            model: None,
            upstream_model: None,
            output: None,
            input_tokens: None,
            output_tokens: None,
            cost: None,
            unpriced: false,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error: Some(error),
        };
        let mut req: ChatRequest = match parse::parse_json(recorded_input.as_bytes()) {
            Ok(r) => r,
            Err(e) => return failed(format!("{}: {}", e.class(), e.view().message)),
        };
        // A trace of the function records the function as its model; replay it as one.
        req.model.clone_from(&self.function);
        let variant =
            match (&self.candidate, recorded_variant) {
                (Candidate::Variant(v), _) => v.clone(),
                (c, Some(base)) => c.variant_for(base),
                (_, None) => return failed(
                    "invalid_request: the recorded call has no variant to base the candidate on"
                        .into(),
                ),
            };
        let CallOutcome { trace, result } = self.engine.call(req, Some(&variant), &[]).await;
        ReplayOutcome {
            variant: trace.variant.clone(),
            prompt_version: trace.prompt_version,
            model: trace.model_requested.clone(),
            upstream_model: trace.upstream_model.clone(),
            output: match &result {
                Ok(resp) => trace.output.clone().or_else(|| Some(resp.output_text())),
                Err(_) => None,
            },
            input_tokens: trace.input_tokens,
            output_tokens: trace.output_tokens,
            cost: trace.cost,
            unpriced: trace.unpriced,
            latency_ms: trace.latency_ms,
            error: result
                .err()
                .map(|e| format!("{}: {}", e.class(), e.view().message)),
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
