//! `POST /v1/traces` with `content-type: application/json` (OTLP/HTTP JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keel_gateway::otel::ingest::decode_json(data);
});
