#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The prompt playground in-process, as a browser uses it: the pages render, a draft is
//! kept and reloaded, a draft runs beside the live version on typed and recorded
//! variables (through the request path, traced as playground traffic, not live), a
//! suite shows a known regression, saving is audited and moves no label, errors are
//! shown, and the admin key (and the session's form token with the cookie) guard it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, Options};
use keel_core::trace::Origin;
use keel_store::Store;
use serde_json::json;

const LIVE: &str = r#"
[[messages]]
role = "user"
content = "Answer: {{ question }}"
[variables.question]
type = "string"
"#;

const DRAFT: &str = "[[messages]]\r\nrole = \"user\"\r\ncontent = \"Briefly: {{ question }}\"\r\n\
                     [variables.question]\r\ntype = \"string\"\r\n";

const EXTRA: &str = r#"
[registry]
refresh = "100ms"

[functions.support]
[[functions.support.variants]]
name = "control"
prompt = "support/answer"
model = "local"
weight = 1
"#;

/// Push `text` as the next version of support/answer and point `production` at it.
fn push(h: &Harness, text: &str) -> i64 {
    let v = common::push_prompt(&h.store_path, text);
    common::set_prompt_label(&h.store_path, v, "production");
    v
}

const PAGE: &str = "/ui/playground/support/answer";

async fn start(extensions: keel_gateway::Extensions) -> Harness {
    let h = Harness::with_extensions(
        Options {
            extra: EXTRA.into(),
            ..Options::default()
        },
        extensions,
    )
    .await;
    push(&h, LIVE);
    h
}

/// Post the editor form with `fields` (plus the draft text and model unless given).
async fn post(h: &Harness, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    if !fields.iter().any(|(k, _)| *k == "source") {
        form.push(("source", DRAFT));
    }
    if !fields.iter().any(|(k, _)| *k == "model") {
        form.push(("model", "local"));
    }
    common::no_redirects()
        .post(h.url(PAGE))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn post_page(h: &Harness, fields: &[(&str, &str)]) -> String {
    let resp = post(h, fields).await;
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn traces(h: &Harness) -> Vec<keel_core::trace::TraceRecord> {
    common::read_traces(&h.store_path)
}

/// Wait until `n` traces satisfy `pred`.
async fn wait_traces(h: &Harness, n: usize, pred: impl Fn(&keel_core::trace::TraceRecord) -> bool) {
    let start = Instant::now();
    while traces(h).iter().filter(|t| pred(t)).count() < n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "traces not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_is_kept_reloaded_and_run_beside_the_live_version() {
    let h = start(keel_gateway::Extensions::default()).await;
    let index = h.page("/ui/playground").await;
    assert!(
        index.contains("href=\"/ui/playground/support/answer\""),
        "{index}"
    );
    assert!(h.page("/").await.contains("href=\"/ui/playground\""));
    let editor = h.page(PAGE).await;
    assert!(editor.contains("Answer: {{ question }}"), "{editor}");
    assert!(editor.contains("name=\"var.question\""));
    assert!(editor.contains("production</span> → v1"));

    // Keep: a redirect to the stored draft, which reloads with the edited text.
    let resp = post(
        &h,
        &[
            ("action", "keep"),
            ("author", "ana"),
            ("var.question", "hi"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let to = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to.starts_with("/ui/playground/support/answer?draft=drf_"),
        "{to}"
    );
    let id = to.split("draft=").nth(1).unwrap().to_string();
    let reloaded = h.page(&to).await;
    assert!(reloaded.contains("Briefly: {{ question }}") && reloaded.contains(&id));
    assert!(
        reloaded.contains(">hi</textarea>"),
        "typed variables come back"
    );
    assert!(h.page("/ui/playground").await.contains(&id));

    // Run on typed variables: both outputs, side by side.
    let body = post_page(
        &h,
        &[
            ("action", "run"),
            ("draft", &id),
            ("var.question", "hello <b>"),
        ],
    )
    .await;
    assert!(body.contains("id=\"results\""), "{body}");
    assert!(
        body.contains("Mock reply to: Briefly: hello &lt;b&gt;"),
        "draft output (escaped): {body}"
    );
    assert!(
        body.contains("Mock reply to: Answer: hello &lt;b&gt;"),
        "live output"
    );
    assert!(!body.contains("<b>"), "nothing unescaped");
    assert!(body.contains("differs"));

    // Recorded inputs: the variables of a live call of the function (once the
    // registry serves the pushed version).
    let start = Instant::now();
    loop {
        let resp = h
            .post_json(
                "/v1/chat/completions",
                &json!({"model": "support", "variables": {"question": "from production"}}),
                &[],
            )
            .await;
        if resp.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the function never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The successful call's trace (earlier calls may have failed while the function loaded).
    wait_traces(&h, 1, |t| {
        t.origin == Origin::Live && t.status == keel_core::trace::TraceStatus::Ok
    })
    .await;
    let body = post_page(&h, &[("action", "recorded"), ("draft", &id)]).await;
    assert!(
        body.contains("Mock reply to: Briefly: from production"),
        "{body}"
    );
    assert!(body.contains("Mock reply to: Answer: from production"));

    // Every playground call is traced, as eval-origin playground traffic.
    wait_traces(&h, 4, |t| t.tags.iter().any(|g| g == "keel:playground")).await;
    let all = traces(&h);
    let play: Vec<_> = all
        .iter()
        .filter(|t| t.tags.iter().any(|g| g == "keel:playground"))
        .collect();
    assert_eq!(play.len(), 4);
    for t in &play {
        assert_eq!(t.origin, Origin::Eval);
        assert_eq!(t.endpoint, "playground");
        assert_eq!(t.prompt_name.as_deref(), Some("support/answer"));
        assert!(t.tags.contains(&format!("draft:{id}")), "{:?}", t.tags);
    }
    let live_side = play
        .iter()
        .filter(|t| t.tags.iter().any(|g| g == "playground:live"))
        .count();
    assert_eq!(live_side, 2);
    assert!(play
        .iter()
        .filter(|t| t.tags.iter().any(|g| g == "playground:live"))
        .all(|t| t.prompt_version == Some(1)));
    let live_ok = all
        .iter()
        .filter(|t| t.origin == Origin::Live && t.status == keel_core::trace::TraceStatus::Ok)
        .count();
    assert_eq!(live_ok, 1, "playground calls are not live traffic");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_errors_and_missing_variables_are_shown() {
    let h = start(keel_gateway::Extensions::default()).await;
    let body = post_page(
        &h,
        &[
            ("action", "run"),
            (
                "source",
                "template = \"{{ question \"\n[variables.question]\ntype = \"string\"\n",
            ),
            ("var.question", "x"),
        ],
    )
    .await;
    assert!(body.contains("template syntax error"), "{body}");
    assert!(body.contains("nothing was run or saved"));
    assert!(!body.contains("id=\"results\""));
    let body = post_page(&h, &[("action", "run"), ("var.question", "")]).await;
    assert!(
        body.contains("variable `question` is required"),
        "missing variable named: {body}"
    );
    let body = post_page(&h, &[("action", "run"), ("model", "nope")]).await;
    assert!(body.contains("model `nope` is not configured"), "{body}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_a_version_is_audited_and_moves_no_label() {
    let h = start(keel_gateway::Extensions::default()).await;
    let body = post_page(&h, &[("action", "save"), ("author", "ana")]).await;
    assert!(body.contains("needs an author and a reason"), "{body}");
    let body = post_page(
        &h,
        &[
            ("action", "save"),
            ("author", "ana"),
            ("reason", "shorter answers"),
        ],
    )
    .await;
    assert!(body.contains("Saved as v2"), "{body}");
    assert!(
        body.contains("id=\"saved\""),
        "the draft says what it became"
    );

    let store = Store::open(&h.store_path).unwrap();
    let conn = store.reader().unwrap();
    assert_eq!(
        keel_store::label_version(&conn, "support/answer", "production").unwrap(),
        Some(1),
        "no label moved"
    );
    assert_eq!(
        keel_store::label_moves(&conn, "support/answer")
            .unwrap()
            .len(),
        1
    );
    let v2 = keel_store::get_version(&conn, "support/answer", 2)
        .unwrap()
        .unwrap();
    assert_eq!(
        (v2.author.as_str(), v2.reason.as_str()),
        ("ana", "shorter answers")
    );
    assert!(v2.content_json.contains("Briefly"));
    let audit = keel_store::list_audit(&conn, 0, 0).unwrap();
    let push = audit
        .iter()
        .find(|e| e.action == "prompt.push" && e.to_value.as_deref() == Some("v2"))
        .expect("the save is audited");
    assert_eq!(push.actor, "ana");
    assert_eq!(push.reason.as_deref(), Some("shorter answers"));
    assert!(push
        .details_json
        .as_deref()
        .unwrap()
        .contains("\"source\":\"playground\""));
    assert!(!audit
        .iter()
        .any(|e| e.action == "prompt.label" && e.to_value.as_deref() == Some("v2")));
    // Saving the same content again saves nothing.
    let body = post_page(
        &h,
        &[("action", "save"), ("author", "ana"), ("reason", "again")],
    )
    .await;
    assert!(body.contains("nothing was saved"), "{body}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_shows_the_drafts_regression_against_live() {
    let h = start(keel_gateway::Extensions {
        suites: Some(Arc::new(keel_evals::playground::PlaygroundSuites)),
        ..keel_gateway::Extensions::default()
    })
    .await;
    let dir = std::path::Path::new(&h.store_path)
        .parent()
        .unwrap()
        .join("evals");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("support.toml"),
        "[target]\nfunction = \"support\"\nvariant = \"control\"\n[dataset]\npath = \"support.jsonl\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("support.jsonl"),
        concat!(
            r#"{"id": "c1", "variables": {"question": "refund please"}, "assert": [{"type": "contains", "value": "refund"}]}"#,
            "\n",
            r#"{"id": "c2", "variables": {"question": "42"}, "assert": [{"type": "contains", "value": "42"}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let editor = h.page(PAGE).await;
    assert!(editor.contains("<option>support</option>"), "{editor}");
    let upper = LIVE.replace("{{ question }}", "{{ question | upper }}");
    let body = post_page(
        &h,
        &[("action", "eval"), ("suite", "support"), ("source", &upper)],
    )
    .await;
    assert!(body.contains("id=\"eval-results\""), "{body}");
    assert!(body.contains("Ran the first 2 of 2 cases"), "{body}");
    assert!(body.contains("regressions: 1"), "{body}");
    assert!(
        body.contains(">c1<") && body.contains("tag regression"),
        "{body}"
    );
    assert!(
        body.contains("REFUND PLEASE"),
        "the draft's output on c1: {body}"
    );
    assert!(!body.contains(">c2<"), "c2 passes on both");
    assert!(body.contains("not locked"));
    // Stored as eval runs, linked for the full comparison; no label moved.
    assert!(body.contains("/ui/evals/compare?a=evr_"));
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.reader().unwrap();
    assert_eq!(
        keel_store::label_version(&conn, "support/answer", "production").unwrap(),
        Some(1)
    );
    // A form field is never a path: only the suites the page offers run.
    let probe = h.store_path.clone();
    let refused = post_page(
        &h,
        &[
            ("action", "eval"),
            ("suite", probe.as_str()),
            ("source", &upper),
        ],
    )
    .await;
    assert!(refused.contains("is not an eval suite"), "{refused}");
    assert!(!refused.contains("id=\"eval-results\""), "{refused}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_and_the_form_token_guard_the_playground() {
    const ADMIN: &str = "play-admin-secret";
    let var = format!("KEEL_TEST_PLAY_ADMIN_{}", std::process::id());
    std::env::set_var(&var, ADMIN);
    let h = Harness::with(Options {
        extra: format!("{EXTRA}\n[auth]\nmode = \"required\"\nadmin_key_env = \"{var}\"\n"),
        ..Options::default()
    })
    .await;
    push(&h, LIVE);
    for path in ["/ui/playground", PAGE] {
        assert_eq!(h.get(path).await.status(), 401, "{path}");
    }
    assert_eq!(post(&h, &[("action", "keep")]).await.status(), 401);
    let resp = h
        .client
        .get(h.url(PAGE))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // With the header, a post needs no token.
    let resp = common::no_redirects()
        .post(h.url(PAGE))
        .bearer_auth(ADMIN)
        .form(&[("action", "keep"), ("source", DRAFT), ("model", "local")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    // With a session cookie (from the login form), the form must carry the session's
    // token that the page gives.
    let login = common::no_redirects()
        .post(h.url("/ui/login"))
        .form(&[("key", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let form = |token: &str| {
        vec![
            ("action".to_string(), "keep".to_string()),
            ("source".into(), DRAFT.into()),
            ("model".into(), "local".into()),
            ("token".into(), token.to_string()),
        ]
    };
    let resp = common::no_redirects()
        .post(h.url(PAGE))
        .header("cookie", &cookie)
        .form(&form("forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let editor = common::no_redirects()
        .get(h.url(PAGE))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = editor
        .split("name=\"token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 64);
    assert!(
        !editor.contains(ADMIN),
        "the key itself is never in the page"
    );
    let resp = common::no_redirects()
        .post(h.url(PAGE))
        .header("cookie", &cookie)
        .form(&form(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    // A post from another site is refused whatever it carries.
    let resp = common::no_redirects()
        .post(h.url(PAGE))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .form(&form(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    h.finish().await;
}
