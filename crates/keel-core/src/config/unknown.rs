//! Every unknown key of a config file at once. Serde stops at the first key a table does
//! not know; `keel check` promises every problem in one run, so after an unknown key the
//! file is read again as a TOML value with that key taken out, until none is left (or
//! another kind of error stops the parse, which is reported too).

use serde_path_to_error::Segment;

use super::error::{did_you_mean, ConfigIssue};
use super::raw::RawConfig;

/// At most this many unknown keys are collected (a guard against a path that cannot be
/// taken out, which would otherwise repeat the same error).
const MAX_ISSUES: usize = 200;

/// The issues of `text` from its first unknown key on: each unknown key with its path
/// and "did you mean", then the first error of another kind, if any.
pub(crate) fn unknown_keys(text: &str) -> Vec<ConfigIssue> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut doc = toml::Value::Table(doc);
    let mut issues = Vec::new();
    // What was taken out, by the table it was in: a required key spelled wrong is read
    // as the key it was meant to be, so its table does not also report it missing.
    let mut removed: Vec<(String, toml::Value)> = Vec::new();
    for _ in 0..MAX_ISSUES {
        let Err(e) = serde_path_to_error::deserialize::<_, RawConfig>(doc.clone()) else {
            break;
        };
        let segments: Vec<Segment> = e.path().iter().cloned().collect();
        let path = e.path().to_string();
        let full = e.into_inner().to_string();
        let message = full.lines().next().unwrap_or_default().trim().to_string();
        if let Some(field) = quoted_after(&message, "missing field `") {
            let here = format!("{segments:?}");
            let taken = removed.iter().position(|(table, _)| *table == here);
            if let Some(i) = taken {
                let (_, value) = removed.swap_remove(i);
                if insert(&mut doc, &segments, field, value) {
                    continue;
                }
            }
        }
        let unknown = message.starts_with("unknown field `");
        issues.push(ConfigIssue {
            path: if path == "." { String::new() } else { path },
            hint: did_you_mean(&message),
            message,
        });
        if !unknown {
            break;
        }
        let Some(value) = remove(&mut doc, &segments) else {
            break;
        };
        let table = format!("{:?}", &segments[..segments.len().saturating_sub(1)]);
        removed.push((table, value));
    }
    issues
}

/// `missing field `weight`` → `weight`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// The value (table or array element) at `path`.
fn at<'a>(value: &'a mut toml::Value, path: &[Segment]) -> Option<&'a mut toml::Value> {
    match path.split_first() {
        None => Some(value),
        Some((first, rest)) => {
            let next = match (value, first) {
                (toml::Value::Table(t), Segment::Map { key }) => t.get_mut(key.as_str()),
                (toml::Value::Array(a), Segment::Seq { index }) => a.get_mut(*index),
                _ => None,
            }?;
            at(next, rest)
        }
    }
}

/// Take the key at `path` out of `doc`, returning its value.
fn remove(doc: &mut toml::Value, path: &[Segment]) -> Option<toml::Value> {
    let (Segment::Map { key }, table) = path.split_last()? else {
        return None;
    };
    at(doc, table)?.as_table_mut()?.remove(key.as_str())
}

/// Put `value` as `key` into the table at `table`.
fn insert(doc: &mut toml::Value, table: &[Segment], key: &str, value: toml::Value) -> bool {
    at(doc, table)
        .and_then(toml::Value::as_table_mut)
        .map(|t| t.insert(key.to_string(), value))
        .is_some()
}
