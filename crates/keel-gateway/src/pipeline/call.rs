//! Resolve the requested model and call its provider under the model's deadlines.
//!
//! A whole call gets the model's total timeout. A stream gets the first-token timeout
//! until its first chunk arrives — and that first chunk is awaited *before* the client
//! is answered, so an upstream that fails early still yields a proper HTTP status
//! (and a later retry/fallback layer can act before any byte reached the client).

use std::time::Instant;

use futures::StreamExt;
use keel_core::chat::{ChatChunk, ChatRequest};
use keel_providers::{ChunkStream, Completed, ProviderError};

use crate::balance::Deployment;
use crate::error::GatewayError;
use crate::state::{AppState, ModelRoute};

pub fn resolve<'a>(app: &'a AppState, model: &str) -> Result<&'a ModelRoute, GatewayError> {
    app.models.get(model).ok_or_else(|| {
        let or_none = |list: &str| {
            if list.is_empty() {
                "(none)".to_string()
            } else {
                list.to_string()
            }
        };
        GatewayError::ModelNotFound {
            model: model.to_string(),
            known: format!(
                "models: {}; functions: {}",
                or_none(&app.model_list),
                or_none(&app.function_list)
            ),
        }
    })
}

/// The request as it goes upstream: the deployment's pinned upstream model id in `model`.
pub fn upstream_request(dep: &Deployment, mut req: ChatRequest) -> ChatRequest {
    req.model.clone_from(&dep.upstream_model);
    req
}

/// A whole call under the model's total timeout; the answer keeps the upstream's body
/// when it is in OpenAI's chat format (`Completed::wire`).
pub async fn complete(
    route: &ModelRoute,
    dep: &Deployment,
    req: ChatRequest,
) -> Result<Completed, GatewayError> {
    let timeout = route.config.timeout;
    match tokio::time::timeout(timeout, dep.provider.complete_wire(req)).await {
        Ok(result) => result.map_err(GatewayError::from),
        Err(_) => Err(ProviderError::Timeout(timeout).into()),
    }
}

/// An opened stream with its first chunk already received.
pub struct OpenedStream {
    pub first: ChatChunk,
    pub rest: ChunkStream,
    /// When the first chunk arrived.
    pub first_at: Instant,
    /// When the attempt that opened it started: the model's total `timeout` of a stream
    /// counts from here, not from the request's start, so a stream answered by a retry
    /// or a fallback is not cut short by the time earlier attempts used up.
    pub attempt_started: Instant,
    /// How to continue the stream if it fails mid-way (`resume_streams`; set by the
    /// request path, `None` from here).
    pub resume: Option<Box<super::resume::Resume>>,
    /// Keel's count of the request's input tokens, for pricing a stream that ends
    /// without the provider's usage (set by the request path, 0 from here).
    pub input_estimate: u64,
}

pub async fn open_stream(
    route: &ModelRoute,
    dep: &Deployment,
    req: ChatRequest,
    first_token: Option<std::time::Duration>,
) -> Result<OpenedStream, GatewayError> {
    // The first chunk must come within the first-token limit (the model's, or a
    // function's tighter one), and never later than the model's total deadline.
    let attempt_started = Instant::now();
    let limit = route
        .config
        .first_token_timeout
        .min(route.config.timeout)
        .min(first_token.unwrap_or(std::time::Duration::MAX));
    let first = async {
        let mut rest = dep.provider.stream(req).await?;
        match rest.next().await {
            Some(Ok(first)) => Ok((first, rest)),
            Some(Err(e)) => Err(e),
            None => Err(ProviderError::StreamCut(
                "stream ended before its first chunk".into(),
            )),
        }
    };
    match tokio::time::timeout(limit, first).await {
        Ok(Ok((first, rest))) => Ok(OpenedStream {
            first,
            rest,
            first_at: Instant::now(),
            attempt_started,
            resume: None,
            input_estimate: 0,
        }),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ProviderError::Timeout(limit).into()),
    }
}
