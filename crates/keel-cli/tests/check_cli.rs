#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel check` reports every problem at once and says where each is: every unknown key
//! of keel.toml in one run, and a function's error counted in keel.toml, not in the
//! prompts folder.

mod common;

use common::{project, stderr, write_prompt, Keel, SUPPORT_ANSWER};

const KEEL: Keel = Keel::AS_TEST_USER;

const CONFIG: &str = r#"
prompts = "prompts"
[gateway]
listen = "127.0.0.1:0"
store = "keel.db"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
[functions.support-answer]
[[functions.support-answer.variants]]
name = "control"
prompt = "support/answer"
model = "mock-1"
weight = 1
"#;

#[test]
fn every_unknown_key_is_reported_in_one_run() {
    let bad = CONFIG
        .replace("listen =", "lisen =")
        .replace("provider = \"mock\"", "provder = \"mock\"")
        .replace("weight = 1", "wieght = 1");
    let dir = project(&bad);
    write_prompt(dir.path(), "support/answer.toml", SUPPORT_ANSWER);
    let out = KEEL.run(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "gateway.lisen",
        "did you mean `listen`?",
        "models.mock-1.provder",
        "did you mean `provider`?",
        "functions.support-answer.variants[0].wieght",
        "did you mean `weight`?",
        "3 errors in",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    let v = KEEL.run(dir.path(), &["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(3), "{v}");
}

#[test]
fn a_function_error_is_counted_in_keel_toml_not_in_the_prompts_folder() {
    let dir = project(CONFIG);
    write_prompt(dir.path(), "other.toml", SUPPORT_ANSWER);
    let out = KEEL.run(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no prompt `support/answer`"), "{err}");
    assert!(
        err.contains("1 error in ") && err.contains("keel.toml"),
        "{err}"
    );
    assert!(!err.contains("in the prompts folder\n"), "{err}");
    let v = KEEL.run(dir.path(), &["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["errors"][0]["path"],
        "functions.support-answer.variants[0].prompt"
    );
    assert_eq!(
        v["prompts"]["errors"].as_array().map(Vec::len),
        Some(0),
        "{v}"
    );
}
