//! An Anthropic upstream's streamed response body: SSE framing (`eventsource-stream`),
//! each event's JSON as `StreamEvent`, and the translation to canonical chunks
//! (`EventsToChunks`) — the steps of `AnthropicProvider::stream`.
//!
//! The first input byte picks the size of the body's network chunks, so that events,
//! lines and UTF-8 sequences split across reads are covered.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use keel_providers::anthropic::{EventsToChunks, StreamEvent};
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
    let mut translator = EventsToChunks::new();
    futures::executor::block_on(async {
        while let Some(ev) = events.next().await {
            let Ok(ev) = ev else { return };
            if ev.data.trim().is_empty() {
                continue;
            }
            let Ok(parsed) = serde_json::from_str::<StreamEvent>(&ev.data) else {
                return;
            };
            match translator.push(parsed) {
                Ok(chunks) => {
                    for c in &chunks {
                        let _ = serde_json::to_vec(c);
                    }
                    if translator.is_done() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
});
