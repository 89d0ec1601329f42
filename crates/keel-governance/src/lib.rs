//! Governance: who may call, how much they may spend and how fast, and who hears about
//! it when something goes wrong.
//!
//! Where to look:
//! - [`keys`] — virtual keys: minting, hashing, constant-time checks, rotation;
//! - [`governor`] — the one object the gateway asks per call (auth, admission, spikes,
//!   downgrades); [`ticket`] — settling a call's reservation;
//! - [`estimate`] — a call's worst-case tokens and cost, before it is made;
//! - [`backend`] — budget ledgers and rate limiters, in-process or in Redis (atomic Lua;
//!   settlements sent in pipelines, `backend/settle_batch.rs`);
//! - [`gcra`] — the rate-limit arithmetic; [`spikes`] — spend-spike detection;
//! - [`alerts`] — rule evaluation, de-duplication, delivery (webhook, log).

pub mod alerts;
pub mod backend;
pub mod error;
pub mod estimate;
pub mod gcra;
pub mod governor;
pub mod keys;
pub mod spikes;
pub mod ticket;

pub use error::{BudgetExhausted, GovError};
pub use governor::{Admission, BudgetUse, Governor, RateHeaders};
pub use keys::{KeyEntry, KeyTable};
pub use ticket::Ticket;
