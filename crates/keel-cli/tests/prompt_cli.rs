#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel prompt …`, `keel audit` and the prompt part of `keel check`, driven through the
//! built binary against a config in a temporary folder.

mod common;

use std::path::Path;
use std::process::Command;

use common::{stderr, stdout, write_prompt, Keel, SUPPORT_ANSWER};
use serde_json::Value;

const KEEL: Keel = Keel::AS_TEST_USER;

const CONFIG: &str = r#"
prompts = "prompts"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
upstream_model = "mock-1"
"#;

/// The config and `support/answer`, not yet pushed.
fn project() -> tempfile::TempDir {
    let dir = common::project(CONFIG);
    write_prompt(dir.path(), "support/answer.toml", SUPPORT_ANSWER);
    dir
}

#[test]
fn push_is_idempotent_and_a_change_is_a_new_version() {
    let dir = project();
    let out = KEEL.run(
        dir.path(),
        &["prompt", "push", "--author", "Ann", "-m", "first"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("support/answer: created v1"),
        "{}",
        stdout(&out)
    );
    let out = KEEL.run(dir.path(), &["prompt", "push"]);
    assert!(
        stdout(&out).contains("support/answer: unchanged (v1)"),
        "{}",
        stdout(&out)
    );

    write_prompt(
        dir.path(),
        "support/answer.toml",
        &SUPPORT_ANSWER.replace("support agent", "support engineer"),
    );
    let dry = KEEL.json_ok(dir.path(), &["prompt", "push", "--dry-run"]);
    assert_eq!(dry["prompts"][0]["outcome"], "created");
    assert_eq!(dry["prompts"][0]["version"], 2);
    let pushed = KEEL.json_ok(dir.path(), &["prompt", "push"]);
    assert_eq!(pushed["prompts"][0]["version"], 2, "dry run wrote nothing");
    // Outside git, without flags: $USER and "no reason given".
    assert_eq!(pushed["prompts"][0]["author"], "test-user");
    assert_eq!(pushed["prompts"][0]["reason"], "no reason given");

    let shown = KEEL.json_ok(
        dir.path(),
        &["prompt", "show", "support/answer", "--version", "1"],
    );
    assert_eq!(shown["author"], "Ann");
    assert_eq!(shown["reason"], "first");
    assert_eq!(shown["content"]["messages"][0]["role"], "system");
}

#[test]
fn push_refuses_an_invalid_folder() {
    let dir = project();
    write_prompt(dir.path(), "bad.toml", "template = \"{{ ghost }}\"\n");
    let out = KEEL.run(dir.path(), &["prompt", "push"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.toml: template: variable `ghost` is used but not declared"),
        "{err}"
    );
    let list = KEEL.json_ok(dir.path(), &["prompt", "list"]);
    assert_eq!(
        list["prompts"].as_array().map(Vec::len),
        Some(0),
        "nothing pushed"
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Grace Hopper",
            "-c",
            "user.email=grace@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}

#[test]
fn uncommitted_content_is_never_credited_to_the_last_commit() {
    let dir = project();
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "prompts"]);
    git(
        dir.path(),
        &["commit", "-q", "-m", "Answer prompt: be concise"],
    );
    KEEL.json_ok(dir.path(), &["prompt", "push"]);
    // Edited after the commit: refused without an author and a reason.
    let file = dir.path().join("prompts/support/answer.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("support agent", "helpful support agent"),
    )
    .unwrap();
    let out = KEEL.run(dir.path(), &["prompt", "push"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("uncommitted") && err.contains("--author") && err.contains("--reason"),
        "{err}"
    );
    let history = KEEL.json_ok(dir.path(), &["prompt", "history", "support/answer"]);
    assert!(!history.to_string().contains("\"version\":2"), "{history}");
    // With both: pushed as uncommitted, with no commit credited.
    let out = KEEL.stdout_ok(
        dir.path(),
        &[
            "prompt",
            "push",
            "--author",
            "Ann",
            "--reason",
            "trying a tone",
        ],
    );
    assert!(
        out.contains("created v2 (Ann: trying a tone; uncommitted)"),
        "{out}"
    );
    let shown = KEEL.json_ok(dir.path(), &["prompt", "show", "support/answer"]);
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["author"], "Ann");
    assert_eq!(shown["reason"], "trying a tone");
    assert_eq!(shown["commit_id"], serde_json::Value::Null);
    // Pushing it again is no new version, so nothing needs to be said.
    let again = KEEL.stdout_ok(dir.path(), &["prompt", "push"]);
    assert!(again.contains("unchanged (v2)"), "{again}");
}

#[test]
fn author_reason_and_commit_come_from_git() {
    let dir = project();
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "prompts"]);
    git(
        dir.path(),
        &["commit", "-q", "-m", "Answer prompt: be concise"],
    );
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let head = stdout(&head).trim().to_string();

    KEEL.json_ok(dir.path(), &["prompt", "push"]);
    let shown = KEEL.json_ok(dir.path(), &["prompt", "show", "support/answer"]);
    assert_eq!(shown["author"], "Grace Hopper <grace@example.com>");
    assert_eq!(shown["reason"], "Answer prompt: be concise");
    assert_eq!(shown["commit_id"], head.as_str());
    assert_eq!(shown["version"], 1);
}

#[test]
fn label_rollback_history_diff_and_audit() {
    let dir = project();
    KEEL.json_ok(dir.path(), &["prompt", "push", "-m", "v1"]);
    write_prompt(
        dir.path(),
        "support/answer.toml",
        &SUPPORT_ANSWER.replace("support agent", "support engineer"),
    );
    KEEL.json_ok(dir.path(), &["prompt", "push", "-m", "v2"]);

    KEEL.json_ok(
        dir.path(),
        &[
            "prompt",
            "label",
            "support/answer",
            "1",
            "production",
            "--reason",
            "launch",
        ],
    );
    let moved = KEEL.json_ok(
        dir.path(),
        &[
            "prompt",
            "label",
            "support/answer",
            "v2",
            "production",
            "--reason",
            "better",
            "--actor",
            "bob",
        ],
    );
    assert_eq!(
        (moved["from_version"].as_i64(), moved["to_version"].as_i64()),
        (Some(1), Some(2))
    );

    let out = KEEL.run(
        dir.path(),
        &[
            "prompt",
            "label",
            "support/answer",
            "9",
            "production",
            "--reason",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no version 9"));

    let back = KEEL.json_ok(
        dir.path(),
        &[
            "prompt",
            "rollback",
            "support/answer",
            "production",
            "--reason",
            "complaints",
        ],
    );
    assert_eq!(back["to_version"], 1);
    assert_eq!(back["actor"], "test-actor");
    let shown = KEEL.json_ok(
        dir.path(),
        &["prompt", "show", "support/answer", "--label", "production"],
    );
    assert_eq!(shown["version"], 1);

    let list = KEEL.json_ok(dir.path(), &["prompt", "list"]);
    assert_eq!(list["prompts"][0]["latest_version"], 2);
    assert_eq!(list["prompts"][0]["labels"]["production"], 1);

    let history = KEEL.json_ok(dir.path(), &["prompt", "history", "support/answer"]);
    let versions: Vec<i64> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["version"].as_i64())
        .collect();
    assert_eq!(versions, [2, 1]);
    let moves = history["label_moves"].as_array().unwrap();
    assert_eq!(moves.len(), 3);
    assert_eq!(moves[0]["reason"], "complaints");
    assert_eq!(moves[0]["to_version"], 1);

    let d = KEEL.json_ok(
        dir.path(),
        &["prompt", "diff", "support/answer", "production", "2"],
    );
    assert_eq!(d["identical"], false);
    let unified = d["sections"][0]["unified"].as_str().unwrap();
    assert!(
        unified.contains("-You are a support agent")
            && unified.contains("+You are a support engineer"),
        "{unified}"
    );
    let same = KEEL.json_ok(
        dir.path(),
        &["prompt", "diff", "support/answer", "1", "production"],
    );
    assert_eq!(same["identical"], true);

    let audit = KEEL.json_ok(dir.path(), &["audit", "--since", "1h"]);
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "prompt.rollback",
            "prompt.label",
            "prompt.label",
            "prompt.push",
            "prompt.push"
        ]
    );
    assert_eq!(audit["events"][0]["reason"], "complaints");
    assert_eq!(audit["events"][1]["actor"], "bob");
    let human = KEEL.run(dir.path(), &["audit", "--limit", "1"]);
    assert!(stdout(&human).contains("prompt.rollback") && !stdout(&human).contains("prompt.push"));
}

#[test]
fn check_fails_on_an_undeclared_variable_and_warns_on_unused() {
    let dir = project();
    let ok = KEEL.run(dir.path(), &["check"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("1 prompt"), "{}", stdout(&ok));

    write_prompt(
        dir.path(),
        "summary.toml",
        "template = \"{{ txt }}\"\n[variables.text]\ntype = \"string\"\n",
    );
    let out = KEEL.run(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("summary.toml: template: variable `txt` is used but not declared"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("warning:")
            && stdout(&out).contains("`text` is declared but no template uses it")
    );

    let out = KEEL.run(dir.path(), &["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["prompts"]["errors"][0]["path"], "template");
    assert!(v["prompts"]["errors"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("summary.toml"));
    assert_eq!(v["prompts"]["warnings"][0]["path"], "variables.text");
}
