//! Whose scores a quality alert reads: the online judge's (the default) or people's —
//! the `human` scores a review queue's labels become.
//!
//! Why it exists: a team that reviews production wants the same alert on what its
//! reviewers say as on what its judge says (`online_pass_rate`: the share of reviewed
//! calls judged good; `online_score`: the mean of a number label), so a drop in human
//! verdicts pages like a drop in judge scores. Human labels come hours or days after
//! the call, and a queue fed by failed evals over-samples bad calls: use long windows
//! (`window = "1d"`) and a queue filled by a random `sample_rate` for a fair rate.
//!
//! ```toml
//! [[alerts]]
//! name = "support-human-verdicts"
//! metric = "online_pass_rate"     # or online_score with score_metric = a number label
//! source = "human"                # default "judge"
//! review_queue = "support-review" # instead of online_eval
//! window = "1d"
//! ```

use super::quality_alerts::QualityScope;
use super::review::{LabelKind, ReviewQueueConfig, ReviewTarget};
use crate::scope::ScopeKind;

/// Whose scores a quality rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ScoreSource {
    /// The online evals' judges (score sources `online` and `backfill`).
    #[default]
    Judge,
    /// A review queue's reviewers (score source `human`, eval = the queue's name).
    Human { queue: String },
}

impl ScoreSource {
    /// The score `source` values read.
    pub fn sources(&self) -> &'static [&'static str] {
        match self {
            ScoreSource::Judge => &["online", "backfill"],
            ScoreSource::Human { .. } => &["human"],
        }
    }
}

/// `source` and `review_queue` of a quality rule: `Ok(None)` for the judge (the rule then
/// names its online eval as before), `Ok(Some(queue))` for people. Issues are pushed
/// with `issue(key, message, hint)`; `Err(())` after any.
pub(crate) fn validate_source<'q>(
    metric: &str,
    source: Option<&str>,
    review_queue: Option<&str>,
    online_eval_set: bool,
    score_metric: Option<&str>,
    queues: &'q [ReviewQueueConfig],
    issue: &mut dyn FnMut(&str, String, &str),
) -> Result<Option<&'q ReviewQueueConfig>, ()> {
    let human = match source {
        None | Some("judge") => false,
        Some("human") => true,
        Some(other) => {
            issue(
                "source",
                format!("`{other}` is not a score source"),
                "use \"judge\" (online evals, the default) or \"human\" (a review queue's labels)",
            );
            return Err(());
        }
    };
    if !human {
        if review_queue.is_some() {
            issue(
                "review_queue",
                "review_queue reads people's labels, but the rule reads the judge's scores".into(),
                "add source = \"human\", or remove review_queue",
            );
            return Err(());
        }
        return Ok(None);
    }
    if metric != "online_pass_rate" && metric != "online_score" {
        issue(
            "source",
            format!("a {metric} rule cannot read human scores"),
            "source = \"human\" applies to online_pass_rate and online_score",
        );
        return Err(());
    }
    if online_eval_set {
        issue(
            "online_eval",
            "a source = \"human\" rule reads a review queue's labels, not an online eval".into(),
            "replace online_eval with review_queue = \"NAME\" (a [[review_queues]] name)",
        );
        return Err(());
    }
    let Some(name) = review_queue else {
        issue(
            "review_queue",
            "a source = \"human\" rule names the review queue whose labels it reads".into(),
            "e.g. review_queue = \"support-review\" (a [[review_queues]] name)",
        );
        return Err(());
    };
    let Some(q) = queues.iter().find(|q| q.name == name) else {
        let known: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
        issue(
            "review_queue",
            format!("review queue `{name}` is not configured"),
            &if known.is_empty() {
                "add a [[review_queues]] table with that name".to_string()
            } else {
                format!("name one of: {}", known.join(", "))
            },
        );
        return Err(());
    };
    if metric == "online_pass_rate" && q.verdict().is_none() {
        issue(
            "review_queue",
            format!("review queue `{name}` has no `verdict` label, so no pass rate"),
            "use metric = \"online_score\" with score_metric = a number label",
        );
        return Err(());
    }
    if let Some(m) = score_metric {
        let scores = q.labels.iter().any(|l| {
            l.name == m
                && (matches!(l.kind, LabelKind::Number { .. })
                    || (l.name == "verdict" && matches!(l.kind, LabelKind::Choice(_))))
        });
        if !scores {
            issue(
                "score_metric",
                format!("`{m}` is not a scored label of review queue `{name}`"),
                "name a number label of the queue (or `verdict`: good = 1, bad = 0)",
            );
            return Err(());
        }
    }
    Ok(Some(q))
}

/// The calls a review queue covers, as a quality scope.
pub(crate) fn queue_covers(q: &ReviewQueueConfig) -> QualityScope {
    let mut covers = QualityScope::default();
    match &q.target {
        ReviewTarget::Function(f) => covers.function = Some(f.clone()),
        ReviewTarget::Model(m) => covers.model = Some(m.clone()),
        ReviewTarget::All => {}
    }
    if let Some(s) = &q.scope {
        match s.kind {
            ScopeKind::Tenant => covers.tenant = s.value.clone(),
            ScopeKind::Feature => covers.feature = s.value.clone(),
            _ => {}
        }
    }
    covers
}
