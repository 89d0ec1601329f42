//! Keel's shared vocabulary: the canonical chat types, money, the price table, the
//! configuration model and its validation, and the trace record every layer fills in.

pub mod chat;
mod chat_de;
pub mod config;
pub mod embeddings;
pub mod lifecycle;
pub mod money;
pub mod prices;
pub mod release;
pub mod sample;
pub mod scope;
pub mod split;
pub mod trace;
