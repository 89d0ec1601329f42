//! Unit tests of the deterministic reply (`reply::plan`), kept apart so `reply.rs` stays
//! a readable description of the decisions.

use super::*;
use keel_core::chat::{Content, FunctionDef, Stop};
use serde_json::json;

fn req(user: &str) -> ChatRequest {
    ChatRequest {
        model: "mock-1".to_string(),
        messages: vec![
            Message::text("system", "You are terse."),
            Message::text("user", user),
        ],
        ..Default::default()
    }
}

fn run(r: &ChatRequest) -> Plan {
    plan(r, &MockSettings::default(), &RuleSet::default())
}

fn ok(p: Plan) -> ChatResponse {
    match p.outcome {
        Ok(r) => r,
        Err(f) => panic!("expected a reply, got {f:?}"),
    }
}

fn fault(p: Plan) -> MockFault {
    match p.outcome {
        Ok(r) => panic!("expected a fault, got {r:?}"),
        Err(f) => f,
    }
}

fn text(p: Plan) -> String {
    first_text(&ok(p)).unwrap_or_default()
}

fn weather_tool() -> Tool {
    Tool {
        kind: "function".to_string(),
        function: FunctionDef {
            name: "get_weather".to_string(),
            description: None,
            parameters: Some(json!({
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"]
            })),
            extra: Default::default(),
        },
        extra: Default::default(),
    }
}

#[test]
fn default_reply_echoes_and_counts() {
    let r = ok(run(&req("Hello, world!")));
    assert_eq!(
        first_text(&r).as_deref(),
        Some("Mock reply to: Hello, world!")
    );
    assert_eq!(r.model, "mock-1");
    assert_eq!(r.created, CREATED);
    assert_eq!(r.system_fingerprint.as_deref(), Some("fp_mock"));
    assert!(
        r.id.starts_with("chatcmpl-mock-") && r.id.len() == 14 + 16,
        "{}",
        r.id
    );
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    // "You are terse." = 4 tokens, "Hello, world!" = 4 tokens, plus 4 per message.
    // "Mock reply to: Hello, world!" = 8 tokens.
    assert_eq!(r.usage, Some(Usage::new(16, 8)));
}

#[test]
fn replies_are_deterministic() {
    let a = ok(run(&req("What is the capital of France?")));
    let b = ok(run(&req("What is the capital of France?")));
    assert_eq!(a, b);
    let mut streamed = req("What is the capital of France?");
    streamed.stream = true;
    assert_eq!(
        ok(run(&streamed)).id,
        a.id,
        "streaming does not change the reply"
    );
    let c = ok(run(&req("What is the capital of Spain?")));
    assert_ne!(a.id, c.id);
}

#[test]
fn echo_is_capped_at_200_characters() {
    let long = "é".repeat(300);
    let t = text(run(&req(&long)));
    assert_eq!(t, format!("Mock reply to: {}", "é".repeat(200)));
}

#[test]
fn directives_are_stripped_and_applied() {
    let p = run(&req(
        "Hi [mock:latency=200] there [mock:chunk_delay=5] [mock:cut]",
    ));
    assert_eq!(p.latency, Duration::from_millis(200));
    assert_eq!(p.chunk_delay, Duration::from_millis(5));
    assert!(p.cut);
    assert_eq!(text(p), "Mock reply to: Hi there");

    assert_eq!(text(run(&req("x [mock:reply=Paris.]"))), "Paris.");
    let t = text(run(&req("count [mock:tokens=50]")));
    assert_eq!(tokens::count(&t), 50);
    assert!(t.starts_with("Mock reply to: count lorem"), "{t}");
    let r = ok(run(&req("[mock:tokens=50]")));
    assert_eq!(r.usage.map(|u| u.completion_tokens), Some(50));

    assert_eq!(fault(run(&req("[mock:timeout]"))), MockFault::Timeout);
    assert_eq!(fault(run(&req("[mock:garbage]"))), MockFault::Garbage);
}

#[test]
fn status_directives_give_openai_errors() {
    let settings = MockSettings {
        retry_after_secs: 9,
        ..Default::default()
    };
    let f = fault(plan(
        &req("[mock:status=429]"),
        &settings,
        &RuleSet::default(),
    ));
    match f {
        MockFault::Status {
            status: 429,
            retry_after: Some(9),
            message,
        } => assert!(
            message.contains("rate limit reached for mock-1"),
            "{message}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    let f = fault(run(&req("[mock:status=429][mock:retry_after=0]")));
    assert!(
        matches!(
            f,
            MockFault::Status {
                retry_after: Some(0),
                ..
            }
        ),
        "{f:?}"
    );
    for status in [400, 401, 404, 500, 503] {
        match fault(run(&req(&format!("[mock:status={status}]")))) {
            MockFault::Status {
                status: s,
                retry_after: None,
                ..
            } => assert_eq!(s, status),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn bad_requests_and_directives_are_400() {
    let f = fault(run(&req("[mock:tokens=many]")));
    assert!(
        matches!(&f, MockFault::Status { status: 400, message, .. } if message.contains("`many`")),
        "{f:?}"
    );
    let mut empty = req("x");
    empty.messages.clear();
    let f = fault(run(&empty));
    assert!(
        matches!(&f, MockFault::Status { status: 400, message, .. } if message.contains("`messages`")),
        "{f:?}"
    );
    let mut zero = req("x");
    zero.n = Some(0);
    assert!(matches!(
        fault(run(&zero)),
        MockFault::Status { status: 400, .. }
    ));
}

#[test]
fn rules_apply_and_directives_override_them() {
    let rules = RuleSet::from_toml(
        r#"
        [[rules]]
        match = "refund"
        reply = "Refunds take 5 days."
        [[rules]]
        regex = "(?i)^overload"
        status = 503
        [[rules]]
        match = "essay"
        tokens = 12
        latency_ms = 30
        "#,
        "test.toml",
    )
    .unwrap();
    let s = MockSettings::default();
    assert_eq!(
        text(plan(&req("a refund?"), &s, &rules)),
        "Refunds take 5 days."
    );
    assert_eq!(
        text(plan(&req("a refund? [mock:reply=No.]"), &s, &rules)),
        "No."
    );
    let f = fault(plan(&req("Overload now"), &s, &rules));
    assert!(matches!(f, MockFault::Status { status: 503, .. }), "{f:?}");
    let p = plan(&req("write an essay"), &s, &rules);
    assert_eq!(p.latency, Duration::from_millis(30));
    assert_eq!(tokens::count(&text(p)), 12);
    assert_eq!(
        text(plan(&req("hello"), &s, &rules)),
        "Mock reply to: hello"
    );
}

#[test]
fn output_tokens_setting_fits_generated_replies_only() {
    let s = MockSettings {
        output_tokens: Some(100),
        ..Default::default()
    };
    let r = ok(plan(&req("Hello"), &s, &RuleSet::default()));
    assert_eq!(tokens::count(&first_text(&r).unwrap_or_default()), 100);
    assert_eq!(r.usage.map(|u| u.completion_tokens), Some(100));
    let r = ok(plan(
        &req("[mock:reply=Exactly this.]"),
        &s,
        &RuleSet::default(),
    ));
    assert_eq!(first_text(&r).as_deref(), Some("Exactly this."));
    let r = ok(plan(&req("short [mock:tokens=3]"), &s, &RuleSet::default()));
    assert_eq!(first_text(&r).as_deref(), Some("Mock reply to"));
}

#[test]
fn max_tokens_truncates_with_length() {
    let mut r = req("one two three four five six");
    r.max_tokens = Some(5);
    let resp = ok(run(&r));
    assert_eq!(first_text(&resp).as_deref(), Some("Mock reply to: one"));
    assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("length"));
    assert_eq!(resp.usage.map(|u| u.completion_tokens), Some(5));
    r.max_completion_tokens = Some(6);
    assert_eq!(text(run(&r)), "Mock reply to: one two");
    r.max_tokens = None;
    r.max_completion_tokens = Some(1000);
    let resp = ok(run(&r));
    assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("stop"));
}

#[test]
fn stop_sequences_cut_the_reply() {
    let mut r = req("alpha. beta");
    r.stop = Some(Stop::Many(vec!["beta".into(), ".".into()]));
    let resp = ok(run(&r));
    assert_eq!(first_text(&resp).as_deref(), Some("Mock reply to: alpha"));
    assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("stop"));
}

#[test]
fn n_gives_n_choices() {
    let mut r = req("hi");
    r.n = Some(3);
    let resp = ok(run(&r));
    assert_eq!(resp.choices.len(), 3);
    assert_eq!(
        resp.choices.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // "Mock reply to: hi" = 5 tokens, three times.
    assert_eq!(resp.usage.map(|u| u.completion_tokens), Some(15));
}

#[test]
fn tool_directive_calls_the_tool_with_schema_placeholders() {
    let mut r = req("weather? [mock:tool=get_weather]");
    r.tools = Some(vec![weather_tool()]);
    let resp = ok(run(&r));
    let choice = &resp.choices[0];
    assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(choice.message.content, None);
    let calls = choice.message.tool_calls.clone().unwrap_or_default();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].kind, "function");
    assert!(calls[0].id.starts_with("call_mock_"));
    let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
    assert_eq!(args, json!({"city": "mock", "days": 1}));

    let undeclared = ok(run(&req("[mock:tool=lookup]")));
    let calls = undeclared.choices[0]
        .message
        .tool_calls
        .clone()
        .unwrap_or_default();
    assert_eq!(calls[0].function.name, "lookup");
    assert_eq!(calls[0].function.arguments, "{}");
}

#[test]
fn tool_choice_forces_a_call() {
    let mut r = req("hello");
    r.tools = Some(vec![weather_tool()]);
    r.tool_choice = Some(json!("required"));
    let resp = ok(run(&r));
    assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    r.tool_choice = Some(json!("auto"));
    assert_eq!(text(run(&r)), "Mock reply to: hello");
}

#[test]
fn tool_results_are_acknowledged_and_do_not_loop() {
    let mut r = req("weather? [mock:tool=get_weather]");
    r.tools = Some(vec![weather_tool()]);
    let call = ok(run(&r)).choices[0].message.clone();
    r.messages.push(call);
    r.messages.push(Message {
        role: "tool".to_string(),
        content: Some(Content::Text(format!(
            "{{\"temp\": 21, \"pad\": \"{}\"}}",
            "x".repeat(200)
        ))),
        tool_call_id: Some("call_1".to_string()),
        ..Default::default()
    });
    let resp = ok(run(&r));
    let t = first_text(&resp).unwrap_or_default();
    assert!(t.starts_with("Tool result received: {\"temp\": 21"), "{t}");
    assert_eq!(t.chars().count(), "Tool result received: ".len() + 100);
    assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("stop"));
}

#[test]
fn json_modes_reply_with_valid_json() {
    let mut r = req("Give JSON");
    r.response_format = Some(json!({"type": "json_object"}));
    let v: Value = serde_json::from_str(&text(run(&r))).unwrap();
    assert_eq!(v, json!({"reply": "Mock reply to: Give JSON"}));
    r.response_format = Some(
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema":
        {"type": "object", "properties": {"score": {"type": "number"}}, "required": ["score"]}}}),
    );
    let v: Value = serde_json::from_str(&text(run(&r))).unwrap();
    assert_eq!(v, json!({"score": 1}));
}

#[test]
fn a_trailing_assistant_message_is_continued_not_repeated() {
    let mut r = req("Tell me a story");
    r.messages
        .push(Message::text("assistant", "Mock reply to: Tell"));
    assert_eq!(text(run(&r)), " me a story");
    // A prefill the reply does not start with: the whole reply, as a new answer.
    r.messages.pop();
    r.messages.push(Message::text("assistant", "Once upon"));
    assert_eq!(text(run(&r)), "Mock reply to: Tell me a story");
    // An empty prefill changes nothing.
    r.messages.pop();
    r.messages.push(Message::text("assistant", ""));
    assert_eq!(text(run(&r)), "Mock reply to: Tell me a story");
}
