#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dashboard in-process: traffic through the gateway, then every page fetched as a
//! browser would — status, the data it must show, filters that narrow the trace list,
//! a trace's attempts, escaping of user-controlled text, and the admin key when auth
//! is required.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Options};
use keel_store::evals::{EvalResult, NewEvalRun};
use keel_store::Store;
use serde_json::json;

const XSS: &str = "<script>alert('pwned')</script>";

const PROMPT_V1: &str = r#"
[[messages]]
role = "user"
content = "Answer: {{ question }}"
[variables.question]
type = "string"
"#;

const PROMPT_V2: &str = r#"
[[messages]]
role = "user"
content = "Answer briefly <script>x()</script>: {{ question }}"
[variables.question]
type = "string"
"#;

const EXTRA: &str = r#"
[registry]
refresh = "100ms"

[providers.down]
kind = "mock"
[providers.down.mock]
rate_500 = 1.0

[models.down]
provider = "down"
upstream_model = "mock-down"
fallbacks = ["local"]

[functions.support]
description = "answers"

[[functions.support.variants]]
name = "control"
prompt = "support/answer"
model = "local"
weight = 50

[[functions.support.variants]]
name = "candidate"
prompt = "support/answer"
model = "mock-1"
weight = 50
"#;

fn push(store_path: &str, text: &str) -> i64 {
    let v = common::push_prompt(store_path, text);
    common::set_prompt_label(store_path, v, "production");
    v
}

/// Two eval runs of suite `support`: case `c2` passes in the first and fails in the second.
fn eval_runs(store_path: &str) {
    let store = Store::open(store_path).unwrap();
    let conn = store.conn().unwrap();
    for (i, id) in ["run_a", "run_b"].iter().enumerate() {
        let at = keel_store::prompts::now_ms() - 1000 + i as i64;
        keel_store::evals::create_eval_run(
            &conn,
            &NewEvalRun {
                id: id.to_string(),
                suite: "support".into(),
                started_at_ms: at,
                actor: "test".into(),
                dataset_hash: "h".into(),
                role: "candidate".into(),
                target_json: "{}".into(),
                function: Some("support".into()),
                variant: Some("control".into()),
                prompt_name: None,
                prompt_version: None,
                model: None,
                upstream_model: None,
                release_id: None,
                repeat: 1,
            },
        )
        .unwrap();
        for (case, pass) in [("c1", true), ("c2", i == 0)] {
            keel_store::evals::record_eval_result(
                &conn,
                &EvalResult {
                    run_id: id.to_string(),
                    case_id: case.into(),
                    repeat_idx: 0,
                    pass,
                    score: if pass { 1.0 } else { 0.0 },
                    output: Some(format!("answer {case} {XSS}")),
                    error: None,
                    latency_ms: 5,
                    cost_nanos: Some(10),
                    input_tokens: Some(1),
                    output_tokens: Some(1),
                    cached: false,
                    trace_id: None,
                    assertions_json: "[]".into(),
                },
            )
            .unwrap();
        }
        keel_store::evals::finish_eval_run(&conn, id, "done", at + 1, None, Some(i == 0), None)
            .unwrap();
    }
}

async fn post(h: &Harness, model: &str, text: &str, headers: &[(&str, &str)]) -> String {
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &common::chat_body(model, text),
            headers,
        )
        .await;
    common::request_id(&resp)
}

fn count(body: &str) -> usize {
    let at = body.find("data-count=\"").expect("the trace count") + "data-count=\"".len();
    body[at..].split('"').next().unwrap().parse().unwrap()
}

/// Wait until the writer has flushed `n` traces.
async fn wait_for_traces(h: &Harness, n: usize) {
    let start = Instant::now();
    while count(&h.page("/ui/traces?origin=live").await) < n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "traces not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_the_gateways_data() {
    every_page_renders(None).await;
}

/// The same pages, the same figures, with the store on PostgreSQL (a database of this
/// test's own, dropped after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_the_gateways_data_on_postgres() {
    let db = keel_store::testing::TestDb::new();
    every_page_renders(Some(db.url())).await;
}

async fn every_page_renders(store: Option<String>) {
    let h = Harness::with(Options {
        extra: EXTRA.into(),
        store,
        ..Options::default()
    })
    .await;
    push(&h.store_path, PROMPT_V1);
    let v2 = push(&h.store_path, PROMPT_V2);
    eval_runs(&h.store_path);
    // Wait for the function to serve v2.
    let start = Instant::now();
    loop {
        let body = json!({"model": "support", "variables": {"question": "hi"}});
        let resp = h.post_json("/v1/chat/completions", &body, &[]).await;
        if resp
            .headers()
            .get("x-keel-prompt-version")
            .map(|v| v.to_str().unwrap().to_string())
            == Some(v2.to_string())
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "function never served v2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One call on each variant, whatever the random split gave the calls above.
    let mut function_call = String::new();
    for variant in ["control", "candidate"] {
        let body = json!({"model": "support", "variables": {"question": "hi"}});
        let resp = h
            .post_json(
                "/v1/chat/completions",
                &body,
                &[("x-keel-variant", variant)],
            )
            .await;
        assert_eq!(resp.status(), 200);
        function_call = common::request_id(&resp);
    }
    for i in 0..6 {
        let user = format!("u{}", i % 2);
        post(
            &h,
            "mock-1",
            "hello",
            &[
                ("x-keel-tenant", "acme"),
                ("x-keel-feature", "search"),
                ("x-keel-user", &user),
            ],
        )
        .await;
    }
    for _ in 0..3 {
        post(&h, "local", "hi", &[("x-keel-tenant", "globex")]).await;
    }
    let xss_id = post(
        &h,
        "local",
        XSS,
        &[("x-keel-tenant", XSS), ("x-keel-session", "s-xss")],
    )
    .await;
    let fallback_id = post(&h, "down", "fall back please", &[]).await;
    wait_for_traces(&h, 14).await;
    // The function calls before are a variable number: wait for the last calls themselves.
    let start = Instant::now();
    for id in [&xss_id, &fallback_id] {
        while count(&h.page(&format!("/ui/traces?id={id}")).await) < 1 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "trace {id} not written"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Overview.
    let body = h.page("/").await;
    for want in [
        "Requests",
        "Spend",
        "Latency",
        "Time to first token",
        "by-model",
        "mock-1",
        "acme",
        "search",
        "support",
        "<svg",
    ] {
        assert!(body.contains(want), "overview lacks {want}");
    }
    assert!(
        !body.contains(XSS) && body.contains("&lt;script&gt;"),
        "tenant not escaped"
    );
    h.page("/?since=7d").await;
    assert_eq!(h.get("/?since=forever").await.status(), 400);

    // Traces: filters narrow.
    let all = count(&h.page("/ui/traces").await);
    assert!(all >= 12, "{all}");
    // (The function calls above run on a variant of their own; the tenant keeps this exact
    // however many of them the registry wait took.)
    assert_eq!(
        count(
            &h.page("/ui/traces?model=mock-1&tenant=acme&origin=live&function=")
                .await
        ),
        6
    );
    assert_eq!(count(&h.page("/ui/traces?tenant=acme&user=u1").await), 3);
    assert_eq!(count(&h.page("/ui/traces?tenant=globex&since=1h").await), 3);
    assert_eq!(count(&h.page(&format!("/ui/traces?id={xss_id}")).await), 1);
    assert_eq!(count(&h.page("/ui/traces?session=s-xss").await), 1);
    assert!(count(&h.page("/ui/traces?function=support&variant=control").await) >= 1);
    assert_eq!(count(&h.page("/ui/traces?min_latency=100000").await), 0);
    assert_eq!(
        count(&h.page("/ui/traces?max_cost=0.000000001&model=mock-1").await),
        0
    );
    assert!(count(&h.page("/ui/traces?min_cost=0.000000001").await) >= 6);
    assert!(
        count(
            &h.page(&format!("/ui/traces?prompt_version={v2}&status=ok"))
                .await
        ) >= 1
    );
    assert_eq!(h.get("/ui/traces?min_cost=lots").await.status(), 400);
    let list = h.page("/ui/traces").await;
    assert!(!list.contains(XSS) && list.contains("&lt;script&gt;"));

    // A trace: attempts, escaping of the captured input.
    let body = h.page(&format!("/ui/traces/{fallback_id}")).await;
    assert!(body.contains("id=\"attempts\""), "{body}");
    assert!(
        body.contains("upstream_server_error") && body.contains("mock-down"),
        "{body}"
    );
    let body = h.page(&format!("/ui/traces/{xss_id}")).await;
    assert!(!body.contains(XSS), "input not escaped");
    assert!(body.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));
    assert_eq!(h.get("/ui/traces/no-such-trace").await.status(), 404);
    // An eval run of the release that served the call: the prompt page shows its pass
    // rate with its gate verdict.
    {
        let store = Store::open(&h.store_path).unwrap();
        let conn = store.conn().unwrap();
        let release = loop {
            if let Some(t) = keel_store::get_trace(&conn, &function_call).unwrap() {
                break t.release_id.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let at = keel_store::prompts::now_ms();
        keel_store::evals::create_eval_run(
            &conn,
            &NewEvalRun {
                id: "run_gated".into(),
                suite: "gated-suite".into(),
                started_at_ms: at,
                actor: "test".into(),
                dataset_hash: "h".into(),
                role: "candidate".into(),
                target_json: "{}".into(),
                function: Some("support".into()),
                variant: Some("candidate".into()),
                prompt_name: None,
                prompt_version: None,
                model: None,
                upstream_model: None,
                release_id: Some(release),
                repeat: 1,
            },
        )
        .unwrap();
        keel_store::evals::finish_eval_run(
            &conn,
            "run_gated",
            "done",
            at + 1,
            None,
            Some(false),
            None,
        )
        .unwrap();
        let body = h.page("/ui/prompts/support/answer").await;
        assert!(
            body.contains("gated-suite</a> 0.0% · gate <span class=\"tag error\">failed</span>"),
            "{body}"
        );
    }
    // A function call's page shows what was sent: its prompt rendered with the variables
    // (escaped), not only the variables the app sent.
    let body = h.page(&format!("/ui/traces/{function_call}")).await;
    assert!(body.contains("Sent to the provider"), "{body}");
    assert!(
        body.contains("Answer briefly &lt;script&gt;x()&lt;/script&gt;: hi"),
        "{body}"
    );

    // Prompts: versions, labels, history, diff, releases.
    let body = h.page("/ui/prompts").await;
    assert!(body.contains("support/answer") && body.contains("production"));
    let body = h.page("/ui/prompts/support/answer").await;
    for want in [
        "id=\"versions\"",
        "id=\"label-moves\"",
        "because",
        "id=\"diff\"",
        "class=\"ins\"",
        "id=\"releases\"",
        "rel_",
    ] {
        assert!(body.contains(want), "prompt page lacks {want}");
    }
    assert!(!body.contains("<script>x()"), "prompt text not escaped");
    h.page("/ui/prompts/support/answer?a=1&b=1").await;
    assert_eq!(h.get("/ui/prompts/nope").await.status(), 404);

    // Evals and the comparison with its regression.
    let body = h.page("/ui/evals").await;
    assert!(body.contains("Suite support") && body.contains("run_a") && body.contains("<svg"));
    let body = h.page("/ui/evals/compare?a=run_a&b=run_b").await;
    assert!(body.contains("regression: 1"), "{body}");
    assert!(body.contains("c1") && !body.contains(XSS));
    let body = h
        .page("/ui/evals/compare?a=run_a&b=run_b&only=regressions")
        .await;
    assert!(body.contains("c2") && !body.contains(">c1<"), "{body}");

    // Experiments.
    let body = h.page("/ui/functions").await;
    for want in ["support", "control", "candidate", "share now", "50.0%"] {
        assert!(body.contains(want), "functions page lacks {want}");
    }

    // Governance.
    let body = h.page("/ui/governance").await;
    for want in [
        "id=\"keys\"",
        "id=\"audit\"",
        "prompt.label",
        "id=\"alerts-firing\"",
    ] {
        assert!(body.contains(want), "governance page lacks {want}");
    }

    // The stylesheet and the login form are served too.
    let css = h.get("/ui/style.css").await;
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    h.page("/ui/login").await;
    h.finish().await;
}

#[tokio::test]
async fn the_admin_key_guards_the_dashboard_when_auth_is_required() {
    const ADMIN: &str = "dash-admin-secret";
    let var = format!("KEEL_TEST_DASH_ADMIN_{}", std::process::id());
    std::env::set_var(&var, ADMIN);
    let h = Harness::with(Options {
        extra: format!("[auth]\nmode = \"required\"\nadmin_key_env = \"{var}\"\n"),
        ..Options::default()
    })
    .await;
    for path in [
        "/",
        "/ui/traces",
        "/ui/prompts",
        "/ui/evals",
        "/ui/functions",
        "/ui/governance",
    ] {
        let resp = h.get(path).await;
        assert_eq!(resp.status(), 401, "{path}");
        assert!(resp.text().await.unwrap().contains("action=\"/ui/login\""));
        let resp = h
            .client
            .get(h.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let resp = h
            .client
            .get(h.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    // The stylesheet and the login form stay open.
    assert_eq!(h.get("/ui/style.css").await.status(), 200);
    assert_eq!(h.get("/ui/login").await.status(), 200);

    // The login form sets the cookie only for the right key.
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirects
        .post(h.url("/ui/login"))
        .form(&[("key", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("set-cookie").is_none());
    let resp = no_redirects
        .post(h.url("/ui/login"))
        .form(&[("key", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("keel_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // A session id, never the key; it expires; `Secure` only over TLS.
    assert!(!cookie.contains(ADMIN), "{cookie}");
    assert!(cookie.contains("SameSite=Strict") && cookie.contains("Path=/"));
    assert!(cookie.contains("Max-Age="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    let resp = no_redirects
        .get(h.url("/ui/governance"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = no_redirects
        .get(h.url("/"))
        .header("cookie", "keel_session=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    h.finish().await;
}

/// A call made inside the app's OpenTelemetry trace (`traceparent`), and the app's own
/// span sent to `POST /v1/traces`: the trace page shows them together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_page_shows_the_apps_own_spans_from_the_same_trace() {
    let h = Harness::start().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let id = post(
        &h,
        "mock-1",
        "hello",
        &[("traceparent", traceparent.as_str())],
    )
    .await;
    let app_span = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "support-app"}}]},
        "scopeSpans": [{"scope": {"name": "app"}, "spans": [{
            "traceId": trace_id, "spanId": parent, "name": "retrieve-docs",
            "kind": 1, "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000"
        }]}]
    }]});
    let r = h
        .client
        .post(h.url("/v1/traces"))
        .header("content-type", "application/json")
        .body(app_span.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    wait_for_traces(&h, 1).await;
    let body = h.page(&format!("/ui/traces/{id}")).await;
    let at = body
        .find("<h2>App spans</h2>")
        .expect("an app spans section");
    let section = &body[at..];
    assert!(
        section.contains("retrieve-docs") && section.contains("support-app"),
        "{section}"
    );
    assert!(section.contains("500.0 ms"), "{section}");
}

/// Sign-in sessions: the cookie is a random session id (`Secure` behind TLS), logout
/// needs the session's form token (a cross-site post is refused) and ends the session
/// for good, and failed logins from one address are throttled with 429 + Retry-After.
#[tokio::test]
async fn dashboard_sessions_are_random_revocable_and_logins_are_throttled() {
    const ADMIN: &str = "dash-session-secret";
    let var = format!("KEEL_TEST_DASH_SESSION_{}", std::process::id());
    std::env::set_var(&var, ADMIN);
    let h = Harness::with(Options {
        extra: format!("[auth]\nmode = \"required\"\nadmin_key_env = \"{var}\"\n"),
        ..Options::default()
    })
    .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |proto: Option<&'static str>| {
        let mut r = client.post(h.url("/ui/login")).form(&[("key", ADMIN)]);
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        r.send()
    };
    let pair = |resp: &reqwest::Response| {
        let c = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        (c.split(';').next().unwrap().to_string(), c)
    };

    // Behind a TLS proxy the cookie is Secure; two logins get two different sessions.
    let resp = login(Some("https")).await.unwrap();
    assert_eq!(resp.status(), 303);
    let (_, full) = pair(&resp);
    assert!(full.contains("; Secure"), "{full}");
    let (a, _) = pair(&login(None).await.unwrap());
    let (b, _) = pair(&login(None).await.unwrap());
    assert_ne!(a, b);
    assert_eq!(a.len(), "keel_session=".len() + 64, "{a}");

    // The sign-out page carries the session's token.
    let page = client
        .get(h.url("/ui/logout"))
        .header("cookie", &a)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 64);

    // A cross-site logout (no token, another origin) is refused; the session lives on.
    for (origin, tok) in [("https://evil.example", ""), ("", ""), ("", "wrong")] {
        let mut r = client
            .post(h.url("/ui/logout"))
            .header("cookie", &a)
            .form(&[("token", tok)]);
        if !origin.is_empty() {
            r = r.header("origin", origin);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(
            resp.status(),
            403,
            "logout from {origin:?} with token {tok:?}"
        );
    }
    let ok = client
        .get(h.url("/"))
        .header("cookie", &a)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // With its token, logout ends the session server-side: replaying the cookie fails.
    let resp = client
        .post(h.url("/ui/logout"))
        .header("cookie", &a)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let gone = client
        .get(h.url("/"))
        .header("cookie", &a)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);
    // The other session is untouched.
    let other = client
        .get(h.url("/"))
        .header("cookie", &b)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    // Guessing: after a handful of failures the address gets 429 with Retry-After,
    // even for the right key.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let resp = client
            .post(h.url("/ui/login"))
            .form(&[("key", "guess")])
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    let first_429 = statuses.iter().position(|s| *s == 429).unwrap();
    assert!(first_429 <= 5, "{statuses:?}");
    assert!(
        statuses[..first_429].iter().all(|s| *s == 401),
        "{statuses:?}"
    );
    let resp = login(None).await.unwrap();
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 300, "{wait}");
    assert!(resp.headers().get("set-cookie").is_none());
    h.finish().await;
}

/// A caller that reuses another tenant's request id does not take over its trace: ids
/// are unique, the first call keeps the id (for `keel traces show` and the trace page),
/// the second is stored under a fresh id with the caller's id as `client_request_id`.
#[tokio::test]
async fn a_reused_request_id_never_resolves_to_another_tenants_call() {
    let h = Harness::start().await;
    let id = "order-42";
    let first = post(
        &h,
        "mock-1",
        "the victim's question",
        &[("x-keel-request-id", id), ("x-keel-tenant", "victim")],
    )
    .await;
    assert_eq!(first, id);
    wait_for_traces(&h, 1).await;
    post(
        &h,
        "mock-1",
        "the intruder's question",
        &[("x-keel-request-id", id), ("x-keel-tenant", "intruder")],
    )
    .await;
    wait_for_traces(&h, 2).await;
    let body = h.page(&format!("/ui/traces/{id}")).await;
    assert!(body.contains("victim"), "{body}");
    assert!(!body.contains("intruder"), "{body}");
    // The page points at the later call, stored under its own id.
    assert!(body.contains("id=\"reused\""), "{body}");
    let traces = common::read_traces(&h.store_path);
    assert_eq!(traces.len(), 2);
    let store = keel_store::Store::open(&h.store_path).unwrap();
    let conn = store.reader().unwrap();
    let shown = keel_store::get_trace(&conn, id).unwrap().unwrap();
    assert_eq!(shown.tenant.as_deref(), Some("victim"));
    let moved = traces
        .iter()
        .find(|t| t.tenant.as_deref() == Some("intruder"))
        .unwrap();
    assert_ne!(moved.id, id);
    let kept: Option<String> = conn
        .query_row(
            "SELECT client_request_id FROM traces WHERE id = ?1",
            [&moved.id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept.as_deref(), Some(id));
    assert!(body.contains(&format!("/ui/traces/{}", moved.id)), "{body}");
    drop(conn);
    h.finish().await;
}

/// Online quality on the Experiments page: per variant, the judged calls and the pass
/// rate with its interval, positive feedback, and whether the variants differ — the
/// figures `keel report` computes, from scores and feedback on the variants' live calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_experiments_page_shows_online_quality_and_whether_variants_differ() {
    let h = Harness::with(Options {
        extra: EXTRA.into(),
        ..Options::default()
    })
    .await;
    push(&h.store_path, PROMPT_V1);
    // Before any score: the page renders and says nothing was judged.
    let body = h.page("/ui/functions").await;
    assert!(body.contains("was judged online"), "{body}");

    let mut ids: Vec<(String, &str)> = Vec::new();
    let start = Instant::now();
    for variant in ["control", "candidate"] {
        let mut served = 0;
        while served < 12 {
            let body = json!({"model": "support", "variables": {"question": "hi"}});
            let resp = h
                .post_json(
                    "/v1/chat/completions",
                    &body,
                    &[("x-keel-variant", variant)],
                )
                .await;
            if resp.status() == 200 {
                ids.push((common::request_id(&resp), variant));
                served += 1;
            } else {
                // The registry has not loaded the prompt yet.
                assert!(start.elapsed() < Duration::from_secs(5), "never served");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    wait_for_traces(&h, 24).await;
    let store = Store::open(&h.store_path).unwrap();
    let mut conn = store.writer_conn().unwrap();
    for (i, (id, variant)) in ids.iter().enumerate() {
        let trace = loop {
            if let Some(t) = keel_store::get_trace(&store.reader().unwrap(), id).unwrap() {
                break t.id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Control passes 2 of 12, candidate 12 of 12.
        let passed = *variant == "candidate" || i < 2;
        let row = keel_store::scores::ScoreRow {
            metric: "helpful".into(),
            value: if passed { 0.9 } else { 0.1 },
            passed,
            reason: None,
        };
        keel_store::scores::replace_scores(
            &mut conn,
            &trace,
            "quality",
            "online",
            &[row],
            None,
            keel_store::prompts::now_ms(),
        )
        .unwrap();
        if i % 4 == 0 {
            let fb = keel_store::Feedback {
                trace_id: trace.clone(),
                name: "thumbs".into(),
                source: "user".into(),
                value: keel_store::FeedbackValue::Bool(passed),
                comment: None,
                key_id: None,
                at_ms: keel_store::prompts::now_ms(),
            };
            store.record_feedback(&fb, "admin").unwrap();
        }
    }

    let body = h.page("/ui/functions").await;
    for want in [
        "online pass (95% CI)",
        "feedback +",
        // Control 2/12 (Wilson 4.7–44.8 %), candidate 12/12 (75.8–100 %).
        "16.7% [4.7–44.8%]",
        "100.0% [75.8–100.0%]",
        "candidate passes more often than control (100.0% vs 16.7%, p &lt; 0.001)",
        "tag warn\">differ",
    ] {
        assert!(body.contains(want), "functions page lacks {want}: {body}");
    }
    // The prompt page's releases carry the same pass rates.
    let body = h.page("/ui/prompts/support/answer").await;
    assert!(body.contains("100.0% [75.8–100.0%] of 12"), "{body}");
    h.finish().await;
}
