#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel eval run` beyond the quickstart's function suite: `--repeat N` against a mock
//! whose answers vary per sample (seeded 500s, no retries, one call in flight so the
//! dice fall the same way every run), and suites whose target is a prompt on a model —
//! pinned to a version, following a label, or as it is in the prompts folder.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::{stdout_and_stderr, write_prompt, Keel, SUPPORT_ANSWER};
use keel_store::evals::{eval_results, EvalResult};
use serde_json::Value;

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "ci")]);

/// Half the calls fail with a 500 at random (seeded): a sample passes or fails by the
/// dice, never by its content.
const FLAKY: &str = r#"
evals = "evals"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[providers.mock.mock]
rate_500 = 0.5
seed = 11
[models.mock-1]
provider = "mock"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"#;

const REPEAT_SUITE: &str = r#"
[target]
model = "mock-1"
[dataset]
path = "cases.jsonl"
[[assert]]
type = "starts-with"
value = "Mock reply to:"
[run]
concurrency = 1
max_retries = 0
"#;

/// Write `evals/<suite>.toml` and its dataset, then lock it through the CLI.
fn suite(dir: &Path, name: &str, toml: &str, dataset: &str, lines: &str) {
    fs::create_dir_all(dir.join("evals")).unwrap();
    fs::write(dir.join("evals").join(format!("{name}.toml")), toml).unwrap();
    fs::write(dir.join("evals").join(dataset), lines).unwrap();
    let o = KEEL.run(dir, &["eval", "lock", name, "--reason", "test cases"]);
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));
}

fn results(dir: &Path, run_id: &str) -> Vec<EvalResult> {
    let store = keel_store::Store::open(dir.join("keel.db").to_str().unwrap()).unwrap();
    eval_results(&store.reader().unwrap(), run_id).unwrap()
}

#[test]
fn repeat_runs_every_case_n_times_and_a_case_passes_when_half_its_samples_do() {
    let dir = common::project(FLAKY);
    let cases: String = (0..8)
        .map(|i| format!("{{\"id\":\"c{i}\",\"input\":\"question {i}\"}}\n"))
        .collect();
    suite(dir.path(), "flaky", REPEAT_SUITE, "cases.jsonl", &cases);
    let o = KEEL.run(
        dir.path(),
        &[
            "eval",
            "run",
            "flaky",
            "--repeat",
            "4",
            "--no-cache",
            "--json",
            "--markdown",
            "report.md",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout_and_stderr(&o));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["repeat"], 4);
    assert_eq!(out["cases"], 8);

    // Four samples per case are stored, each its own call (its own trace).
    let rows = results(dir.path(), out["candidate"]["run_id"].as_str().unwrap());
    assert_eq!(rows.len(), 32);
    let mut by_case: BTreeMap<&str, Vec<&EvalResult>> = BTreeMap::new();
    for r in &rows {
        by_case.entry(r.case_id.as_str()).or_default().push(r);
    }
    assert_eq!(by_case.len(), 8);
    for samples in by_case.values() {
        let idx: Vec<u32> = samples.iter().map(|r| r.repeat_idx).collect();
        assert_eq!(idx, [0, 1, 2, 3]);
    }
    let mut traces: Vec<&str> = rows.iter().filter_map(|r| r.trace_id.as_deref()).collect();
    traces.sort_unstable();
    traces.dedup();
    assert_eq!(traces.len(), 32, "one call per sample");

    // The samples of a case disagree: the dice decide, and the case follows the majority
    // rule (two of four is enough); its score is the mean of its samples' scores.
    let passes: BTreeMap<&str, usize> = by_case
        .iter()
        .map(|(id, s)| (*id, s.iter().filter(|r| r.pass).count()))
        .collect();
    let k: Vec<usize> = passes.values().copied().collect();
    assert!(
        k.contains(&2) && k.iter().any(|&n| n < 2) && k.iter().any(|&n| n > 2),
        "seed 11 should give cases at, below and above half: {passes:?}"
    );
    let passed = k.iter().filter(|&&n| n * 2 >= 4).count();
    let stats = &out["candidate"]["stats"];
    assert_eq!(stats["passed"], passed, "{passes:?}");
    let rate = stats["pass_rate"]["estimate"].as_f64().unwrap();
    assert!((rate - passed as f64 / 8.0).abs() < 1e-9, "{rate}");
    let mean_of_means = by_case
        .values()
        .map(|s| s.iter().map(|r| r.score).sum::<f64>() / s.len() as f64)
        .sum::<f64>()
        / 8.0;
    let score = stats["score"]["estimate"].as_f64().unwrap();
    assert!(
        (score - mean_of_means).abs() < 1e-9,
        "{score} vs {mean_of_means}"
    );

    // The report says how many samples ran and how many of a failing case's failed.
    let md = fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("8 cases × 4 repeats"), "{md}");
    let (worst, n) = passes.iter().min_by_key(|(_, n)| **n).unwrap();
    assert!(
        md.contains(&format!("{worst} {}/4 repeats failed", 4 - n)),
        "{md}"
    );
    // History counts cases, not samples.
    let o = KEEL.run(dir.path(), &["eval", "history", "flaky"]);
    assert!(
        stdout_and_stderr(&o).contains("8 (4×)"),
        "{}",
        stdout_and_stderr(&o)
    );
}

/// `{{ question }}` as pushed (v1, production) ...
const V2: &str = "content = \"v2: {{ question }}\"";
const DRAFT: &str = "content = \"draft: {{ question }}\"";

const PLAIN: &str = r#"
evals = "evals"
prompts = "prompts"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"#;

fn prompt_suite(target: &str, expect: &str) -> String {
    format!(
        "[target]\nprompt = \"support/answer\"\nmodel = \"mock-1\"\n{target}\n\
         [dataset]\npath = \"questions.jsonl\"\n\
         [[assert]]\ntype = \"starts-with\"\nvalue = \"Mock reply to: {expect}\"\n\
         [gate]\nmin_pass_rate = 1.0\n"
    )
}

#[test]
fn a_prompt_target_runs_its_pinned_version_its_label_or_the_folder() {
    let dir = common::project(PLAIN);
    let d = dir.path();
    // v1 = `{{ question }}` labelled production; v2 pushed; the folder has a draft.
    write_prompt(d, "support/answer.toml", SUPPORT_ANSWER);
    KEEL.push_and_label_production(d, &["--author", "t", "--message", "v1"], "launch");
    let v2 = SUPPORT_ANSWER.replace("content = \"{{ question }}\"", V2);
    assert_ne!(v2, SUPPORT_ANSWER);
    write_prompt(d, "support/answer.toml", &v2);
    KEEL.stdout_ok(d, &["prompt", "push", "--author", "t", "--message", "v2"]);
    write_prompt(
        d,
        "support/answer.toml",
        &SUPPORT_ANSWER.replace("content = \"{{ question }}\"", DRAFT),
    );

    let questions = "{\"id\":\"pw\",\"variables\":{\"product\":\"Keel\",\"question\":\"How do I reset my password?\"}}\n\
                     {\"id\":\"refund\",\"variables\":{\"product\":\"Keel\",\"question\":\"Can I get a refund?\"}}\n";
    for (name, target, expect, version, label) in [
        ("pinned", "prompt_version = 2", "v2: ", 2, "v2"),
        (
            "labelled",
            "prompt_label = \"production\"",
            "",
            1,
            "label production",
        ),
        ("folder", "", "draft: ", 0, "prompts folder"),
    ] {
        suite(
            d,
            name,
            &prompt_suite(target, expect),
            "questions.jsonl",
            questions,
        );
        let o = KEEL.run(d, &["eval", "run", name, "--json"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: {}",
            stdout_and_stderr(&o)
        );
        let out: Value = serde_json::from_slice(&o.stdout).unwrap();
        let cand = &out["candidate"];
        assert_eq!(cand["prompt_version"], version, "{name}: {out}");
        assert_eq!(cand["upstream_model"], "mock-1", "{name}");
        let arm = cand["label"].as_str().unwrap();
        assert!(
            arm.contains(label) && arm.contains("mock-1"),
            "{name}: {arm}"
        );
        assert_eq!(cand["stats"]["passed"], 2, "{name}: {out}");
        let rows = results(d, cand["run_id"].as_str().unwrap());
        let pw = rows.iter().find(|r| r.case_id == "pw").unwrap();
        assert_eq!(
            pw.output.as_deref(),
            Some(format!("Mock reply to: {expect}How do I reset my password?").as_str()),
            "{name}"
        );
    }

    // The stored run names the prompt it rendered.
    let o = KEEL.run(d, &["eval", "history", "pinned", "--json"]);
    let runs: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(runs[0]["prompt_name"], "support/answer", "{runs}");
    assert_eq!(runs[0]["prompt_version"], 2, "{runs}");
    assert_eq!(runs[0]["model"], "mock-1", "{runs}");

    // A pinned version that was never pushed is an error (exit 2) that names it.
    suite(
        d,
        "missing",
        &prompt_suite("prompt_version = 9", ""),
        "questions.jsonl",
        questions,
    );
    let o = KEEL.run(d, &["eval", "run", "missing"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout_and_stderr(&o));
    assert!(
        stdout_and_stderr(&o).contains('9'),
        "{}",
        stdout_and_stderr(&o)
    );
}
