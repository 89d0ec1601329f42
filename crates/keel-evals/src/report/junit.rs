//! `keel eval run --junit FILE`: the run as JUnit XML, for CI test views.
//!
//! One `<testsuite name="keel-eval:SUITE">` holds one `<testcase>` per stored result
//! (case × repeat; the name is the case id, with `#N` — the stored 0-based repeat index —
//! when the suite repeats), failing with the failing assertions' reasons, or erroring when
//! the call failed; then one testcase per gate rule (`gate:min_pass_rate`, …), failing when
//! the rule failed and skipped when it could not be checked (no baseline). Written by hand:
//! the format is small, and [`xml_escape`] escapes every attribute and text.

use std::fmt::Write as _;

use keel_store::evals::EvalResult;

use super::view::{failing_reasons, preview};
use crate::gate::GateFailure;
use crate::runner::RunOutcome;

const MESSAGE_CHARS: usize = 300;
const OUTPUT_CHARS: usize = 2_000;

/// Text for XML 1.0: markup characters as entities and characters XML 1.0 forbids (other
/// control characters) dropped. In an attribute (`attr`), line breaks and tabs become
/// character references so that parsers keep them.
pub(crate) fn xml_escape(text: &str, attr: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' if attr => out.push_str("&#10;"),
            '\r' if attr => out.push_str("&#13;"),
            '\t' if attr => out.push_str("&#9;"),
            '\n' | '\r' | '\t' => out.push(ch),
            '\u{FFFE}' | '\u{FFFF}' => {}
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

fn xml(text: &str) -> String {
    xml_escape(text, true)
}

fn seconds(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

enum Verdict {
    Pass,
    Failure { message: String, body: String },
    Error { message: String, body: String },
    Skipped { message: String },
}

struct TestCase {
    name: String,
    time: String,
    verdict: Verdict,
}

fn result_case(o: &RunOutcome, r: &EvalResult) -> TestCase {
    let name = if o.repeat > 1 {
        format!("{}#{}", r.case_id, r.repeat_idx)
    } else {
        r.case_id.clone()
    };
    let reasons = failing_reasons(r);
    let output = r.output.as_deref().map(|t| preview(t, OUTPUT_CHARS));
    let mut body = reasons.join("\n");
    if let Some(output) = &output {
        let _ = write!(body, "\n\noutput:\n{output}");
    }
    let verdict = if let Some(error) = &r.error {
        Verdict::Error {
            message: preview(&format!("call failed: {error}"), MESSAGE_CHARS),
            body: format!("{error}\n{body}").trim().to_string(),
        }
    } else if !r.pass {
        let message = match reasons.as_slice() {
            [] => "the case failed".to_string(),
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        };
        Verdict::Failure {
            message: preview(&message, MESSAGE_CHARS),
            body: body.trim().to_string(),
        }
    } else {
        Verdict::Pass
    };
    TestCase {
        name,
        time: seconds(r.latency_ms),
        verdict,
    }
}

/// One testcase per `checked` line of the gate; a line is failing when it starts with a
/// failure's rule followed by `: FAILED`.
fn gate_cases(o: &RunOutcome) -> Vec<TestCase> {
    let failed = |line: &str| -> Option<&GateFailure> {
        o.gate.failures.iter().find(|f| {
            line.strip_prefix(f.rule.as_str())
                .is_some_and(|rest| rest.starts_with(": FAILED"))
        })
    };
    let mut cases: Vec<TestCase> = o
        .gate
        .checked
        .iter()
        .map(|line| {
            let (rule, verdict) = match failed(line) {
                Some(f) => (
                    f.rule.clone(),
                    Verdict::Failure {
                        message: f.message.clone(),
                        body: format!("expected {}, got {} (by {})", f.expected, f.actual, f.by),
                    },
                ),
                None => {
                    let (rule, rest) = line.split_once(": ").unwrap_or((line.as_str(), ""));
                    let verdict = if rest.starts_with("not checked") {
                        Verdict::Skipped {
                            message: rest.to_string(),
                        }
                    } else {
                        Verdict::Pass
                    };
                    (rule.to_string(), verdict)
                }
            };
            TestCase {
                name: format!("gate:{rule}"),
                time: seconds(0),
                verdict,
            }
        })
        .collect();
    // A failure without its own `checked` line still shows up.
    for f in &o.gate.failures {
        if !o
            .gate
            .checked
            .iter()
            .any(|l| failed(l).is_some_and(|g| g == f))
        {
            cases.push(TestCase {
                name: format!("gate:{}", f.rule),
                time: seconds(0),
                verdict: Verdict::Failure {
                    message: f.message.clone(),
                    body: format!("expected {}, got {} (by {})", f.expected, f.actual, f.by),
                },
            });
        }
    }
    cases
}

/// The candidate's results (`candidate`, as stored) and the gate as JUnit XML.
pub fn render_junit(o: &RunOutcome, candidate: &[EvalResult]) -> String {
    let mut out = String::new();
    let each = |f: &mut dyn FnMut(&EvalResult)| -> Result<(), std::convert::Infallible> {
        candidate.iter().for_each(f);
        Ok(())
    };
    let _ = write_junit(o, each, &mut |s: &str| out.push_str(s));
    out
}

/// [`render_junit`] for a run too large to hold: `each` feeds the candidate's stored
/// results, in order, to the function it is given — it is called twice (to count for the
/// header, then to write), so a caller streams them from the store — and the XML goes to
/// `sink` piece by piece. Memory holds one result at a time.
pub fn write_junit<E>(
    o: &RunOutcome,
    mut each: impl FnMut(&mut dyn FnMut(&EvalResult)) -> Result<(), E>,
    sink: &mut dyn FnMut(&str),
) -> Result<(), E> {
    let gate = gate_cases(o);
    let (mut tests, mut failures, mut errors, mut skipped, mut total_ms) = (0usize, 0, 0, 0, 0u64);
    let mut tally = |v: &Verdict| {
        tests += 1;
        match v {
            Verdict::Failure { .. } => failures += 1,
            Verdict::Error { .. } => errors += 1,
            Verdict::Skipped { .. } => skipped += 1,
            Verdict::Pass => {}
        }
    };
    each(&mut |r| {
        tally(&result_case(o, r).verdict);
        total_ms += r.latency_ms;
    })?;
    gate.iter().for_each(|c| tally(&c.verdict));
    let suite = xml(&o.suite);
    let counts = format!(
        "tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{}\"",
        seconds(total_ms)
    );
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<testsuites name=\"keel-eval\" {counts}>");
    let _ = writeln!(out, "  <testsuite name=\"keel-eval:{suite}\" {counts}>");
    let _ = writeln!(out, "    <properties>");
    let mut properties = vec![
        ("dataset_hash", o.dataset_hash.clone()),
        ("candidate_run", o.candidate.run_id.clone()),
        ("candidate", o.candidate.label.clone()),
        (
            "gate",
            if o.gate.passed { "passed" } else { "failed" }.to_string(),
        ),
    ];
    if let Some(b) = &o.baseline {
        properties.push(("baseline_run", b.run_id.clone()));
        properties.push(("baseline", b.label.clone()));
    }
    for (name, value) in properties {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            xml(&value)
        );
    }
    let _ = writeln!(out, "    </properties>");
    sink(&out);
    each(&mut |r| sink(&case_xml(&suite, &result_case(o, r))))?;
    for case in &gate {
        sink(&case_xml(&suite, case));
    }
    sink("  </testsuite>\n</testsuites>\n");
    Ok(())
}

fn case_xml(suite: &str, case: &TestCase) -> String {
    let mut out = String::new();
    let open = format!(
        "    <testcase classname=\"{suite}\" name=\"{}\" time=\"{}\"",
        xml(&case.name),
        case.time
    );
    let _ = match &case.verdict {
        Verdict::Pass => writeln!(out, "{open}/>"),
        Verdict::Skipped { message } => writeln!(
            out,
            "{open}>\n      <skipped message=\"{}\"/>\n    </testcase>",
            xml(message)
        ),
        Verdict::Failure { message, body } | Verdict::Error { message, body } => {
            let tag = match &case.verdict {
                Verdict::Error { .. } => "error",
                _ => "failure",
            };
            writeln!(
                out,
                "{open}>\n      <{tag} message=\"{}\">{}</{tag}>\n    </testcase>",
                xml(message),
                xml_escape(body, false)
            )
        }
    };
    out
}
