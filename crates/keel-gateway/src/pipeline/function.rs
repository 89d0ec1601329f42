//! A call to a function (`model = "support-answer"`): pick the variant, render its
//! prompt with the request's `variables`, and rewrite the request into a call to the
//! variant's model — the rendered prompt first, then the caller's own messages.
//!
//! Everything that can be decided ahead of time (which prompt version a label points
//! at, the compiled templates, the merged parameters, the release, a split moved by
//! `keel function canary`) is in the registry
//! snapshot; this step only reads it, so a function call costs a hash, a render and no
//! I/O.

use std::sync::Arc;

use keel_core::chat::ChatRequest;
use keel_core::config::{FunctionConfig, VariantConfig};
use keel_core::trace::TraceRecord;
use serde_json::{Map, Value};

use super::variant::{choose_variant_split, VariantError};
use crate::error::GatewayError;
use crate::registry::{Deployment, Snapshot};
use crate::state::AppState;

/// The override header for testing a variant directly.
pub const VARIANT_HEADER: &str = "x-keel-variant";
/// The response header naming the prompt version that served.
pub const PROMPT_VERSION_HEADER: &str = "x-keel-prompt-version";

/// What a function adds to the model call: the variant's own fallback chain and the
/// function's deadlines.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallPlan<'a> {
    pub chain: Option<&'a [String]>,
    pub limits: Limits,
}

/// Deadlines over all attempts of a call (a function's `timeout`, `first_token_timeout`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub total: Option<std::time::Duration>,
    pub first_token: Option<std::time::Duration>,
}

/// Turn a function call into a model call, filling the trace's function fields. The
/// variant and its prompt version are read from `pinned` when the caller holds a
/// snapshot (a shadow and its live call read the same one), else from the current one.
pub async fn apply<'a>(
    app: &AppState,
    f: &'a FunctionConfig,
    req: &mut ChatRequest,
    override_variant: Option<&str>,
    pinned: Option<&Snapshot>,
    trace: &mut TraceRecord,
) -> Result<CallPlan<'a>, GatewayError> {
    trace.function = Some(f.name.clone());
    // The current snapshot's guard is dropped before the render (an await).
    let (variant, deployment) = match pinned {
        Some(snapshot) => pick(app, f, snapshot, override_variant, trace)?,
        None => pick(app, f, &app.registry.current(), override_variant, trace)?,
    };
    trace.prompt_name = Some(deployment.prompt_name.clone());
    trace.prompt_version = Some(deployment.prompt_version);
    trace.release_id = Some(deployment.release.id.clone());
    trace.model_requested = Some(deployment.model.clone());

    render_into(&deployment, req, Some(&f.name)).await?;
    Ok(CallPlan {
        chain: variant.fallbacks.as_deref(),
        limits: Limits {
            total: f.timeout,
            first_token: f.first_token_timeout,
        },
    })
}

/// The variant that serves this call and its deployment, as `snapshot` has them.
fn pick<'a>(
    app: &AppState,
    f: &'a FunctionConfig,
    snapshot: &Snapshot,
    override_variant: Option<&str>,
    trace: &mut TraceRecord,
) -> Result<(&'a VariantConfig, Arc<Deployment>), GatewayError> {
    // Cheapest-variant routing (a quality tier, or a budget downgrade) replaces the
    // split unless the caller named a variant. With no qualifying variant, the split.
    let downgrade = app.governor.wants_downgrade(trace);
    let cheapest = match (override_variant, f.cheapest.is_some() || downgrade) {
        (None, true) => snapshot
            .cheapest(&f.name)
            .and_then(|r| r.as_ref().ok())
            .copied(),
        _ => None,
    };
    let variant = match cheapest.and_then(|i| f.variants.get(i)) {
        Some(v) => v,
        None => {
            choose_variant_split(
                f,
                snapshot.split(&f.name),
                override_variant,
                trace.user.as_deref(),
                trace.session.as_deref(),
                fastrand::u64(..),
            )
            .map_err(|e| match e {
                VariantError::UnknownVariant { .. } => GatewayError::UnknownVariant(e.to_string()),
                VariantError::NoWeight { .. } => GatewayError::PromptUnavailable(e.to_string()),
            })?
            .variant
        }
    };
    trace.variant = Some(variant.name.clone());
    let index = f
        .variants
        .iter()
        .position(|v| std::ptr::eq(v, variant))
        .unwrap_or(0);
    match snapshot.slot(&f.name, index) {
        Some(Ok(d)) => Ok((variant, d.clone())),
        Some(Err(why)) => Err(GatewayError::PromptUnavailable(why.to_string())),
        None => Err(GatewayError::PromptUnavailable(format!(
            "function `{}` is not loaded yet; retry in a few seconds",
            f.name
        ))),
    }
}

/// Render `deployment`'s prompt with the request's `variables` and rewrite `req` into a
/// call to its model: the rendered messages first, then the caller's; the prompt's
/// parameters, tools and output schema. A variable error names `function` when there is
/// one (formatted only on error: the request path allocates nothing for it).
/// Shared by function calls and the dashboard's playground (which builds deployments of
/// drafts), so a draft is tried exactly as a function would serve it.
pub(crate) async fn render_into(
    deployment: &crate::registry::Deployment,
    req: &mut ChatRequest,
    function: Option<&str>,
) -> Result<(), GatewayError> {
    let variables = match req.extra.remove("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(GatewayError::InvalidVariables(format!(
                "`variables` must be a JSON object of template variables, got {}",
                json_kind(&other)
            )))
        }
    };
    // Ordinary prompts render here; one that needs more steps than an async worker
    // should spend renders on a blocking thread, under the full fuel limit.
    let rendered = match deployment.prompt.compiled.render_quick(&variables) {
        Ok(Some(messages)) => Ok(messages),
        Ok(None) => {
            let prompt = std::sync::Arc::clone(&deployment.prompt);
            tokio::task::spawn_blocking(move || prompt.compiled.render(&variables))
                .await
                .map_err(|e| GatewayError::Internal(format!("rendering a prompt: {e}")))?
        }
        Err(e) => Err(e),
    };
    let rendered = rendered.map_err(|e| {
        let context = function
            .map(|f| format!("function `{f}` "))
            .unwrap_or_default();
        GatewayError::InvalidVariables(format!(
            "{context}(prompt `{}` v{}): {e}",
            deployment.prompt_name, deployment.prompt_version
        ))
    })?;
    let callers = std::mem::take(&mut req.messages);
    req.messages = rendered;
    req.messages.extend(callers);
    deployment.params.apply(req);
    if let Some(tools) = &deployment.tools {
        let mut all = tools.clone();
        if let Some(theirs) = req.tools.take() {
            all.extend(
                theirs
                    .into_iter()
                    .filter(|t| !tools.iter().any(|p| p.function.name == t.function.name)),
            );
        }
        req.tools = Some(all);
    }
    if req.response_format.is_none() {
        req.response_format.clone_from(&deployment.response_format);
    }
    req.model.clone_from(&deployment.model);
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
