//! The command type against small `sh -c` scripts.

use serde_json::json;

use super::{case_with, out, run};

async fn sh(script: &str, extra: serde_json::Value) -> crate::assert::AssertionResult {
    let mut a = json!({"type": "command", "command": ["sh", "-c", script]});
    if let (Some(obj), Some(more)) = (a.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    run(a, &case_with(json!({"id": "case-7"})), &out("hello world")).await
}

#[tokio::test]
async fn a_number_on_stdout_is_the_score() {
    let r = sh("echo 0.9", json!({})).await;
    assert!(r.pass, "{r:?}");
    assert!((r.score - 0.9).abs() < 1e-9);
    assert_eq!(r.reason, "command score 0.90");
    let r = sh("echo 0.2", json!({})).await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to score at least 0.50 from the command; command score 0.20"
    );
    let r = sh("echo 0.6", json!({"threshold": 0.7})).await;
    assert!(!r.pass);
}

#[tokio::test]
async fn booleans_and_objects_are_verdicts() {
    assert!(sh("echo true", json!({})).await.pass);
    let r = sh("echo false", json!({})).await;
    assert!(!r.pass);
    assert_eq!(r.score, 0.0);
    let r = sh(
        r#"echo '{"score": 0.3, "pass": true, "reason": "close enough"}'"#,
        json!({}),
    )
    .await;
    assert!(r.pass, "an explicit pass wins over the threshold");
    assert_eq!(r.reason, "command score 0.30: close enough");
    let r = sh(
        r#"echo '{"pass": false, "reason": "missing greeting"}'"#,
        json!({}),
    )
    .await;
    assert!(!r.pass);
    assert!(
        r.reason.ends_with("command score 0.00: missing greeting"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn the_case_and_output_arrive_as_json_on_stdin() {
    let script = r#"input=$(cat); case "$input" in
        *'"id":"case-7"'*'"text":"hello world"'*) echo 1 ;;
        *) echo 0 ;; esac"#;
    let r = sh(script, json!({})).await;
    assert!(r.pass, "{r:?}");
}

#[tokio::test]
async fn a_slow_command_is_killed_at_the_timeout() {
    let started = std::time::Instant::now();
    let r = sh("sleep 20; echo 1", json!({"timeout_ms": 200})).await;
    assert!(!r.pass);
    assert_eq!(r.reason, "command `sh` timed out after 200 ms (killed)");
    assert!(
        started.elapsed().as_secs() < 15,
        "did not wait for the command"
    );
}

#[tokio::test]
async fn unreadable_stdout_fails_with_stderrs_first_line() {
    let r = sh(
        "echo 'loading model' >&2; echo 'second' >&2; echo great",
        json!({}),
    )
    .await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "command printed `great`; expected a score 0..1, true/false or \
         {\"score\": x, \"pass\": b, \"reason\": \"...\"}; stderr: loading model"
    );
    let r = sh("echo 3", json!({})).await;
    assert_eq!(r.reason, "command score 3 is outside 0..1");
    let r = sh("true", json!({})).await;
    assert!(r.reason.starts_with("command printed ``"), "{}", r.reason);
}

#[tokio::test]
async fn a_non_zero_exit_fails_even_when_negated() {
    for kind in ["command", "not-command"] {
        let a = json!({"type": kind, "command": ["sh", "-c", "echo 'no such file' >&2; exit 3"]});
        let r = run(a, &case_with(json!({"id": "c"})), &out("x")).await;
        assert!(!r.pass);
        assert_eq!(r.score, 0.0);
        assert_eq!(
            r.reason,
            "command `sh` exited with exit status: 3; stderr: no such file"
        );
    }
}

#[tokio::test]
async fn a_missing_program_fails_with_the_cause() {
    let a = json!({"type": "command", "command": ["/nonexistent/keel-scorer"]});
    let r = run(a, &case_with(json!({"id": "c"})), &out("x")).await;
    assert!(!r.pass);
    assert!(
        r.reason
            .starts_with("command `/nonexistent/keel-scorer` did not start:"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn a_negated_command_flips_its_score() {
    let r = sh("echo 0.1", json!({"type": "not-command"})).await;
    assert!(r.pass);
    assert!((r.score - 0.9).abs() < 1e-9);
}
