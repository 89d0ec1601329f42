//! `POST /v1/traces` with `content-type: application/x-protobuf` (OTLP/HTTP protobuf).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keel_gateway::otel::ingest::decode_protobuf(data);
});
