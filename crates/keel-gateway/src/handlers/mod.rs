//! HTTP handlers, one file per API surface.

pub mod admin;
pub mod caller;
pub mod chat;
pub mod common;
pub mod embeddings;
pub mod feedback;
pub mod messages;
pub mod misc;
pub mod responses;
