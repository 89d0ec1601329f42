//! What a queue's reviews say: how many items were reviewed, how the labels are spread,
//! how far two reviewers of the same item agree, and how far the humans agree with the
//! online judge on the same calls — so a team knows how far to trust its judge.
//!
//! Reviewer agreement is Cohen's kappa on the `verdict` over items with two or more
//! labels (the first two given). Human-vs-judge compares the item's human verdict (the
//! reviewers' mean, ties left out) with whether the online judge passed the call;
//! `unsure` answers give no verdict and are left out of both.

use std::collections::BTreeMap;

use keel_core::config::review::{LabelKind, ReviewQueueConfig};
use keel_stats::agreement::{cohen_kappa, Agreement};
use keel_store::review as store;
use keel_store::StoreError;
use serde::Serialize;
use serde_json::Value;

/// A queue's review figures since a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueFigures {
    pub queue: String,
    pub since_ms: i64,
    /// Items with at least one label in the window.
    pub items_reviewed: u64,
    /// Labels given in the window.
    pub labels: u64,
    /// Choice labels: answer → count.
    pub distribution: BTreeMap<String, BTreeMap<String, u64>>,
    /// Number labels: the mean answer.
    pub means: BTreeMap<String, f64>,
    /// The reviewers against each other (good/bad verdicts, items with two labels).
    pub reviewers: Option<Agreement>,
    /// The humans against the online judge (human good/bad vs judge pass/fail).
    pub human_vs_judge: Option<Agreement>,
}

/// Only the verdicts that say something: good or bad.
fn clear(verdict: Option<&str>) -> Option<&str> {
    verdict.filter(|v| *v == "good" || *v == "bad")
}

/// `queue`'s figures over labels given since `since_ms`.
pub fn figures(
    conn: keel_store::sql::Db<'_>,
    queue: &ReviewQueueConfig,
    since_ms: i64,
) -> Result<QueueFigures, StoreError> {
    let labels = store::labels_since(conn, &queue.name, since_ms)?;
    let mut by_item: BTreeMap<i64, Vec<&store::StoredLabel>> = BTreeMap::new();
    let mut distribution: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut sums: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for (l, _) in &labels {
        by_item.entry(l.item_id).or_default().push(l);
        for spec in &queue.labels {
            let Some(v) = l.labels.get(&spec.name) else {
                continue;
            };
            match (&spec.kind, v) {
                (LabelKind::Choice(_), Value::String(s)) => {
                    *distribution
                        .entry(spec.name.clone())
                        .or_default()
                        .entry(s.clone())
                        .or_default() += 1;
                }
                (LabelKind::Number { .. }, v) => {
                    if let Some(n) = v.as_f64() {
                        let e = sums.entry(spec.name.clone()).or_default();
                        e.0 += n;
                        e.1 += 1;
                    }
                }
                _ => {}
            }
        }
    }
    let pairs: Vec<(&str, &str)> = by_item
        .values()
        .filter_map(|ls| {
            let mut clear_ones = ls.iter().filter_map(|l| clear(l.verdict.as_deref()));
            Some((clear_ones.next()?, clear_ones.next()?))
        })
        .collect();
    let judged: Vec<(&str, &str)> = store::human_and_judge(conn, &queue.name, since_ms)?
        .into_iter()
        .map(|(human, judge)| {
            (
                if human { "good" } else { "bad" },
                if judge { "good" } else { "bad" },
            )
        })
        .collect();
    Ok(QueueFigures {
        queue: queue.name.clone(),
        since_ms,
        items_reviewed: by_item.len() as u64,
        labels: labels.len() as u64,
        distribution,
        means: sums
            .into_iter()
            .map(|(k, (sum, n))| (k, sum / n as f64))
            .collect(),
        reviewers: cohen_kappa(&pairs),
        human_vs_judge: cohen_kappa(&judged),
    })
}

#[cfg(test)]
#[path = "agreement_tests.rs"]
mod tests;
