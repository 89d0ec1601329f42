//! The request pipeline, one step per module, in the order a request meets them
//! (`drive::run` takes a call through them, for every entry point):
//! attribution → auth (virtual key) → body → parse → function (variant + prompt)
//! → admit (rate limits, budget reservation) → cache → route (retries, fallbacks)
//! → call → relay (streams; resume continues one cut mid-way) → close (a stream's usage:
//! the provider's, read to the end when the client left, else estimated) → account
//! (settle the reservation, write the trace).
//!
//! Later capabilities (guardrails) slot in between function and call, each as its own
//! step. `embed` is the embeddings endpoint's path through the same steps.

pub mod account;
pub mod admit;
pub mod attribution;
pub mod auth;
pub mod body;
pub mod cache;
pub mod cache_shared;
pub mod call;
pub mod close;
pub mod drive;
pub mod embed;
pub mod function;
pub mod parse;
pub mod pending;
pub mod relay;
pub mod resume;
pub mod route;
pub mod shadow;
pub mod variant;
