#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel replay`, driven through the built binary: recorded traffic is seeded by a real
//! `keel serve` (mock provider in-process, prompts pushed on start), then replayed on
//! another variant, another model and a new prompt version, and read back as a run.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, write_prompt, Keel};
use serde_json::Value;

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "test-actor")]);

const CONFIG: &str = r#"
prompts = "prompts"

[gateway]
listen = "127.0.0.1:0"
store = "keel.db"
capture = "full"

[providers.mock]
kind = "mock"

[models.mock-1]
provider = "mock"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

# No price: its calls are unpriced, never $0.
[models.house-model]
provider = "mock"
upstream_model = "house-model-v1"

[registry]
refresh = "100ms"
push_on_start = true
bootstrap_label = "production"

[functions.support]
description = "answers"

[[functions.support.variants]]
name = "control"
prompt = "support/answer"
prompt_label = "production"
model = "mock-1"
weight = 100

[[functions.support.variants]]
name = "other"
prompt = "support/answer"
prompt_label = "production"
model = "house-model"
weight = 0
"#;

fn prompt(user_prefix: &str) -> String {
    format!(
        r#"
[[messages]]
role = "system"
content = "You support {{{{ product }}}}."
[[messages]]
role = "user"
content = "{user_prefix} {{{{ question }}}}"
[variables.product]
type = "string"
[variables.question]
type = "string"
"#
    )
}

const QUESTIONS: [&str; 3] = ["alpha", "beta", "gamma"];

fn project() -> tempfile::TempDir {
    let dir = common::project(CONFIG);
    write_prompt(dir.path(), "support/answer.toml", &prompt("Q:"));
    dir
}

/// `keel serve` on port 0 (the kernel picks a free one; a port chosen here and freed
/// before Keel binds it could be taken by a parallel test); returns once it prints
/// the address it listens on, and that address's port.
fn serve(dir: &Path) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("keel.toml"))
        .env_remove("KEEL_CONFIG")
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("keel gateway listening on http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("keel serve did not start: {line:?}"));
    (child, port)
}

/// POST a function call over plain HTTP/1.1; returns the status line and body.
fn call(port: u16, question: &str) -> String {
    let body = format!(
        r#"{{"model":"support","variables":{{"product":"Keel","question":"{question}"}}}}"#
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// SIGTERM, then wait: the gateway drains its trace queue before exiting.
fn stop(mut child: Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "keel serve did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A project with one recorded call per question, served by `control` on prompt v1.
fn recorded() -> tempfile::TempDir {
    let dir = project();
    let (child, port) = serve(dir.path());
    for q in QUESTIONS {
        let resp = call(port, q);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains(&format!("Mock reply to: Q: {q}")), "{resp}");
    }
    stop(child);
    dir
}

fn outputs(run: &Value, side: &str) -> Vec<String> {
    let mut all: Vec<String> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[side]["output"].as_str().unwrap_or("").to_string())
        .collect();
    all.sort();
    all
}

#[test]
fn replays_a_variant_a_model_and_a_prompt_version_and_stores_each_run() {
    let dir = recorded();
    let d = dir.path();
    let recorded_outputs: Vec<String> = QUESTIONS
        .iter()
        .map(|q| format!("Mock reply to: Q: {q}"))
        .collect();

    // Another variant: its model is unpriced, and the run says so.
    let run = KEEL.json_ok(
        d,
        &["replay", "--function", "support", "--candidate", "other"],
    );
    assert_eq!(run["cases"], 3);
    assert_eq!(run["failures"], 0);
    assert_eq!(run["candidate_kind"], "variant");
    assert_eq!(run["actor"], "test-actor");
    assert!(run["finished_at_ms"].is_i64());
    assert_eq!(outputs(&run, "recorded"), recorded_outputs);
    assert_eq!(outputs(&run, "new"), recorded_outputs);
    for c in run["results"].as_array().unwrap() {
        assert_eq!(c["recorded"]["variant"], "control");
        assert_eq!(c["recorded"]["model"], "mock-1");
        assert!(c["recorded"]["cost_nanos"].as_i64().unwrap() > 0);
        assert_eq!(c["new"]["variant"], "other");
        assert_eq!(c["new"]["model"], "house-model");
        assert_eq!(c["new"]["unpriced"], true);
        assert_eq!(c["new"]["cost_nanos"], Value::Null);
    }
    assert_eq!(run["totals"]["identical_outputs"], 3);
    assert_eq!(run["totals"]["candidate"]["unpriced_calls"], 3);
    assert_eq!(run["totals"]["candidate"]["priced_calls"], 0);

    // The run is stored: `show` reads back the same run.
    let id = run["id"].as_str().unwrap();
    assert!(id.starts_with("rpl_"), "{id}");
    assert_eq!(KEEL.json_ok(d, &["replay", "show", id]), run);

    // Another model: a synthetic variant of the one that served each call.
    let run = KEEL.json_ok(
        d,
        &["replay", "--function", "support", "--model", "house-model"],
    );
    assert_eq!(run["cases"], 3);
    assert_eq!(run["results"][0]["new"]["variant"], "control@house-model");

    // A new prompt version changes the user message, so the mock's reply changes.
    write_prompt(d, "support/answer.toml", &prompt("Q2:"));
    KEEL.stdout_ok(d, &["prompt", "push", "--author", "t", "--message", "m"]);
    let run = KEEL.json_ok(
        d,
        &[
            "replay",
            "--function",
            "support",
            "--prompt-version",
            "2",
            "--concurrency",
            "2",
        ],
    );
    assert_eq!(run["cases"], 3);
    assert_eq!(outputs(&run, "recorded"), recorded_outputs);
    let want: Vec<String> = QUESTIONS
        .iter()
        .map(|q| format!("Mock reply to: Q2: {q}"))
        .collect();
    assert_eq!(outputs(&run, "new"), want);
    for c in run["results"].as_array().unwrap() {
        assert_eq!(c["recorded"]["prompt_version"], 1);
        assert_eq!(c["new"]["prompt_version"], 2);
        assert_eq!(c["new"]["variant"], "control@v2");
    }
    assert_eq!(run["totals"]["identical_outputs"], 0);

    let runs = KEEL.json_ok(d, &["replay", "list"]);
    assert_eq!(runs.as_array().unwrap().len(), 3);
    assert_eq!(runs[0]["id"], run["id"], "newest first");

    // The human view: side by side, with totals; unpriced is never $0.
    let out = KEEL.run(d, &["replay", "show", id]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for want in [
        "recorded",
        "candidate",
        "other v1 (house-model)",
        "identical",
        "unpriced",
        "Totals: 3 cases",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    assert!(!text.contains("$0.00 "), "{text}");
}

#[test]
fn setup_errors_exit_2_and_name_what_is_configured() {
    let dir = project();
    let d = dir.path();
    // Prompt v1 pushed and labelled, as `keel serve` would on start; no traffic yet.
    KEEL.push_and_label_production(d, &["--author", "t", "--message", "m"], "r");

    let out = KEEL.run(
        d,
        &["replay", "--function", "support", "--prompt-version", "9"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no version 9"), "{err}");

    let out = KEEL.run(
        d,
        &["replay", "--function", "support", "--candidate", "nope"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("its variants are: control, other"), "{err}");

    let out = KEEL.run(d, &["replay", "--function", "nope", "--model", "mock-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no function `nope`"));

    let out = KEEL.run(
        d,
        &[
            "replay",
            "--function",
            "support",
            "--candidate",
            "other",
            "--filter",
            "region=eu",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("valid keys: tenant, feature"));

    // Nothing recorded yet: nothing to replay, nothing stored.
    let out = KEEL.run(
        d,
        &["replay", "--function", "support", "--candidate", "other"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("No recorded calls of `support`"));
    assert_eq!(KEEL.json_ok(d, &["replay", "list"]), serde_json::json!([]));

    let out = KEEL.run(d, &["replay", "show", "rpl_missing"]);
    assert_eq!(out.status.code(), Some(1));
}
