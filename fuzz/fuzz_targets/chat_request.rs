//! `POST /v1/chat/completions`: the body as the handler parses and validates it.
#![no_main]

use keel_core::chat::ChatRequest;
use keel_gateway::pipeline::parse::{parse_json, validate_chat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_json::<ChatRequest>(data) {
        let _ = validate_chat(&req, false);
        let _ = validate_chat(&req, true);
        // What the gateway does with a parsed request next: serialize it upstream.
        let _ = serde_json::to_vec(&req);
    }
});
