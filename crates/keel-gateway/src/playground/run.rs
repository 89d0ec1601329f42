//! Trying a draft beside the live version on the same variables: both rendered from
//! their deployments and sent through the gateway's own request path in-process
//! (model resolution, guardrails, retries, fallbacks, breakers, pricing) — but never
//! through admission (a playground call spends no caller's budget) nor the response
//! cache (a try must reach the model).
//!
//! Every call is traced like eval traffic: origin `eval` (so reports, budgets and
//! release traffic, which count only `live`, leave it out), endpoint `playground`, and
//! the tags `keel:playground` and `playground:draft` / `playground:live` plus the draft's
//! id, so they can be found and told apart in the traces page.

use keel_core::chat::{ChatRequest, Message};
use keel_core::money::Nanos;
use keel_core::trace::{Origin, TraceRecord};
use serde_json::{Map, Value};

use crate::pipeline::account;
use crate::pipeline::drive::{self, CallOptions, Served};
use crate::pipeline::function::render_into;
use crate::registry::Deployment;
use crate::state::AppState;

/// The tag on every playground trace.
pub const TAG: &str = "keel:playground";
/// The endpoint playground traces record.
pub const ENDPOINT: &str = "playground";

/// One side (draft or live) of one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// The messages the prompt rendered to (empty when rendering failed).
    pub messages: Vec<Message>,
    pub output: Option<String>,
    /// The render or call error, as a person reads it.
    pub error: Option<String>,
    /// The trace of the call (none when rendering failed: nothing was sent).
    pub trace_id: Option<String>,
    pub latency_ms: u64,
    pub cost: Option<Nanos>,
    pub unpriced: bool,
    pub output_tokens: Option<u64>,
}

/// One input tried on both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Where the variables came from: `typed`, or the trace they were recorded in.
    pub source: String,
    pub variables: Map<String, Value>,
    pub draft: Side,
    /// `None` when there is no live version to compare with.
    pub live: Option<Side>,
}

/// A side of the comparison: its deployment, the stored version it is (if any) and
/// its name in tags.
pub struct Arm<'a> {
    pub deployment: &'a Deployment,
    pub version: Option<i64>,
    pub side: &'static str,
}

/// Try every input on the draft and (when given) the live version, the two calls of an
/// input concurrently, inputs one after another (a few at most; see the page).
pub async fn compare(
    app: &AppState,
    draft: &Arm<'_>,
    live: Option<&Arm<'_>>,
    inputs: Vec<(String, Map<String, Value>)>,
    tags: &[String],
) -> Vec<Row> {
    let mut rows = Vec::with_capacity(inputs.len());
    for (source, variables) in inputs {
        let d = try_side(app, draft, &variables, tags);
        let (draft, live) = match live {
            Some(l) => {
                let (d, l) = futures::join!(d, try_side(app, l, &variables, tags));
                (d, Some(l))
            }
            None => (d.await, None),
        };
        rows.push(Row {
            source,
            variables,
            draft,
            live,
        });
    }
    rows
}

/// Render `arm` with `variables` and send it through the request path; traced.
pub async fn try_side(
    app: &AppState,
    arm: &Arm<'_>,
    variables: &Map<String, Value>,
    tags: &[String],
) -> Side {
    let d = arm.deployment;
    let mut req = ChatRequest::default();
    req.extra
        .insert("variables".into(), Value::Object(variables.clone()));
    let input = serde_json::to_string(&req).ok();
    let mut side = Side {
        messages: Vec::new(),
        output: None,
        error: None,
        trace_id: None,
        latency_ms: 0,
        cost: None,
        unpriced: false,
        output_tokens: None,
    };
    if let Err(e) = render_into(d, &mut req, None).await {
        side.error = Some(e.view().message);
        return side;
    }
    side.messages.clone_from(&req.messages);
    let started = std::time::Instant::now();
    let mut trace = TraceRecord::new(
        uuid::Uuid::now_v7().to_string(),
        drive::now_ms(),
        "openai",
        ENDPOINT,
    );
    trace.origin = Origin::Eval;
    trace.tags = [TAG.to_string(), format!("playground:{}", arm.side)]
        .into_iter()
        .chain(tags.iter().cloned())
        .collect();
    trace.prompt_name = Some(d.prompt_name.clone());
    trace.prompt_version = arm.version;
    trace.input = input;
    let opts = CallOptions {
        variant: None,
        bypass_cache: true,
        key: None,
        registry: None,
    };
    let result = match drive::run(app, req, opts, &mut trace, None).await {
        Ok(Served::Whole { resp, .. }) => Ok(resp),
        Ok(Served::Stream(..)) => Err(crate::error::GatewayError::Internal(
            "asked for a whole reply but got a stream".into(),
        )),
        Err(e) => Err(e),
    };
    match &result {
        Ok(resp) => {
            side.output = Some(drive::captured_output(resp));
        }
        Err(e) => {
            account::fail(&mut trace, e);
            side.error = Some(format!("{}: {}", e.class(), e.view().message));
        }
    }
    trace.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    side.latency_ms = trace.latency_ms;
    side.cost = trace.cost;
    side.unpriced = trace.unpriced;
    side.output_tokens = trace.output_tokens;
    side.trace_id = Some(trace.id.clone());
    crate::guard::scrub::apply_capture(app, &mut trace);
    // Straight to the writer, as eval calls are: not the live request metrics.
    app.writer.record(trace);
    side
}
