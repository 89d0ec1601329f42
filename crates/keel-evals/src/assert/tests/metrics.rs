use keel_core::money::Nanos;
use serde_json::json;

use super::{case, out, run, tool_call};

#[tokio::test]
async fn latency_at_most_ms() {
    let mut o = out("ok");
    o.latency_ms = 900;
    let r = run(json!({"type": "latency", "value": 1000}), &case(), &o).await;
    assert!(r.pass);
    assert_eq!(r.reason, "latency 900 ms");
    o.latency_ms = 1500;
    let r = run(json!({"type": "latency", "value": 1000}), &case(), &o).await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to take at most 1000 ms; latency 1500 ms"
    );
}

#[tokio::test]
async fn cost_at_most_usd() {
    let mut o = out("ok");
    o.cost = Some(Nanos(1_500_000)); // $0.0015
    assert!(
        run(json!({"type": "cost", "value": 0.002}), &case(), &o)
            .await
            .pass
    );
    let r = run(json!({"type": "cost", "value": 0.001}), &case(), &o).await;
    assert!(!r.pass);
    assert_eq!(r.reason, "expected to cost at most $0.001; cost $0.0015");
}

#[tokio::test]
async fn unpriced_cost_fails_and_is_never_zero() {
    let mut o = out("ok");
    o.cost = None;
    for a in [
        json!({"type": "cost", "value": 1.0}),
        json!({"type": "not-cost", "value": 0.0}),
    ] {
        let r = run(a, &case(), &o).await;
        assert!(!r.pass);
        assert_eq!(r.score, 0.0);
        assert_eq!(r.reason, "unpriced: cost unknown");
    }
}

#[tokio::test]
async fn tokens_bound_output_tokens() {
    let mut o = out("ok");
    o.input_tokens = Some(5_000);
    o.output_tokens = Some(80);
    assert!(
        run(json!({"type": "tokens", "value": 100}), &case(), &o)
            .await
            .pass
    );
    let r = run(json!({"type": "tokens", "value": 50}), &case(), &o).await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to use at most 50 output tokens; 80 output tokens"
    );
    o.output_tokens = None;
    let r = run(json!({"type": "tokens", "value": 50}), &case(), &o).await;
    assert!(!r.pass);
    assert_eq!(r.reason, "output token count unknown");
}

#[tokio::test]
async fn tool_call_by_name() {
    let mut o = out("");
    o.tool_calls = vec![
        tool_call("search", "{}"),
        tool_call("get_weather", r#"{"city":"Paris"}"#),
    ];
    let r = run(
        json!({"type": "tool-call", "name": "get_weather"}),
        &case(),
        &o,
    )
    .await;
    assert!(r.pass);
    let r = run(
        json!({"type": "tool-call", "name": "book_flight"}),
        &case(),
        &o,
    )
    .await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to call `book_flight`; calls made: [search, get_weather]"
    );
    let r = run(
        json!({"type": "tool-call", "name": "x"}),
        &case(),
        &out("hi"),
    )
    .await;
    assert_eq!(r.reason, "expected to call `x`; no tool calls");
    let r = run(
        json!({"type": "not-tool-call", "name": "search"}),
        &case(),
        &out("hi"),
    )
    .await;
    assert!(r.pass, "not-tool-call passes when the tool was not called");
}

#[tokio::test]
async fn tool_call_arguments_match_as_a_subset() {
    let mut o = out("");
    o.tool_calls = vec![
        tool_call("get_weather", r#"{"city": "Lyon"}"#),
        tool_call(
            "get_weather",
            r#"{"city": "Paris", "opts": {"unit": "c", "days": 3}}"#,
        ),
    ];
    let a = json!({"type": "tool-call", "name": "get_weather",
                   "arguments": {"city": "Paris", "opts": {"unit": "c"}}});
    let r = run(a, &case(), &o).await;
    assert!(r.pass, "{r:?}");
    let a = json!({"type": "tool-call", "name": "get_weather", "arguments": {"city": "Rome"}});
    let r = run(a, &case(), &o).await;
    assert!(!r.pass);
    assert!(
        r.reason.starts_with(r#"expected to call `get_weather` with {"city":"Rome"}; `get_weather` called with {"city": "Lyon"}"#),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn tool_call_with_unparsable_arguments_matches_nothing() {
    let mut o = out("");
    o.tool_calls = vec![tool_call("get_weather", "{city: Paris")];
    let a = json!({"type": "tool-call", "name": "get_weather", "arguments": {"city": "Paris"}});
    assert!(!run(a, &case(), &o).await.pass);
    let a = json!({"type": "tool-call", "name": "get_weather"});
    assert!(
        run(a, &case(), &o).await.pass,
        "the name alone still matches"
    );
}
