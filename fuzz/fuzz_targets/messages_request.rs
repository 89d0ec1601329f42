//! `POST /v1/messages` (Anthropic format): parse, translate to the canonical request,
//! validate — the handler's steps on the body.
#![no_main]

use keel_gateway::pipeline::parse::{parse_json, validate_chat};
use keel_providers::anthropic::{messages_request_to_chat, MessagesRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_json::<MessagesRequest>(data) else {
        return;
    };
    if let Ok(chat) = messages_request_to_chat(req) {
        let _ = validate_chat(&chat, false);
        let _ = serde_json::to_vec(&chat);
    }
});
