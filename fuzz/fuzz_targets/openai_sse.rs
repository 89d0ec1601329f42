//! An OpenAI-compatible upstream's streamed response body: SSE framing
//! (`eventsource-stream`, as `keel_providers::sse::events` uses it), each `data:`
//! payload as `OpenAiProvider::stream` reads it (`parse_chunk`), and each chunk
//! translated for an Anthropic-format client (`ChunksToEvents`).
//!
//! The first input byte picks the size of the body's network chunks, so that events,
//! lines and UTF-8 sequences split across reads are covered.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use keel_providers::anthropic::ChunksToEvents;
use libfuzzer_sys::fuzz_target;

fn body(data: &[u8]) -> Vec<Result<Bytes, Infallible>> {
    let Some((&first, rest)) = data.split_first() else {
        return Vec::new();
    };
    let size = usize::from(first % 64) + 1;
    rest.chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut events = futures::stream::iter(body(data)).eventsource();
    let mut to_anthropic = ChunksToEvents::new("fuzz-model", "msg_fuzz");
    futures::executor::block_on(async {
        while let Some(ev) = events.next().await {
            let Ok(ev) = ev else { return };
            let data = ev.data.trim();
            if data == "[DONE]" {
                break;
            }
            if data.is_empty() {
                continue;
            }
            match keel_providers::openai::parse_chunk(data) {
                Ok(chunk) => {
                    for e in to_anthropic.push(&chunk) {
                        let _ = e.to_sse();
                    }
                }
                Err(_) => return,
            }
        }
        for e in to_anthropic.finish() {
            let _ = e.to_sse();
        }
    });
});
