#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Functions end to end, in-process: variant choice (sticky, weighted, overridden),
//! prompt rendering with `variables`, labels moved while the gateway runs, response
//! headers, trace lineage, and the errors a caller can cause.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{push_prompt as push, set_prompt_label as label, Harness, Options};
use keel_store::Store;
use serde_json::{json, Value};

const PROMPT_V1: &str = r#"
[[messages]]
role = "system"
content = "You support {{ product }}."
[[messages]]
role = "user"
content = "v1 {{ question }}"
[variables.product]
type = "string"
[variables.question]
type = "string"
[params]
temperature = 0.2
"#;

fn functions(weights: (u32, u32)) -> String {
    format!(
        r#"
[registry]
refresh = "100ms"

[functions.support]
description = "answers"
sticky = "user"

[[functions.support.variants]]
name = "control"
prompt = "support/answer"
model = "local"
weight = {}

[[functions.support.variants]]
name = "candidate"
prompt = "support/answer"
prompt_label = "staging"
model = "mock-1"
weight = {}
params = {{ max_tokens = 50 }}
"#,
        weights.0, weights.1
    )
}

async fn start(weights: (u32, u32)) -> Harness {
    Harness::with(Options {
        extra: functions(weights),
        ..Options::default()
    })
    .await
}

fn rollback(store_path: &str, label: &str) {
    let store = Store::open(store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    keel_store::rollback_label(&conn, "support/answer", label, "test", "undo").unwrap();
}

/// Push v1 and point both labels at it; wait until the gateway serves it.
async fn deploy_v1(h: &Harness) {
    let v = push(&h.store_path, PROMPT_V1);
    label(&h.store_path, v, "production");
    label(&h.store_path, v, "staging");
    wait_for_version(h, "control", "1").await;
}

async fn call(h: &Harness, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    h.post_json("/v1/chat/completions", body, headers).await
}

fn vars(question: &str) -> Value {
    json!({"model": "support", "variables": {"product": "Keel", "question": question}})
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// Poll until variant `variant` answers with prompt version `want` (the refresher runs
/// every 100 ms here; a label move must show within a few seconds).
async fn wait_for_version(h: &Harness, variant: &str, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let resp = call(h, &vars("ping"), &[("x-keel-variant", variant)]).await;
        if header(&resp, "x-keel-prompt-version").as_deref() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "variant {variant} still not at version {want}: {} {:?}",
            resp.status(),
            resp.text().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_function_call_renders_the_prompt_and_records_lineage() {
    let h = start((1, 0)).await;
    deploy_v1(&h).await;
    let mut body = vars("How do I rotate a key?");
    body["messages"] = json!([{"role": "user", "content": "and also this"}]);
    let resp = call(
        &h,
        &body,
        &[("x-keel-user", "u1"), ("x-keel-request-id", "fn-1")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-keel-variant").as_deref(), Some("control"));
    assert_eq!(header(&resp, "x-keel-prompt-version").as_deref(), Some("1"));
    let reply: Value = resp.json().await.unwrap();
    // The mock answers the last user message: the caller's, after the rendered prompt.
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "Mock reply to: and also this"
    );
    // Without caller messages, the rendered user message is the last one.
    let resp = call(&h, &vars("rotate?"), &[("x-keel-request-id", "fn-2")]).await;
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "Mock reply to: v1 rotate?"
    );

    // The release row says what shipped: prompt version, pinned model, merged params.
    let releases = {
        let store = Store::open(&h.store_path).unwrap();
        let conn = store.reader().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT id, variant, upstream_model, params_json, prompt_version FROM releases",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ),
                ))
            })
            .unwrap();
        rows.collect::<Result<HashMap<_, _>, _>>().unwrap()
    };
    let (_, traces) = h.finish().await;
    let t = common::trace(&traces, "fn-1");
    assert_eq!(t.function.as_deref(), Some("support"));
    assert_eq!(t.variant.as_deref(), Some("control"));
    assert_eq!(t.prompt_name.as_deref(), Some("support/answer"));
    assert_eq!(t.prompt_version, Some(1));
    assert_eq!(t.model_requested.as_deref(), Some("local"));
    let (variant, upstream, params, version) = &releases[t.release_id.as_ref().unwrap()];
    assert_eq!(variant, "control");
    assert_eq!(upstream, "mock-local");
    assert_eq!(*version, 1);
    assert_eq!(
        serde_json::from_str::<Value>(params).unwrap(),
        json!({"temperature": 0.2})
    );
}

#[tokio::test]
async fn a_moved_label_is_served_within_seconds_and_rollback_restores_it() {
    let h = start((1, 1)).await;
    deploy_v1(&h).await;
    let v2 = push(&h.store_path, &PROMPT_V1.replace("v1 {{", "v2 {{"));
    assert_eq!(v2, 2);
    // Pushing alone changes nothing: the label still points at v1.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = call(&h, &vars("q"), &[("x-keel-variant", "candidate")]).await;
    assert_eq!(header(&resp, "x-keel-prompt-version").as_deref(), Some("1"));

    label(&h.store_path, v2, "staging");
    let took = wait_for_version(&h, "candidate", "2").await;
    assert!(took < Duration::from_secs(3), "label move took {took:?}");
    let resp = call(&h, &vars("q"), &[("x-keel-variant", "candidate")]).await;
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "Mock reply to: v2 q"
    );
    // The production label did not move.
    let resp = call(&h, &vars("q"), &[("x-keel-variant", "control")]).await;
    assert_eq!(header(&resp, "x-keel-prompt-version").as_deref(), Some("1"));

    rollback(&h.store_path, "staging");
    wait_for_version(&h, "candidate", "1").await;

    let (_, traces) = h.finish().await;
    let releases: std::collections::HashSet<_> = traces
        .iter()
        .filter(|t| t.variant.as_deref() == Some("candidate") && t.status.as_str() == "ok")
        .filter_map(|t| t.release_id.clone())
        .collect();
    assert_eq!(
        releases.len(),
        2,
        "v1 and v2 of the candidate are two releases"
    );
}

#[tokio::test]
async fn the_split_is_sticky_weighted_and_the_same_after_a_restart() {
    let h = start((90, 10)).await;
    deploy_v1(&h).await;
    let mut first: HashMap<String, String> = HashMap::new();
    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    for chunk in users.chunks(50) {
        let calls = chunk.iter().map(|u| async {
            let resp = call(&h, &vars("q"), &[("x-keel-user", u.as_str())]).await;
            assert_eq!(resp.status(), 200);
            (u.clone(), header(&resp, "x-keel-variant").unwrap())
        });
        for (u, v) in futures::future::join_all(calls).await {
            first.insert(u, v);
        }
    }
    let candidates = first.values().filter(|v| *v == "candidate").count();
    // 10% of 1000 users: a binomial with sd ≈ 9.5; allow ±4 sd.
    assert!(
        (62..=138).contains(&candidates),
        "candidate got {candidates} of 1000 users"
    );
    // The same user again gets the same variant.
    for u in users.iter().take(100) {
        let resp = call(&h, &vars("q"), &[("x-keel-user", u.as_str())]).await;
        assert_eq!(header(&resp, "x-keel-variant").as_ref(), first.get(u));
    }
    h.finish().await;

    // A new gateway process (fresh store, fresh state) assigns every user the same way.
    let h2 = start((90, 10)).await;
    deploy_v1(&h2).await;
    for u in users.iter().take(200) {
        let resp = call(&h2, &vars("q"), &[("x-keel-user", u.as_str())]).await;
        assert_eq!(
            header(&resp, "x-keel-variant").as_ref(),
            first.get(u),
            "{u} moved after a restart"
        );
    }
    h2.finish().await;
}

#[tokio::test]
async fn caller_errors_are_400s_that_name_the_problem_and_are_traced() {
    let h = start((1, 1)).await;
    // Before any version is pushed, the function cannot serve: a 503 that says why.
    let resp = call(&h, &vars("q"), &[("x-keel-variant", "control")]).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "prompt_unavailable");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("keel prompt push"), "{msg}");

    deploy_v1(&h).await;
    let cases: Vec<(Value, &str, &str, &str)> = vec![
        (
            json!({"model": "support", "variables": {"product": "Keel"}}),
            "invalid_variables",
            "`question` is required",
            "e-missing",
        ),
        (
            json!({"model": "support", "variables": {"product": 7, "question": "q"}}),
            "invalid_variables",
            "`product` must be a string, got integer",
            "e-type",
        ),
        (
            json!({"model": "support", "variables": {"product": "K", "question": "q", "extra": 1}}),
            "invalid_variables",
            "unknown variable `extra`",
            "e-unknown",
        ),
        (
            json!({"model": "support", "variables": ["a"]}),
            "invalid_variables",
            "must be a JSON object",
            "e-shape",
        ),
    ];
    for (body, code, needle, id) in &cases {
        let resp = call(&h, body, &[("x-keel-request-id", id)]).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert!(
            header(&resp, "x-keel-variant").is_some(),
            "the variant is still named"
        );
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], *code);
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg} should contain {needle}");
    }
    let resp = call(
        &h,
        &vars("q"),
        &[
            ("x-keel-variant", "nope"),
            ("x-keel-request-id", "e-variant"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unknown_variant");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("control, candidate"));

    let (_, traces) = h.finish().await;
    for (_, code, _, id) in &cases {
        let t = common::trace(&traces, id);
        assert_eq!(t.error_class.as_deref(), Some(*code));
        assert_eq!(t.function.as_deref(), Some("support"));
    }
    assert_eq!(
        common::trace(&traces, "e-variant").error_class.as_deref(),
        Some("unknown_variant")
    );
}

#[tokio::test]
async fn streams_and_the_anthropic_api_serve_functions_too() {
    let h = start((0, 1)).await;
    deploy_v1(&h).await;
    let mut body = vars("streamed");
    body["stream"] = json!(true);
    let resp = call(&h, &body, &[]).await;
    assert_eq!(resp.status(), 200);
    // Weight 0 for control: everyone gets the candidate (and its variant params).
    assert_eq!(
        header(&resp, "x-keel-variant").as_deref(),
        Some("candidate")
    );
    assert_eq!(header(&resp, "x-keel-prompt-version").as_deref(), Some("1"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("data: [DONE]"), "{text}");

    // The override reaches a weight-0 variant.
    let resp = call(&h, &vars("q"), &[("x-keel-variant", "control")]).await;
    assert_eq!(header(&resp, "x-keel-variant").as_deref(), Some("control"));

    let resp = h
        .post_json(
            "/v1/messages",
            &json!({"model": "support", "max_tokens": 100,
                    "messages": [{"role": "user", "content": "from anthropic"}],
                    "variables": {"product": "Keel", "question": "q"}}),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-keel-variant").as_deref(),
        Some("candidate")
    );
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["content"][0]["text"], "Mock reply to: from anthropic");

    let models: Value = h.get("/v1/models").await.json().await.unwrap();
    let f = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "support")
        .unwrap();
    assert_eq!(f["owned_by"], "keel-function");
    assert_eq!(f["variants"][1]["prompt_version"], 1);
    h.finish().await;
}

/// A prompt that loops without end (nested `range`s) stops at the fuel limit with an
/// error naming the prompt, and renders off the async workers: `/health` stays fast
/// while two such calls run (issue: hardening, item 7).
#[tokio::test]
async fn a_runaway_template_runs_out_of_fuel_without_stalling_the_gateway() {
    let h = start((1, 0)).await;
    let runaway = r#"
[[messages]]
role = "user"
content = "{% for i in range(10000) %}{% for j in range(10000) %}{{ question }}{% endfor %}{% endfor %}"
[variables.question]
type = "string"
[variables.product]
type = "string"
required = false
"#;
    let v = push(&h.store_path, runaway);
    label(&h.store_path, v, "production");
    wait_for_version(&h, "control", &v.to_string()).await;
    let body = json!({"model": "support", "variables": {"question": "q"}});
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (client, url, body) = (
                h.client.clone(),
                h.url("/v1/chat/completions"),
                body.clone(),
            );
            tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    assert_eq!(h.get("/health").await.status(), 200);
    let health = started.elapsed();
    for c in calls {
        let resp = c.await.unwrap();
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("support/answer") && msg.contains("fuel limit"),
            "{msg}"
        );
    }
    assert!(
        health < Duration::from_millis(500),
        "/health took {health:?}"
    );
    h.finish().await;
}
