#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A deprecated model's responses carry `Deprecation` (RFC 9745) and `Sunset` (RFC 8594),
//! whole or streamed, called directly or through a fallback; a model without lifecycle
//! data carries neither.

mod common;

use common::{Harness, Options};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprecated_model_answers_with_deprecation_and_sunset() {
    let h = Harness::with(Options {
        extra: "[models.old]\nprovider = \"up\"\nupstream_model = \"mock-1\"\n\
                input_price_per_mtok = 1\noutput_price_per_mtok = 2\n\
                deprecated = \"2026-10-14\"\nretires = \"2027-01-14\"\nsuccessor = \"mock-1\"\n"
            .into(),
        ..Options::default()
    })
    .await;
    let whole = h.chat(&common::chat_body("old", "hello")).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["deprecation"], "@1791936000");
    assert_eq!(whole.headers()["sunset"], "Thu, 14 Jan 2027 00:00:00 GMT");

    let mut body = common::chat_body("old", "hello");
    body["stream"] = json!(true);
    let streamed = h.chat(&body).await;
    assert_eq!(streamed.status(), 200);
    assert_eq!(
        streamed.headers()["sunset"],
        "Thu, 14 Jan 2027 00:00:00 GMT"
    );
    assert!(streamed.headers().contains_key("deprecation"));

    let current = h.chat(&common::chat_body("mock-1", "hello")).await;
    assert_eq!(current.status(), 200);
    assert!(!current.headers().contains_key("deprecation"));
    assert!(!current.headers().contains_key("sunset"));
}
