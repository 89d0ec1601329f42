#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel prompt impact` and the "Token impact" paragraph of `keel prompt diff`, driven
//! through the built binary against a config in a temporary folder, with traffic seeded
//! into its store.

mod common;

use common::{stderr, write_prompt, Keel, SUPPORT_ANSWER};
use keel_core::trace::TraceRecord;

const KEEL: Keel = Keel::AS_TEST_USER;

const CONFIG: &str = r#"
prompts = "prompts"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.fast]
provider = "mock"
upstream_model = "gpt-4o-mini"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
[models.claude]
provider = "mock"
upstream_model = "claude-3-5-haiku-latest"
"#;

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(d.as_millis()).unwrap()
}

/// v1 (production) and v2 = v1 + 200 tokens in the system message; `calls` traces of the
/// prompt on `model` (upstream `upstream`) spread over the last 30 days.
fn project(calls: usize, model: &str, upstream: &str) -> tempfile::TempDir {
    let dir = common::project(CONFIG);
    write_prompt(dir.path(), "support/answer.toml", SUPPORT_ANSWER);
    KEEL.push_and_label_production(dir.path(), &["-m", "v1"], "launch");
    let longer = SUPPORT_ANSWER.replace(
        "for {{ product }}.",
        &format!("for {{{{ product }}}}.{}", " token".repeat(200)),
    );
    write_prompt(dir.path(), "support/answer.toml", &longer);
    KEEL.stdout_ok(dir.path(), &["prompt", "push", "-m", "v2"]);

    let store = keel_store::Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
    let now = now_ms();
    let step = 30 * DAY_MS / i64::try_from(calls.max(1)).unwrap();
    let traces = (0..calls).map(|i| {
        let at = now - 60_000 - step * i64::try_from(i).unwrap();
        let mut t = TraceRecord::new(format!("t{i}"), at, "openai", "/v1/chat/completions");
        t.model_requested = Some(model.into());
        t.upstream_model = Some(upstream.into());
        t.prompt_name = Some("support/answer".into());
        t.prompt_version = Some(1);
        t.input_tokens = Some(30);
        t
    });
    assert_eq!(common::record_traces(&store, traces).dropped_total, 0);
    dir
}

#[test]
fn impact_projects_200_tokens_on_3000_calls_as_9_cents_a_month() {
    let dir = project(3000, "fast", "gpt-4o-mini");
    let j = KEEL.json_ok(
        dir.path(),
        &["prompt", "impact", "support/answer", "--version", "2"],
    );
    assert_eq!(
        j["baseline"], 1,
        "the production label is the default baseline"
    );
    assert_eq!(j["candidate"], 2);
    assert_eq!(j["tokens"][0]["encoding"], "tiktoken o200k_base");
    assert_eq!(j["tokens"][0]["delta"], 200.0);
    assert_eq!(j["variables"]["source"], "synthetic");
    assert_eq!(j["calls"], 3000);
    assert_eq!(j["window"]["observed_days"], 30);
    assert_eq!(j["models"][0]["upstream_model"], "gpt-4o-mini");
    assert_eq!(j["models"][0]["input_per_mtok_usd"], "0.15");
    assert_eq!(j["monthly_change_usd"], "+0.09");
    assert_eq!(j["monthly_change_nanos"], 90_000_000);

    let text = KEEL.stdout_ok(
        dir.path(),
        &["prompt", "impact", "support/answer", "--version", "v2"],
    );
    assert!(text.contains("support/answer: v1 → v2"), "{text}");
    assert!(text.contains("tiktoken o200k_base"), "{text}");
    assert!(
        text.contains("no recorded inputs; synthetic variables"),
        "{text}"
    );
    assert!(text.contains("(+200.0, +"), "{text}");
    assert!(
        text.contains("Projected monthly cost change: +$0.09"),
        "{text}"
    );

    // Against v2 itself: nothing changes.
    let same = KEEL.json_ok(
        dir.path(),
        &[
            "prompt",
            "impact",
            "support/answer",
            "--version",
            "2",
            "--against",
            "2",
        ],
    );
    assert_eq!(same["monthly_change_usd"], "0.00");

    // The diff carries the same numbers, A as the baseline.
    let diff = KEEL.stdout_ok(
        dir.path(),
        &["prompt", "diff", "support/answer", "production", "2"],
    );
    assert!(diff.contains("## messages"), "{diff}");
    assert!(
        diff.contains("Token impact: prompt tokens per call"),
        "{diff}"
    );
    assert!(diff.contains("+$0.09"), "{diff}");
    let diff = KEEL.json_ok(dir.path(), &["prompt", "diff", "support/answer", "1", "2"]);
    assert_eq!(diff["token_impact"]["monthly_change_usd"], "+0.09");
    // Reversed, it is a saving.
    let back = KEEL.json_ok(dir.path(), &["prompt", "diff", "support/answer", "2", "1"]);
    assert_eq!(back["token_impact"]["monthly_change_usd"], "-0.09");
}

#[test]
fn non_openai_models_are_an_estimate() {
    let dir = project(300, "claude", "claude-3-5-haiku-latest");
    let j = KEEL.json_ok(
        dir.path(),
        &["prompt", "impact", "support/answer", "--version", "2"],
    );
    assert_eq!(j["tokens"][0]["encoding"], "estimate");
    assert_eq!(j["tokens"][0]["exact"], false);
    assert_eq!(j["models"][0]["encoding"], "estimate");
    // Priced from the built-in table by upstream model.
    assert!(j["monthly_change_nanos"].as_i64().unwrap() > 0);
    let text = KEEL.stdout_ok(
        dir.path(),
        &["prompt", "impact", "support/answer", "--version", "2"],
    );
    assert!(text.contains("Prompt tokens per call (estimate;"), "{text}");
}

#[test]
fn unknown_prompt_version_or_label_names_the_fix() {
    let dir = project(0, "fast", "gpt-4o-mini");
    let err = |args: &[&str]| {
        let out = KEEL.run(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        stderr(&out)
    };
    let e = err(&["prompt", "impact", "nope", "--version", "1"]);
    assert!(
        e.contains("no prompt `nope`") && e.contains("keel prompt push"),
        "{e}"
    );
    let e = err(&["prompt", "impact", "support/answer", "--version", "9"]);
    assert!(
        e.contains("no version 9") && e.contains("keel prompt history"),
        "{e}"
    );
    let e = err(&[
        "prompt",
        "impact",
        "support/answer",
        "--version",
        "2",
        "--against",
        "staging",
    ]);
    assert!(
        e.contains("no label `staging`") && e.contains("keel prompt label"),
        "{e}"
    );

    // Without traffic: tokens, and no projection.
    let text = KEEL.stdout_ok(
        dir.path(),
        &["prompt", "impact", "support/answer", "--version", "2"],
    );
    assert!(text.contains("no cost projection"), "{text}");
}

#[test]
fn impact_measures_the_prompts_folder_before_any_push() {
    let dir = project(3000, "fast", "gpt-4o-mini");
    // The pull request's edit, in the folder only: 400 tokens more than v1, not pushed.
    let longer = SUPPORT_ANSWER.replace(
        "for {{ product }}.",
        &format!("for {{{{ product }}}}.{}", " token".repeat(400)),
    );
    write_prompt(dir.path(), "support/answer.toml", &longer);
    let j = KEEL.json_ok(dir.path(), &["prompt", "impact", "support/answer"]);
    assert_eq!(j["baseline"], 1, "{j}");
    assert_eq!(j["candidate"], 0, "not pushed: {j}");
    assert_eq!(j["candidate_source"], "prompts_folder");
    assert_eq!(j["tokens"][0]["delta"], 400.0);
    assert_eq!(j["monthly_change_usd"], "+0.18");
    let text = KEEL.stdout_ok(dir.path(), &["prompt", "impact", "support/answer"]);
    assert!(
        text.contains("support/answer: v1 → the prompts folder (not pushed)"),
        "{text}"
    );
    // Nothing was pushed by measuring it.
    let list = KEEL.json_ok(dir.path(), &["prompt", "history", "support/answer"]);
    assert!(!list.to_string().contains("\"version\":3"), "{list}");

    // Folder content that was pushed is named by its version.
    write_prompt(dir.path(), "support/answer.toml", SUPPORT_ANSWER);
    let j = KEEL.json_ok(
        dir.path(),
        &["prompt", "impact", "support/answer", "--against", "2"],
    );
    assert_eq!(
        (j["baseline"].clone(), j["candidate"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(j["monthly_change_usd"], "-0.09");
}
