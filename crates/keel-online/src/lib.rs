//! Online evals: quality measured on live traffic, not only in CI.
//!
//! The gateway decides which finished live calls are judged and queues them without ever
//! making a call wait (`keel_gateway::online`). This crate does the judging, off the
//! request path, with the same assertion engine as `keel eval` (`keel_evals::assert`):
//!
//! - [`assertions`] — an online eval's assertions, compiled once; what cannot run on a
//!   live call (it has no expected output or context) is refused with a hint;
//! - [`call`] — a traced call as the engine's case (the messages it sent) and output;
//! - [`judge`] — the judge model, called through the live gateway as `origin = "judge"`
//!   traffic, retried with back-off on 429 and 5xx;
//! - [`spend`] — each eval's daily judge spend and its cap;
//! - [`conns`] — store connections kept between judged calls;
//! - [`worker`] — the pool that takes sampled calls off the queue, judges them and stores
//!   their scores (or the failure, when the judge could not grade);
//! - [`status`] — what `keel online status` and the dashboard show per eval: judged in the
//!   last hour, pending, failures and the last error, spend against the cap, pass rate
//!   with its interval;
//! - [`backfill`] — `keel online run`: judging calls that were recorded before.

pub mod assertions;
pub mod backfill;
pub mod call;
pub mod conns;
pub mod judge;
pub mod spend;
pub mod status;
pub mod worker;

pub use assertions::{compile_all, CompiledEval};
pub use worker::OnlineJudges;

/// The score source of calls judged as they happen.
pub const SOURCE_ONLINE: &str = "online";
/// The score source of calls judged afterwards by `keel online run`.
pub const SOURCE_BACKFILL: &str = "backfill";

/// Now, in Unix milliseconds (the gateway's clock, shared).
pub use keel_gateway::pipeline::drive::now_ms;
