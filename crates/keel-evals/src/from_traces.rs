//! Eval cases from production: a recorded call becomes a dataset case, so the next
//! change is tested on the inputs that actually failed.
//!
//! A function call gives its `variables`; any other call its messages as `input`. A
//! reviewer's correction (`keel review`) becomes the case's `expected`. The case keeps
//! where it came from in `metadata` (`trace_id`, function, feature, why it was added,
//! when). Text is redacted first with the PII and secret detectors that the function's
//! guardrail policies redact with, so a case file never holds what the policy keeps out
//! of prompts. Cases are appended as whole lines, never editing an existing one, and a
//! case whose id or input is already in the file is skipped: the dataset's hash then
//! changes and the suite fails its lock until `keel eval lock` records the new version.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use keel_core::chat::Message;
use keel_core::config::guardrails::{CheckKind, GuardAction};
use keel_core::config::Config;
use keel_core::trace::TraceRecord;
use keel_guardrails::{Kind, Redaction};
use serde_json::{json, Map, Value};

use crate::case::{Case, CaseInput};
use crate::dataset::DatasetError;

/// The detectors whose findings are redacted from cases taken from `function`'s calls:
/// those of every `redact` check (PII or secrets) of the policies that guard the
/// function's calls — the ones attached to it and the `default = true` ones, as the
/// gateway applies them.
pub fn redaction_kinds(config: &Config, function: Option<&str>) -> Vec<Kind> {
    let policies = config
        .guardrails
        .iter()
        .filter(|p| p.default || function.is_some_and(|f| p.functions.contains(f)));
    let mut kinds: Vec<Kind> = Vec::new();
    for p in policies {
        for c in &p.checks {
            if let (GuardAction::Redact, CheckKind::Detect { kinds: ks, .. }) = (&c.action, &c.kind)
            {
                for k in ks {
                    if !kinds.contains(k) {
                        kinds.push(*k);
                    }
                }
            }
        }
    }
    kinds
}

fn redact_value(v: &mut Value, red: &mut Redaction, kinds: &[Kind]) {
    match v {
        Value::String(s) => {
            let redacted = red.redact_kinds(s, kinds).into_owned();
            *s = redacted;
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact_value(i, red, kinds)),
        Value::Object(map) => map.values_mut().for_each(|i| redact_value(i, red, kinds)),
        _ => {}
    }
}

/// Why a trace gave no case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCase {
    /// The call kept no input (`capture = "none"`), or not one Keel can read back.
    NoInput,
}

/// The case `t` makes (its id `trace-<id>`), with `correction` as `expected`, redacted
/// with `kinds`. `added_from` says how it was picked (kept in its metadata).
pub fn case_from_trace(
    t: &TraceRecord,
    correction: Option<&str>,
    kinds: &[Kind],
    added_from: &str,
    now_ms: i64,
) -> Result<Case, NoCase> {
    let body: Value = t
        .input
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or(NoCase::NoInput)?;
    let mut variables = Map::new();
    let mut input = None;
    match body.get("variables") {
        Some(Value::Object(vars)) if t.function.is_some() => variables = vars.clone(),
        _ => {
            let messages: Vec<Message> = body
                .get("messages")
                .cloned()
                .and_then(|m| serde_json::from_value(m).ok())
                .filter(|m: &Vec<Message>| !m.is_empty())
                .ok_or(NoCase::NoInput)?;
            input = Some(CaseInput::Messages(messages));
        }
    }
    let mut red = Redaction::new();
    let mut vars = Value::Object(variables);
    let mut expected = correction.map(|c| Value::String(c.to_string()));
    let mut input_v = input.map(|i| serde_json::to_value(i).unwrap_or(Value::Null));
    if !kinds.is_empty() {
        redact_value(&mut vars, &mut red, kinds);
        if let Some(e) = &mut expected {
            redact_value(e, &mut red, kinds);
        }
        if let Some(i) = &mut input_v {
            redact_value(i, &mut red, kinds);
        }
    }
    let mut metadata = Map::new();
    metadata.insert("trace_id".into(), json!(t.id));
    if let Some(f) = &t.function {
        metadata.insert("function".into(), json!(f));
    }
    if let Some(f) = &t.feature {
        metadata.insert("feature".into(), json!(f));
    }
    metadata.insert("added_from".into(), json!(added_from));
    metadata.insert("added_at_ms".into(), json!(now_ms));
    Ok(Case {
        id: format!("trace-{}", t.id),
        variables: match vars {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        input: input_v.and_then(|v| serde_json::from_value(v).ok()),
        expected,
        context: None,
        metadata,
        assertions: Vec::new(),
    })
}

/// What appending did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Appended {
    /// Ids of the cases written, in order.
    pub added: Vec<String>,
    /// Ids of the cases skipped because their id or input is in the file already.
    pub duplicates: Vec<String>,
}

/// What makes two cases the same question: their variables and input.
fn content_key(c: &Case) -> String {
    json!([c.variables, c.input]).to_string()
}

/// Append `cases` to the JSONL dataset at `path` (created when missing), skipping any
/// whose id or input is already there (or earlier in `cases`). Existing lines are never
/// rewritten; new lines are written with one append.
pub fn append_cases(path: &Path, cases: Vec<Case>) -> Result<Appended, DatasetError> {
    merge(path, cases, true)
}

/// What [`append_cases`] would do, without writing.
pub fn would_append(path: &Path, cases: Vec<Case>) -> Result<Appended, DatasetError> {
    merge(path, cases, false)
}

fn merge(path: &Path, cases: Vec<Case>, write: bool) -> Result<Appended, DatasetError> {
    let shown = path.display().to_string();
    let read_err = |e: std::io::Error| DatasetError::Read {
        path: shown.clone(),
        message: e.to_string(),
    };
    let existing = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(read_err(e)),
    };
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    for (n, line) in String::from_utf8_lossy(&existing).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut c: Case = serde_json::from_str(line).map_err(|e| DatasetError::Line {
            path: shown.clone(),
            line: n + 1,
            message: e.to_string(),
        })?;
        if c.id.is_empty() {
            c.id = format!("line-{}", n + 1);
        }
        ids.insert(c.id.clone());
        keys.insert(content_key(&c));
    }
    let mut out = Appended::default();
    let mut text = String::new();
    if !existing.is_empty() && !existing.ends_with(b"\n") {
        text.push('\n');
    }
    for c in cases {
        if !ids.insert(c.id.clone()) || !keys.insert(content_key(&c)) {
            out.duplicates.push(c.id);
            continue;
        }
        let line = serde_json::to_string(&c).map_err(|e| DatasetError::Read {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        text.push_str(&line);
        text.push('\n');
        out.added.push(c.id);
    }
    if out.added.is_empty() || !write {
        return Ok(out);
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(read_err)?;
    f.write_all(text.as_bytes()).map_err(read_err)?;
    f.sync_all().map_err(read_err)?;
    Ok(out)
}

#[cfg(test)]
#[path = "from_traces_tests.rs"]
mod tests;

/// The dashboard's "add to dataset" (`keel_gateway::case_drafts`), installed by `keel
/// serve`: the same case `keel dataset add` makes, kept as a draft for `keel dataset pull`.
pub struct Drafts;

impl keel_gateway::case_drafts::CaseDrafts for Drafts {
    fn suites(&self, config: &Config) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&config.evals_dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .filter_map(|p| crate::suite::load_suite(&p).ok().map(|s| s.name))
            .collect();
        names.sort();
        names
    }

    fn propose(
        &self,
        config: &Config,
        conn: keel_store::sql::Db<'_>,
        suite: &str,
        trace_id: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, String> {
        if !self.suites(config).iter().any(|s| s == suite) {
            return Err(format!(
                "no suite `{suite}` in {}",
                config.evals_dir.display()
            ));
        }
        let t = keel_store::get_trace(conn, trace_id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no trace with request id {trace_id}"))?;
        let correction = keel_store::review::labels_for_trace(conn, trace_id)
            .map_err(|e| e.to_string())?
            .into_iter()
            .rev()
            .find_map(|l| l.correction);
        let kinds = redaction_kinds(config, t.function.as_deref());
        let case = case_from_trace(
            &t,
            correction.as_deref(),
            &kinds,
            &format!("dashboard by {by}"),
            now_ms,
        )
        .map_err(|_| {
            "this call kept no input to make a case of (capture = \"none\")".to_string()
        })?;
        let line = serde_json::to_string(&case).map_err(|e| e.to_string())?;
        keel_store::datasets::add_draft(conn, suite, trace_id, &line, by, now_ms)
            .map_err(|e| e.to_string())
    }
}
