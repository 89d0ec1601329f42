//! `POST /v1/embeddings` — OpenAI's embeddings endpoint: attribution, key, body, parse,
//! then `pipeline::embed` (admission, the provider call, pricing); every path ends in a
//! trace with endpoint `/v1/embeddings`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use keel_core::embeddings::EmbeddingRequest;

use super::common::{self, ClientApi};
use crate::error::GatewayError;
use crate::pipeline::admit::Governed;
use crate::pipeline::drive::CallOptions;
use crate::pipeline::embed::{self, ENDPOINT};
use crate::pipeline::parse;
use crate::state::AppState;

pub async fn embeddings(
    State(app): State<Arc<AppState>>,
    common::CallRequest { headers, body }: common::CallRequest,
) -> Response {
    const API: ClientApi = ClientApi::OpenAi;
    let common::Opened {
        mut pending,
        key,
        bytes,
        hold: _hold,
    } = match common::open_request(&app, &headers, body, ("openai", ENDPOINT), API).await {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let parsed = parse::parse_json::<EmbeddingRequest>(&bytes).and_then(|r| match r.problem() {
        None => Ok(r),
        Some((problem, fix)) => Err(GatewayError::InvalidRequest(format!("{problem}; {fix}"))),
    });
    common::capture_input(&app, pending.trace(), bytes);
    let req = match parsed {
        Ok(r) => r,
        Err(e) => return common::reject(pending, e, API),
    };
    let mut opts = CallOptions::from_headers(&headers);
    opts.key = key.as_deref();
    let mut governed = Governed::default();
    let result = embed::run(&app, req, opts, pending.trace(), &mut governed).await;
    pending.attach(governed);
    match result {
        Ok((resp, cost)) => match common::json_body(&resp) {
            Ok(body) => common::respond_whole(pending, body, cost),
            Err(e) => common::reject(pending, GatewayError::Internal(e.to_string()), API),
        },
        Err(e) => common::reject(pending, e, API),
    }
}
