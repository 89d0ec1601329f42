//! Assertions on how the call went: latency, cost, tokens, and which tools it called.
//!
//! Latency, cost and tokens are measured on failed calls too. An unpriced call's cost is
//! unknown, never $0: the cost assertion cannot be evaluated and fails (negated or not);
//! likewise tokens when the provider reported no output token count.

use keel_core::chat::ToolCall;
use keel_core::money::Nanos;
use serde_json::Value;

use super::json::json_subset;
use super::text::preview;
use super::Outcome;

pub(crate) fn latency(latency_ms: u64, max_ms: u64) -> Outcome {
    Outcome::check(
        latency_ms <= max_ms,
        format!("latency {latency_ms} ms"),
        format!("take at most {max_ms} ms"),
    )
}

pub(crate) fn cost(cost: Option<Nanos>, max: Nanos) -> Outcome {
    match cost {
        None => Outcome::cannot_evaluate("unpriced: cost unknown"),
        Some(c) => Outcome::check(c <= max, format!("cost {c}"), format!("cost at most {max}")),
    }
}

/// `max` bounds the output (completion) tokens, reasoning tokens included.
pub(crate) fn tokens(output_tokens: Option<u64>, max: u64) -> Outcome {
    match output_tokens {
        None => Outcome::cannot_evaluate("output token count unknown"),
        Some(n) => Outcome::check(
            n <= max,
            format!("{n} output tokens"),
            format!("use at most {max} output tokens"),
        ),
    }
}

/// Passes when some call is named `name` and, when `arguments` is given, its parsed
/// arguments contain them ([`json_subset`]). Unparsable arguments match nothing.
pub(crate) fn tool_call(calls: &[ToolCall], name: &str, arguments: Option<&Value>) -> Outcome {
    let requirement = match arguments {
        Some(args) => format!("call `{name}` with {}", preview(&args.to_string(), 80)),
        None => format!("call `{name}`"),
    };
    let named: Vec<&ToolCall> = calls.iter().filter(|c| c.function.name == name).collect();
    if named.is_empty() {
        let made: Vec<&str> = calls.iter().map(|c| c.function.name.as_str()).collect();
        let observed = if made.is_empty() {
            "no tool calls".to_string()
        } else {
            format!("calls made: [{}]", made.join(", "))
        };
        return Outcome::check(false, observed, requirement);
    }
    let Some(wanted) = arguments else {
        return Outcome::check(true, format!("called `{name}`"), requirement);
    };
    let matched = named.iter().any(|c| {
        serde_json::from_str::<Value>(&c.function.arguments)
            .is_ok_and(|got| json_subset(wanted, &got))
    });
    let observed = if matched {
        format!("called `{name}` with matching arguments")
    } else {
        let got: Vec<String> = named
            .iter()
            .map(|c| preview(&c.function.arguments, 80))
            .collect();
        format!("`{name}` called with {}", got.join("; "))
    };
    Outcome::check(matched, observed, requirement)
}
