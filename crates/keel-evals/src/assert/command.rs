//! The custom command assertion: a scorer written in any language.
//!
//! The command (an argv, no shell) gets `{"case": <Case>, "output": <CaseOutput>}` as JSON
//! on stdin and prints its verdict on stdout, one of:
//! - a number in 0..1: the score, passing when ≥ the threshold (default 0.5);
//! - `true` / `false`: pass with score 1, fail with score 0;
//! - a JSON object `{"score": x, "pass": b, "reason": "..."}`: `score` and `pass` are each
//!   optional (not both missing): a missing `score` is 1 or 0 from `pass`, a missing
//!   `pass` is `score ≥ threshold`; `reason` becomes the result's reason.
//!
//! On Unix the command runs in its own process group, and the whole group is killed when
//! the timeout (default 30 s) passes. A timeout, a failure to start, a non-zero exit or
//! an unreadable stdout cannot be evaluated: the result fails (negated or not), and its
//! reason carries stderr's first line.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::text::preview;
use super::Outcome;
use crate::case::Case;
use crate::output::CaseOutput;

pub(crate) async fn run(
    argv: &[String],
    timeout: Duration,
    threshold: f64,
    case: &Case,
    out: &CaseOutput,
) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome::cannot_evaluate("command is empty");
    };
    let input = json!({ "case": case, "output": out }).to_string();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::cannot_evaluate(format!("command `{program}` did not start: {e}"))
        }
    };
    let pid = child.id();
    // Write stdin beside the wait, so a command that prints before reading cannot
    // deadlock; a command that exits without reading it is not an error.
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
        });
    }
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Outcome::cannot_evaluate(format!("command `{program}` failed: {e}")),
        Err(_) => {
            kill_group(pid);
            return Outcome::cannot_evaluate(format!(
                "command `{program}` timed out after {} ms (killed)",
                timeout.as_millis()
            ));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr_line = stderr.lines().map(str::trim).find(|l| !l.is_empty());
    let with_stderr = |msg: String| match stderr_line {
        Some(line) => format!("{msg}; stderr: {}", preview(line, 160)),
        None => msg,
    };
    if !output.status.success() {
        return Outcome::cannot_evaluate(with_stderr(format!(
            "command `{program}` exited with {}",
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match parse_verdict(stdout.trim(), threshold) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::cannot_evaluate(with_stderr(e)),
    }
}

/// Kill the command's process group (it may have children holding its pipes).
fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals the process group the child leads
        // (spawned with `process_group(0)`); it touches no memory of ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// Read the command's stdout (see the module docs).
fn parse_verdict(stdout: &str, threshold: f64) -> Result<Outcome, String> {
    let bad = || {
        format!(
            "command printed `{}`; expected a score 0..1, true/false or {{\"score\": x, \"pass\": b, \"reason\": \"...\"}}",
            preview(stdout, 80)
        )
    };
    let requirement = format!("score at least {threshold:.2} from the command");
    let value: Value = serde_json::from_str(stdout).map_err(|_| bad())?;
    let (score, pass, reason) = match &value {
        Value::Bool(b) => (if *b { 1.0 } else { 0.0 }, *b, None),
        Value::Number(n) => {
            let s = n.as_f64().ok_or_else(bad)?;
            (s, s >= threshold, None)
        }
        Value::Object(obj) => {
            let pass = obj.get("pass").and_then(Value::as_bool);
            let score = match (obj.get("score").and_then(Value::as_f64), pass) {
                (Some(s), _) => s,
                (None, Some(p)) => f64::from(u8::from(p)),
                (None, None) => return Err(bad()),
            };
            let reason = obj
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            (score, pass.unwrap_or(score >= threshold), reason)
        }
        _ => return Err(bad()),
    };
    if !(0.0..=1.0).contains(&score) {
        return Err(format!("command score {score} is outside 0..1"));
    }
    let observed = match reason {
        Some(r) => format!("command score {score:.2}: {}", preview(&r, 200)),
        None => format!("command score {score:.2}"),
    };
    Ok(Outcome::scored(pass, score, observed, requirement))
}
