#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Virtual keys and rate limits at the gateway: what a caller sees with no key, a wrong
//! key, a revoked or rotated key, a model the key may not call, and a rate limit; and
//! that the key binds the tenant and never reaches a trace.

mod common;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-secret-for-tests";

/// A harness with auth required and an admin key in an env var of its own; every mock
/// reply is exactly 20 tokens.
async fn with_auth(extra: &str) -> Harness {
    let var = format!("KEEL_TEST_ADMIN_{}", std::process::id());
    std::env::set_var(&var, ADMIN);
    Harness::with(Options {
        extra: format!(
            "[auth]\nmode = \"required\"\nadmin_key_env = \"{var}\"\nrefresh = \"100ms\"\n{extra}"
        ),
        mock: keel_core::config::mock::MockSettings {
            output_tokens: Some(20),
            ..Default::default()
        },
        ..Options::default()
    })
    .await
}

async fn admin_post(
    h: &Harness,
    path: &str,
    body: Value,
    admin: Option<&str>,
) -> reqwest::Response {
    let mut r = h.client.post(h.url(path)).json(&body);
    if let Some(a) = admin {
        r = r.bearer_auth(a);
    }
    r.send().await.unwrap()
}

async fn create_key(h: &Harness, spec: Value) -> (String, String) {
    let resp = admin_post(h, "/admin/keys", spec, Some(ADMIN)).await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

async fn call(h: &Harness, key: Option<&str>, model: &str, tenant: &str) -> reqwest::Response {
    let mut r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-keel-tenant", tenant)
        .json(&chat_body(model, "hello keys"));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

async fn error_code(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn keys_gate_every_call_and_bind_the_tenant() {
    let h = with_auth("").await;

    // No key, a non-Keel key, a mangled Keel key.
    let (s, code, msg) = error_code(call(&h, None, "mock-1", "acme").await).await;
    assert_eq!((s, code.as_str()), (401, "missing_api_key"));
    assert!(msg.contains("keel keys create"), "{msg}");
    let (s, code, _) = error_code(call(&h, Some("sk-openai-xyz"), "mock-1", "acme").await).await;
    assert_eq!((s, code.as_str()), (401, "invalid_api_key"));

    // Admin endpoints need the admin key.
    let resp = admin_post(&h, "/admin/keys", json!({"tenant": "acme"}), None).await;
    assert_eq!(error_code(resp).await.0, 401);
    let resp = admin_post(&h, "/admin/keys", json!({"tenant": "acme"}), Some("wrong")).await;
    assert_eq!(error_code(resp).await.1, "admin_key_required");
    assert_eq!(h.get("/status").await.status(), 401);
    let resp = admin_post(
        &h,
        "/admin/keys",
        json!({"tenant": "acme", "budget": "lots"}),
        Some(ADMIN),
    )
    .await;
    let (s, _, msg) = error_code(resp).await;
    assert_eq!(s, 400);
    assert!(msg.contains("lots"), "{msg}");

    let (id, key) = create_key(
        &h,
        json!({"tenant": "acme", "models": ["mock-1", "claude-mock"], "name": "ci"}),
    )
    .await;
    let mut wrong = key.clone();
    wrong.replace_range(key.len() - 4.., "0000");
    let (s, code, _) = error_code(call(&h, Some(&wrong), "mock-1", "acme").await).await;
    assert_eq!((s, code.as_str()), (401, "invalid_api_key"));

    // The key works; its tenant wins over the header.
    let resp = call(&h, Some(&key), "mock-1", "evil-corp").await;
    assert_eq!(resp.status(), 200);
    let ok_id = request_id(&resp);
    // The Anthropic SDK sends x-api-key.
    let resp = h
        .client
        .post(h.url("/v1/messages"))
        .header("x-api-key", &key)
        .json(&messages_body("claude-mock", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A model outside the key's list.
    let (s, code, msg) = error_code(call(&h, Some(&key), "local", "acme").await).await;
    assert_eq!((s, code.as_str()), (403, "model_not_allowed"));
    assert!(msg.contains("mock-1"), "{msg}");

    // Rotation with a grace period: both secrets work; then revocation stops both.
    let resp = admin_post(
        &h,
        &format!("/admin/keys/{id}/rotate"),
        json!({"grace": "1h", "reason": "test"}),
        Some(ADMIN),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let new_key = resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_key, key);
    assert_eq!(call(&h, Some(&key), "mock-1", "acme").await.status(), 200);
    assert_eq!(
        call(&h, Some(&new_key), "mock-1", "acme").await.status(),
        200
    );
    let resp = admin_post(
        &h,
        &format!("/admin/keys/{id}/revoke"),
        json!({"reason": "leaked"}),
        Some(ADMIN),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (s, code, _) = error_code(call(&h, Some(&new_key), "mock-1", "acme").await).await;
    assert_eq!((s, code.as_str()), (401, "revoked_api_key"));
    let resp = admin_post(
        &h,
        "/admin/keys/000000000000/revoke",
        json!({}),
        Some(ADMIN),
    )
    .await;
    assert_eq!(resp.status(), 404);

    // The key list shows no secret and no hash.
    let list = h
        .client
        .get(h.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let text = list.text().await.unwrap();
    assert!(
        text.contains(&id) && !text.contains(&key[18..]) && !text.contains("secret_hash"),
        "{text}"
    );

    let (_, traces) = h.finish().await;
    let t = trace(&traces, &ok_id);
    assert_eq!(t.key_id.as_deref(), Some(id.as_str()));
    assert_eq!(t.tenant.as_deref(), Some("acme"));
    for t in &traces {
        let all = serde_json::to_string(t).unwrap();
        assert!(
            !all.contains(&key[18..]) && !all.contains(&new_key[18..]),
            "a secret reached a trace"
        );
    }
    let classes: Vec<_> = traces
        .iter()
        .filter_map(|t| t.error_class.as_deref())
        .collect();
    for c in [
        "missing_api_key",
        "invalid_api_key",
        "model_not_allowed",
        "revoked_api_key",
    ] {
        assert!(classes.contains(&c), "{c} not traced: {classes:?}");
    }
}

#[tokio::test]
async fn a_key_created_in_the_store_is_picked_up_without_restart() {
    let h = with_auth("").await;
    let spec = keel_governance::keys::KeySpec {
        tenant: "acme".into(),
        ..Default::default()
    };
    let (minted, row) = spec.mint("test", keel_store::prompts::now_ms()).unwrap();
    {
        let store = keel_store::Store::open(&h.store_path).unwrap();
        keel_store::keys::insert_key(&store.writer_conn().unwrap(), &row, "cli").unwrap();
    }
    // Within a few refreshes (100 ms each) the key works.
    let mut status = 0;
    for _ in 0..50 {
        status = call(&h, Some(&minted.key), "mock-1", "acme")
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
    h.finish().await;
}

#[tokio::test]
async fn rate_limits_refuse_with_429_and_report_their_state() {
    let h = Harness::with(Options {
        extra: "[[rate_limits]]\nscope = \"tenant\"\nrpm = 3\n".into(),
        ..Options::default()
    })
    .await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let resp = call(&h, None, "mock-1", "t1").await;
        assert_eq!(resp.status(), 200);
        let hd = resp.headers();
        assert_eq!(hd["x-ratelimit-limit-requests"], "3");
        remaining.push(
            hd["x-ratelimit-remaining-requests"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        assert!(hd.contains_key("x-ratelimit-reset-requests"));
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let resp = call(&h, None, "mock-1", "t1").await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    let (s, code, msg) = error_code(resp).await;
    assert_eq!((s, code.as_str()), (429, "rate_limited"));
    assert!(
        msg.contains("3 requests per minute") && msg.contains("tenant=t1"),
        "{msg}"
    );
    // Another tenant has its own bucket.
    assert_eq!(call(&h, None, "mock-1", "t2").await.status(), 200);
    let (_, traces) = h.finish().await;
    assert_eq!(
        traces
            .iter()
            .filter(|t| t.error_class.as_deref() == Some("rate_limited"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_key_token_limit_counts_prompt_and_output_tokens() {
    let h = with_auth("").await;
    let (_, key) = create_key(&h, json!({"tenant": "acme", "tpm": 100})).await;
    let body = |max: u32| json!({"model": "mock-1", "max_tokens": max, "messages": [{"role": "user", "content": "hi there"}]});
    let post = |b: Value| {
        h.client
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&b)
            .send()
    };
    // One call alone larger than the limit can never pass: 400, not a retry loop.
    let (s, code, _) = error_code(post(body(500)).await.unwrap()).await;
    assert_eq!((s, code.as_str()), (400, "request_too_large_for_limit"));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = post(body(20)).await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 200 {
            assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "100");
        }
    }
    // 32 tokens charged per call (12 estimated prompt + 20 output), settled to the 26 it
    // used (6 + 20): three fit in 100, a fourth does not.
    assert_eq!(statuses, [200, 200, 200, 429]);
    h.finish().await;
}

/// A key's own budget is listed with the configured ones (`/admin/budgets`, and the
/// dashboard's budget panel, which reads the same list) — issue 14, item 19.
#[tokio::test]
async fn a_keys_own_budget_is_listed_with_its_use() {
    let h = with_auth("").await;
    let (id, key) = create_key(&h, json!({"tenant": "acme", "budget": "10/day"})).await;
    // Keys reload within `refresh` (100 ms).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(call(&h, Some(&key), "mock-1", "acme").await.status(), 200);
    let mut row = None;
    for _ in 0..50 {
        let v: Value = h
            .client
            .get(h.url("/admin/budgets"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        row = v["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scope"] == format!("key={id}"))
            .cloned();
        if row.as_ref().is_some_and(|r| r["spent_usd"] != "0.00") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let row = row.expect("the key's budget is listed");
    assert_eq!(row["budget"], format!("key {id}"));
    assert_eq!(row["limit_usd"], "10.00");
    assert!(row["hard"].as_bool().unwrap());
    h.finish().await;
}

/// With auth required, `/metrics` and `/v1/models` are closed unless the config opens
/// them by name (`[auth] public_metrics` / `public_models`).
#[tokio::test]
async fn metrics_and_the_model_list_are_public_only_when_the_config_says_so() {
    let h = with_auth("").await;
    for path in ["/metrics", "/v1/models"] {
        let resp = h.get(path).await;
        assert_eq!(resp.status(), 401, "{path} is open by default");
        let resp = h
            .client
            .get(h.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path} with the admin key");
    }
    // A virtual key may list the models (what an SDK does), not read the metrics.
    let (_, key) = create_key(&h, json!({"tenant": "acme"})).await;
    let resp = h
        .client
        .get(h.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = h
        .client
        .get(h.url("/metrics"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    h.finish().await;

    let h = with_auth("public_metrics = true\npublic_models = true\n").await;
    for path in ["/metrics", "/v1/models"] {
        assert_eq!(h.get(path).await.status(), 200, "{path} opened by config");
    }
    h.finish().await;
}
