//! A reviewer's answers: checked against the queue's label schema, stored, and turned
//! into `human` scores on the trace.
//!
//! The dashboard's form and `keel review next` both hand in answers as text (what was
//! typed or picked), so both are checked here, once. Human scores sit in the same table
//! as the judges' (source `human`, eval = the queue, metric = the label): a `verdict`
//! scores 1 for `good` and 0 for `bad` (other answers such as `unsure` give no score), a
//! number label its position in its range (3 on 1–5 is 0.5). With two reviewers the
//! score is their mean, so reports and alerts read one value per call.

use std::collections::BTreeMap;

use keel_core::config::review::{LabelKind, LabelSpec, ReviewQueueConfig};
use keel_store::review::{self as store, NewLabel, Recorded};
use keel_store::scores::{replace_scores, ScoreRow};
use serde_json::{Map, Value};

/// The source human scores are written under.
pub const HUMAN: &str = "human";
/// Longest text answer or correction kept, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// What a reviewer answered, as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answers {
    /// Label name → answer, as typed or picked (empty means not answered).
    pub values: BTreeMap<String, String>,
    /// The corrected output, when the reviewer wrote one.
    pub correction: Option<String>,
}

/// Why a label was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("no review item {0}")]
    NoSuchItem(i64),
    #[error("review item {item} is in queue `{actual}`, not `{expected}`")]
    WrongQueue {
        item: i64,
        expected: String,
        actual: String,
    },
    #[error("`{0}` needs an answer")]
    Missing(String),
    #[error("`{label}` takes one of {}; `{value}` is not one", choices.join(", "))]
    NotAChoice {
        label: String,
        value: String,
        choices: Vec<String>,
    },
    #[error("`{label}` takes a number from {min} to {max}; `{value}` is not one")]
    OutOfRange {
        label: String,
        value: String,
        min: f64,
        max: f64,
    },
    #[error("this queue has no label `{0}`")]
    UnknownLabel(String),
    #[error("`{0}` is longer than {MAX_TEXT_BYTES} bytes")]
    TooLong(String),
    #[error("this queue does not take corrected outputs (corrections = false)")]
    CorrectionsOff,
    #[error("review item {0} already has every label it needs from other reviewers")]
    AlreadyComplete(i64),
    #[error(transparent)]
    Store(#[from] keel_store::StoreError),
}

/// Answers checked against a schema: every label as JSON, the verdict pulled out, the
/// correction trimmed (`None` when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub labels: Map<String, Value>,
    pub verdict: Option<String>,
    pub correction: Option<String>,
}

fn check_one(spec: &LabelSpec, raw: &str) -> Result<Option<Value>, LabelError> {
    let v = raw.trim();
    if v.is_empty() {
        return if spec.required {
            Err(LabelError::Missing(spec.name.clone()))
        } else {
            Ok(None)
        };
    }
    match &spec.kind {
        LabelKind::Choice(choices) => choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(v))
            .map(|c| Some(Value::String(c.clone())))
            .ok_or_else(|| LabelError::NotAChoice {
                label: spec.name.clone(),
                value: v.to_string(),
                choices: choices.clone(),
            }),
        LabelKind::Number { min, max } => match v.parse::<f64>() {
            Ok(n) if n >= *min && n <= *max => {
                Ok(serde_json::Number::from_f64(n).map(Value::Number))
            }
            _ => Err(LabelError::OutOfRange {
                label: spec.name.clone(),
                value: v.to_string(),
                min: *min,
                max: *max,
            }),
        },
        LabelKind::Text if v.len() > MAX_TEXT_BYTES => Err(LabelError::TooLong(spec.name.clone())),
        LabelKind::Text => Ok(Some(Value::String(v.to_string()))),
    }
}

/// Check `answers` against `queue`'s schema.
pub fn check(queue: &ReviewQueueConfig, answers: &Answers) -> Result<Checked, LabelError> {
    if let Some(unknown) = answers
        .values
        .keys()
        .find(|k| !queue.labels.iter().any(|l| &l.name == *k))
    {
        return Err(LabelError::UnknownLabel(unknown.clone()));
    }
    let mut labels = Map::new();
    for spec in &queue.labels {
        let raw = answers
            .values
            .get(&spec.name)
            .map(String::as_str)
            .unwrap_or("");
        if let Some(v) = check_one(spec, raw)? {
            labels.insert(spec.name.clone(), v);
        }
    }
    let correction = match answers.correction.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(_) if !queue.corrections => return Err(LabelError::CorrectionsOff),
        Some(c) if c.len() > MAX_TEXT_BYTES => {
            return Err(LabelError::TooLong("correction".into()))
        }
        Some(c) => Some(c.to_string()),
    };
    let verdict = labels
        .get("verdict")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Checked {
        labels,
        verdict,
        correction,
    })
}

/// What a submitted label did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// Labels the item has now, and needs.
    pub labelled: u32,
    pub needed: u32,
}

/// Check and store `reviewer`'s answers on `item_id` (an item of `queue`), then rewrite
/// the trace's human scores for this queue from all of the item's labels.
pub fn submit(
    conn: keel_store::sql::Db<'_>,
    queue: &ReviewQueueConfig,
    item_id: i64,
    reviewer: &str,
    answers: &Answers,
    now_ms: i64,
) -> Result<Submitted, LabelError> {
    let item = store::get_item(conn, item_id)?.ok_or(LabelError::NoSuchItem(item_id))?;
    if item.queue != queue.name {
        return Err(LabelError::WrongQueue {
            item: item_id,
            expected: queue.name.clone(),
            actual: item.queue,
        });
    }
    let checked = check(queue, answers)?;
    let labels = Value::Object(checked.labels);
    let recorded = store::record_label(
        conn,
        item_id,
        reviewer,
        &NewLabel {
            verdict: checked.verdict.as_deref(),
            labels: &labels,
            correction: checked.correction.as_deref(),
        },
        now_ms,
    )?;
    let (labelled, needed) = match recorded {
        Recorded::Labelled { labelled, needed } => (labelled, needed),
        Recorded::AlreadyComplete => return Err(LabelError::AlreadyComplete(item_id)),
        Recorded::NoSuchItem => return Err(LabelError::NoSuchItem(item_id)),
    };
    let all = store::labels_for_item(conn, item_id)?;
    let rows = human_scores(queue, all.iter().map(|l| &l.labels));
    replace_scores(
        conn,
        &item.trace_id,
        &queue.name,
        HUMAN,
        &rows,
        None,
        now_ms,
    )?;
    Ok(Submitted { labelled, needed })
}

/// The human score rows of one item from its labels (each a JSON object of answers):
/// the mean over reviewers per label that scores.
pub fn human_scores<'a>(
    queue: &ReviewQueueConfig,
    labels: impl Iterator<Item = &'a Value> + Clone,
) -> Vec<ScoreRow> {
    let mut rows = Vec::new();
    for spec in &queue.labels {
        let values: Vec<f64> = labels
            .clone()
            .filter_map(|l| l.get(&spec.name))
            .filter_map(|v| score_of(spec, v))
            .collect();
        if values.is_empty() {
            continue;
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        rows.push(ScoreRow {
            metric: spec.name.clone(),
            value: mean,
            passed: mean >= 0.5,
            reason: Some(format!(
                "{} reviewer{}",
                values.len(),
                if values.len() == 1 { "" } else { "s" }
            )),
        });
    }
    rows
}

/// One answer as a score in 0..=1, for the labels that score.
fn score_of(spec: &LabelSpec, v: &Value) -> Option<f64> {
    match &spec.kind {
        LabelKind::Choice(_) if spec.name == "verdict" => match v.as_str()? {
            "good" => Some(1.0),
            "bad" => Some(0.0),
            _ => None,
        },
        LabelKind::Number { min, max } => v.as_f64().map(|n| (n - min) / (max - min)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "label_tests.rs"]
mod tests;
