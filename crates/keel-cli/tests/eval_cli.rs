#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel eval …` on a copy of the quickstart: lock the dataset, run the gate (exit 0),
//! break the prompt (exit 1, with the regression in every output format), change the
//! dataset (exit 2 until re-locked), and read the history.

mod common;

use std::fs;

use common::{quickstart, stdout_and_stderr, Keel};
use serde_json::Value;

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "ci")]);

#[test]
fn the_gate_passes_blocks_a_bad_prompt_and_refuses_a_changed_dataset() {
    let (_guard, dir) = quickstart();
    KEEL.push_and_label_production(&dir, &["--author", "t", "--message", "m"], "launch");
    // The quickstart ships locked; without its lock, a run is refused (exit 2) with the fix.
    let suite = dir.join("evals/support.toml");
    let locked = fs::read_to_string(&suite).unwrap();
    assert!(locked.contains("hash = \"sha256:"), "{locked}");
    let unlocked: Vec<&str> = locked
        .lines()
        .filter(|l| !l.starts_with("hash = "))
        .collect();
    fs::write(&suite, unlocked.join("\n")).unwrap();
    let o = KEEL.run(&dir, &["eval", "run", "support"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout_and_stderr(&o));
    assert!(
        stdout_and_stderr(&o).contains("keel eval lock support"),
        "{}",
        stdout_and_stderr(&o)
    );

    let o = KEEL.run(
        &dir,
        &["eval", "lock", "support", "--reason", "first 50 cases"],
    );
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));
    assert!(fs::read_to_string(dir.join("evals/support.toml"))
        .unwrap()
        .contains("hash = \"sha256:"));

    // The prompt as pushed: the gate holds.
    let o = KEEL.run(
        &dir,
        &[
            "eval",
            "run",
            "support",
            "--baseline",
            "production",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout_and_stderr(&o));
    let good: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(good["cases"], 50);
    assert_eq!(good["gate"]["passed"], true);
    let rate = good["candidate"]["stats"]["pass_rate"]["estimate"]
        .as_f64()
        .unwrap();
    assert!(
        (0.8..1.0).contains(&rate),
        "some cases genuinely fail: {rate}"
    );
    assert_eq!(good["candidate"]["prompt_version"], 1);
    // The llm-rubric judge (the scripted mock) scored every case; its reasoning is kept.
    let judge = &good["candidate"]["stats"]["metrics"]["judge"]["estimate"];
    assert!(judge.as_f64().unwrap() > 0.5, "{judge}");
    let store = keel_store::Store::open(dir.join("keel.db").to_str().unwrap()).unwrap();
    let run_id = good["candidate"]["run_id"].as_str().unwrap();
    let results = keel_store::evals::eval_results(&store.reader().unwrap(), run_id).unwrap();
    let echo = results.iter().find(|r| r.case_id == "hard-1").unwrap();
    assert!(!echo.pass);
    assert!(
        echo.assertions_json.contains("only repeats the question"),
        "{}",
        echo.assertions_json
    );

    // A bad change in the prompts folder: the scripted answers no longer match.
    let prompt = dir.join("prompts/support/answer.toml");
    let src = fs::read_to_string(&prompt).unwrap();
    fs::write(
        &prompt,
        src.replace("{{ question }}", "{{ question | upper }}"),
    )
    .unwrap();
    let o = KEEL.run(
        &dir,
        &[
            "eval",
            "run",
            "support",
            "--baseline",
            "production",
            "--junit",
            "junit.xml",
            "--markdown",
            "report.md",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout_and_stderr(&o));
    let out = stdout_and_stderr(&o);
    assert!(out.contains("GATE FAILED"), "{out}");
    assert!(out.contains("min_pass_rate"), "{out}");
    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("❌"), "{md}");
    // The reports read back only the failing cases, the baseline's beside them.
    let regression = md.lines().find(|l| l.contains("(regression)"));
    let regression = regression.unwrap_or_else(|| panic!("no regression row: {md}"));
    assert!(
        !regression.trim_end().ends_with("| — |"),
        "the baseline's output is missing: {regression}"
    );
    assert!(
        out.contains("Regressions (44") && out.contains("✗ delete-1"),
        "{out}"
    );
    let junit = fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuite") && junit.contains("<failure"),
        "{junit}"
    );

    // One edited case: the dataset no longer matches its lock.
    let data = dir.join("evals/support.jsonl");
    let d = fs::read_to_string(&data).unwrap();
    fs::write(&data, d.replacen("30 days", "31 days", 1)).unwrap();
    let o = KEEL.run(&dir, &["eval", "run", "support"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout_and_stderr(&o));
    assert!(
        stdout_and_stderr(&o).contains("changed since it was locked"),
        "{}",
        stdout_and_stderr(&o)
    );

    let o = KEEL.run(&dir, &["eval", "history", "support", "--json"]);
    let runs: Value = serde_json::from_slice(&o.stdout).unwrap();
    // Two runs of two arms each.
    assert_eq!(runs.as_array().unwrap().len(), 4, "{runs}");
    let o = KEEL.run(&dir, &["audit", "--json"]);
    assert!(
        stdout_and_stderr(&o).contains("eval.lock"),
        "{}",
        stdout_and_stderr(&o)
    );
}

#[test]
fn compare_reports_parity_or_a_regression_between_two_models() {
    let (_guard, dir) = quickstart();
    // A model without the scripted answers: it only echoes, as a weaker model would.
    let mut config = fs::read_to_string(dir.join("keel.toml")).unwrap();
    config.push_str(
        "\n[providers.terse]\nkind = \"mock\"\n\
         [models.terse]\nprovider = \"terse\"\nupstream_model = \"mock-1\"\ninput_price_per_mtok = 0.15\noutput_price_per_mtok = 0.60\n",
    );
    fs::write(dir.join("keel.toml"), config).unwrap();
    let o = KEEL.run(&dir, &["eval", "lock", "support", "--reason", "r"]);
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));

    let o = KEEL.run(
        &dir,
        &[
            "eval",
            "compare",
            "support",
            "--model",
            "gpt-4o-mini",
            "--baseline-model",
            "mock-1",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout_and_stderr(&o));
    let same: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(same["verdict"]["regressed"], false, "{same}");
    assert_eq!(same["comparison"]["paired_cases"], 50);

    let o = KEEL.run(
        &dir,
        &[
            "eval",
            "compare",
            "support",
            "--model",
            "terse",
            "--baseline-model",
            "mock-1",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout_and_stderr(&o));
    let out = stdout_and_stderr(&o);
    assert!(out.contains("Verdict: regressed"), "{out}");
    assert!(out.contains("GATE FAILED"), "{out}");
}
