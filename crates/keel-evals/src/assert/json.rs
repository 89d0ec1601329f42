//! Assertions on the output's JSON: is-json, json-schema, json-path; and the JSON
//! comparisons the other families share (equality with numbers compared by value, the
//! recursive subset match of tool-call arguments).

use serde_json::Value;
use serde_json_path::JsonPath;

use super::text::preview;
use super::Outcome;

/// The output's JSON: the trimmed text, or, when the whole text is one fenced code block
/// (```` ```json … ``` ```` or ```` ``` … ``` ````), the block's content.
pub fn output_json(text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("output is empty, not JSON".into());
    }
    match serde_json::from_str(trimmed) {
        Ok(v) => Ok(v),
        Err(first) => match fenced_block(trimmed) {
            Some(inner) => serde_json::from_str(inner.trim())
                .map_err(|e| format!("fenced block is not JSON: {e}")),
            None => Err(format!("not JSON ({first}): `{}`", preview(trimmed, 60))),
        },
    }
}

/// The content of a text that is exactly one fenced code block.
fn fenced_block(text: &str) -> Option<&str> {
    let body = text.strip_prefix("```")?.strip_suffix("```")?;
    let (lang, rest) = body.split_once('\n')?;
    if lang.trim().chars().any(char::is_whitespace) || rest.contains("```") {
        return None;
    }
    Some(rest)
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

/// Whether `actual` contains `wanted`: objects recursively (every wanted key present with
/// a matching value; extra keys allowed), everything else by [`json_eq`].
pub fn json_subset(wanted: &Value, actual: &Value) -> bool {
    match (wanted, actual) {
        (Value::Object(w), Value::Object(a)) => w
            .iter()
            .all(|(k, wv)| a.get(k).is_some_and(|av| json_subset(wv, av))),
        _ => json_eq(wanted, actual),
    }
}

pub(crate) fn is_json(text: &str) -> Outcome {
    match output_json(text) {
        Ok(v) => Outcome::check(
            true,
            format!("parsed JSON {}", kind_of(&v)),
            "be valid JSON",
        ),
        Err(e) => Outcome::check(false, e, "be valid JSON"),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(crate) fn json_schema(text: &str, validator: &jsonschema::Validator) -> Outcome {
    const REQUIREMENT: &str = "match the JSON schema";
    let doc = match output_json(text) {
        Ok(v) => v,
        Err(e) => return Outcome::check(false, e, REQUIREMENT),
    };
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("{at}: {}", preview(&e.to_string(), 120))
        })
        .collect();
    match errors.split_first() {
        None => Outcome::check(true, "valid against the schema", REQUIREMENT),
        Some((first, [])) => Outcome::check(false, first.clone(), REQUIREMENT),
        Some((first, rest)) => Outcome::check(
            false,
            format!("{first} (and {} more)", rest.len()),
            REQUIREMENT,
        ),
    }
}

pub(crate) fn json_path(text: &str, path: &JsonPath, expected: Option<&Value>) -> Outcome {
    let requirement = match expected {
        Some(want) => format!("have {path} equal {}", preview(&want.to_string(), 80)),
        None => format!("have a match for {path}"),
    };
    let doc = match output_json(text) {
        Ok(v) => v,
        Err(e) => return Outcome::check(false, e, requirement),
    };
    let nodes = path.query(&doc).all();
    let got = match nodes.as_slice() {
        [] => return Outcome::check(false, format!("{path} matched nothing"), requirement),
        [one] => (*one).clone(),
        many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
    };
    let observed = format!("{path} is {}", preview(&got.to_string(), 80));
    let pass = expected.is_none_or(|want| json_eq(&got, want));
    Outcome::check(pass, observed, requirement)
}
