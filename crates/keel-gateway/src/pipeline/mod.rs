//! The request pipeline, one step per module, in the order a request meets them:
//! attribution → body → parse → function (variant + prompt) → route (retries, fallbacks)
//! → call → relay
//! (streams) → account.
//!
//! Later capabilities (keys, budgets, cache, guardrails, fallbacks) slot in between
//! function and call, each as its own step.

pub mod account;
pub mod attribution;
pub mod body;
pub mod cache;
pub mod call;
pub mod function;
pub mod parse;
pub mod pending;
pub mod relay;
pub mod route;
pub mod shadow;
pub mod variant;
