#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel function canary | split | history`, driven through the built binary: a split
//! moved in steps and reset, each move in the history and the audit log with who and
//! why, and the errors an operator can make.

mod common;

use common::{stderr, stdout, Keel};
use serde_json::Value;

const KEEL: Keel = Keel::AS_TEST_USER;

const CONFIG: &str = r#"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
upstream_model = "mock-1"
[functions.support]
[[functions.support.variants]]
name = "control"
prompt = "support/answer"
model = "mock-1"
weight = 60
[[functions.support.variants]]
name = "other"
prompt = "support/answer"
model = "mock-1"
weight = 30
[[functions.support.variants]]
name = "candidate"
prompt = "support/answer"
model = "mock-1"
weight = 10
[functions.solo]
[[functions.solo.variants]]
name = "only"
prompt = "support/answer"
model = "mock-1"
weight = 1
[[functions.solo.variants]]
name = "dark"
prompt = "support/answer"
model = "mock-1"
weight = 0
"#;

#[test]
fn a_canary_moves_in_steps_is_shown_and_reset_and_every_move_is_audited() {
    let dir = common::project(CONFIG);
    let d = dir.path();

    let split = KEEL.json_ok(d, &["function", "split", "support"]);
    assert_eq!(split["source"], "config");
    assert_eq!(split["serving"], "control=60,other=30,candidate=10");
    let history = KEEL.stdout_ok(d, &["function", "history", "support"]);
    assert!(history.contains("never moved"), "{history}");

    // Step 1: candidate to 25 %; control and other share 75 % as 60:30.
    let moved = KEEL.json_ok(
        d,
        &[
            "function",
            "canary",
            "support",
            "candidate",
            "--percent",
            "25",
            "--reason",
            "step 1",
        ],
    );
    assert_eq!(moved["from"], "control=60,other=30,candidate=10");
    assert_eq!(moved["to"], "control=50,other=25,candidate=25");
    assert_eq!(moved["actor"], "test-actor");
    // Step 2, human output.
    let text = KEEL.stdout_ok(
        d,
        &[
            "function",
            "canary",
            "support",
            "candidate",
            "--percent",
            "50",
            "--reason",
            "step 2",
        ],
    );
    assert!(
        text.contains(
            "support: control=50,other=25,candidate=25 → control=33.33,other=16.67,candidate=50"
        ),
        "{text}"
    );

    let split = KEEL.json_ok(d, &["function", "split", "support"]);
    assert_eq!(split["source"], "override");
    assert_eq!(split["serving"], "control=33.33,other=16.67,candidate=50");
    assert_eq!(split["configured"], "control=60,other=30,candidate=10");
    assert_eq!(split["override"]["actor"], "test-actor");
    assert_eq!(split["override"]["reason"], "step 2");
    let weights: u64 = split["override"]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["weight"].as_u64().unwrap())
        .sum();
    assert_eq!(weights, 10_000);
    let table = KEEL.stdout_ok(d, &["function", "split", "support"]);
    assert!(
        table.contains("override set") && table.contains("step 2"),
        "{table}"
    );

    let reset = KEEL.json_ok(
        d,
        &[
            "function",
            "canary",
            "support",
            "--reset",
            "--reason",
            "rolled out",
        ],
    );
    assert_eq!(reset["changed"], true);
    assert_eq!(reset["to"], "control=60,other=30,candidate=10");
    let split = KEEL.json_ok(d, &["function", "split", "support"]);
    assert_eq!(split["source"], "config");
    assert_eq!(split["override"], Value::Null);
    let again = KEEL.stdout_ok(d, &["function", "canary", "support", "--reset"]);
    assert!(
        again.contains("already on the configured weights"),
        "{again}"
    );

    let history = KEEL.json_ok(d, &["function", "history", "support"]);
    let moves = history["moves"].as_array().unwrap();
    let got: Vec<(&str, &str, &str, &str)> = moves
        .iter()
        .map(|m| {
            (
                m["action"].as_str().unwrap(),
                m["from"].as_str().unwrap(),
                m["to"].as_str().unwrap(),
                m["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "reset",
                "control=33.33,other=16.67,candidate=50",
                "config (control=60,other=30,candidate=10)",
                "rolled out"
            ),
            (
                "canary",
                "control=50,other=25,candidate=25",
                "control=33.33,other=16.67,candidate=50",
                "step 2"
            ),
            (
                "canary",
                "config (control=60,other=30,candidate=10)",
                "control=50,other=25,candidate=25",
                "step 1"
            ),
        ]
    );
    assert_eq!(moves[1]["percent"], "50");
    let table = KEEL.stdout_ok(d, &["function", "history", "support"]);
    assert!(table.contains("canary candidate 25 %"), "{table}");

    let audit = KEEL.json_ok(d, &["audit"]);
    let events: Vec<(&str, &str, &str, &str, &str)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["to_value"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (
                "function.canary_reset",
                "support",
                "test-actor",
                "control=60,other=30,candidate=10",
                "rolled out"
            ),
            (
                "function.canary",
                "support",
                "test-actor",
                "control=33.33,other=16.67,candidate=50",
                "step 2"
            ),
            (
                "function.canary",
                "support",
                "test-actor",
                "control=50,other=25,candidate=25",
                "step 1"
            ),
        ]
    );
}

#[test]
fn the_actor_comes_from_the_environment_or_the_flag() {
    let dir = common::project(CONFIG);
    let d = dir.path();
    let as_user = Keel::with_env(&[
        ("KEEL_ACTOR", ""),
        ("USER", "ops-user"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
    ]);
    let moved = as_user.json_ok(
        d,
        &[
            "function",
            "canary",
            "support",
            "candidate",
            "--percent",
            "5",
        ],
    );
    assert_eq!(moved["actor"], "ops-user");
    assert_eq!(moved["reason"], "no reason given");
    let moved = KEEL.json_ok(
        d,
        &[
            "function",
            "canary",
            "support",
            "candidate",
            "--percent",
            "0",
            "--actor",
            "Ann",
        ],
    );
    assert_eq!(moved["actor"], "Ann");
    assert_eq!(moved["to"], "control=66.67,other=33.33,candidate=0");
}

#[test]
fn mistakes_exit_2_and_say_what_exists() {
    let dir = common::project(CONFIG);
    let d = dir.path();
    let fails = |args: &[&str], want: &str| {
        let out = KEEL.run(d, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
    };
    fails(
        &[
            "function",
            "canary",
            "suport",
            "candidate",
            "--percent",
            "10",
        ],
        "has no function `suport`; its functions are: solo, support",
    );
    fails(
        &[
            "function",
            "canary",
            "support",
            "canidate",
            "--percent",
            "10",
        ],
        "function `support` has no variant `canidate`; its variants are: control, other, candidate",
    );
    for bad in ["150", "-5", "ten"] {
        fails(
            &[
                "function",
                "canary",
                "support",
                "candidate",
                "--percent",
                bad,
            ],
            "use a number from 0 to 100",
        );
    }
    fails(
        &["function", "canary", "solo", "only", "--percent", "50"],
        "the other variants (dark) all have weight 0",
    );
    fails(
        &["function", "split", "nope"],
        "its functions are: solo, support",
    );
    fails(
        &["function", "history", "nope"],
        "its functions are: solo, support",
    );
    // Nothing was written by the failed attempts.
    let history = KEEL.json_ok(d, &["function", "history", "support"]);
    assert!(history["moves"].as_array().unwrap().is_empty());
    // Taking all the traffic needs no other weight.
    let moved = KEEL.json_ok(
        d,
        &["function", "canary", "solo", "dark", "--percent", "100"],
    );
    assert_eq!(moved["to"], "only=0,dark=100");
}
