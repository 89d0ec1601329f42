//! Executing a plan: every case × repeat of every arm through the in-process pipeline,
//! with bounded concurrency, adaptive back-off on rate limits, retries on transient
//! failures, the response cache, the assertions, and a result row written as each case
//! completes.
//!
//! Back-off: a 429 (or a 5xx, a timeout, an unreachable upstream) is retried up to
//! `max_retries` times, waiting `Retry-After` when the provider sent one, else
//! 250 ms · 2^attempt with ±50 % jitter; a 429 also pauses *every* worker until its wait
//! is over and halves the number of calls in flight (regained one at a time after 20
//! successes), so a run slows to what the provider allows instead of hammering it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use keel_core::chat::{ChatRequest, Message};
use keel_core::trace::Origin;
use keel_gateway::inproc::InProcess;
use keel_store::evals::EvalResult;
use keel_store::Conn;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::plan::{Arm, ArmCall};
use super::throttle::Throttle;
use crate::assert::{case_score, evaluate, Assertion, AssertionResult, Judge, JudgeReply};
use crate::case::{Case, CaseInput};
use crate::compare::CaseRecord;
use crate::output::CaseOutput;

/// What the executor reports as it goes (the CLI draws a progress bar from it).
pub trait Progress: Send + Sync {
    fn case_done(&self, arm: &str, pass: bool);
}

/// One case × repeat, as folded into the case's record.
struct Sample {
    pass: bool,
    score: f64,
    metrics: BTreeMap<String, f64>,
    cost_nanos: Option<i64>,
    latency_ms: u64,
    error: Option<String>,
}

/// Shared knobs of one execution.
pub struct ExecOptions {
    pub concurrency: usize,
    pub repeat: u32,
    pub max_retries: u32,
    pub use_cache: bool,
    pub tags: Vec<String>,
}

/// One arm's results, one record per case in dataset order (repeats folded: pass when at
/// least half the repeats passed, score and metrics the means, cost and latency the means).
pub struct ArmResults {
    pub records: Vec<CaseRecord>,
    /// The first [`LISTED_FAILURES`] cases whose call failed after retries, with the error.
    pub failures: Vec<(String, String)>,
    /// Every case whose call failed after retries (the list above is capped).
    pub failed_calls: usize,
}

/// Failed calls kept with their error message; the rest are only counted (their errors
/// are in the store), so a run where every call fails stays small.
pub const LISTED_FAILURES: usize = 100;

/// The request a case makes on an arm.
pub fn case_request(arm: &Arm, case: &Case) -> Result<(ChatRequest, Option<String>), String> {
    let messages: Vec<Message> = match &case.input {
        None => Vec::new(),
        Some(CaseInput::Text(t)) => vec![Message::text("user", t.clone())],
        Some(CaseInput::Messages(m)) => m.clone(),
    };
    let mut req = ChatRequest {
        messages,
        ..ChatRequest::default()
    };
    match &arm.call {
        ArmCall::Variant { function, variant } => {
            req.model.clone_from(function);
            req.extra
                .insert("variables".into(), Value::Object(case.variables.clone()));
            Ok((req, Some(variant.clone())))
        }
        ArmCall::Model { model } => {
            if req.messages.is_empty() {
                return Err(format!(
                    "case `{}` has no `input`; a model target sends the input as the conversation",
                    case.id
                ));
            }
            req.model.clone_from(model);
            Ok((req, None))
        }
    }
}

fn retryable(class: &str) -> bool {
    matches!(
        class,
        "upstream_rate_limit"
            | "upstream_server_error"
            | "upstream_timeout"
            | "upstream_unreachable"
    )
}

/// The cache key: the arm's release (prompt version, pinned model, params, tools) or
/// model, and the exact request.
fn cache_key(identity: &str, req: &ChatRequest) -> String {
    let body = serde_json::to_string(req).unwrap_or_default();
    hex::encode(Sha256::digest(format!("{identity}\n{body}").as_bytes()))
}

pub struct Executor<'a> {
    pub engine: &'a InProcess,
    pub store: &'a Mutex<Conn>,
    pub judge: &'a dyn Judge,
    pub defaults: &'a [Assertion],
    pub opts: &'a ExecOptions,
    pub progress: &'a dyn Progress,
}

impl Executor<'_> {
    /// Run every case × repeat of `arm`, writing results under `run_id`. Cases are
    /// pulled from `cases` as workers free up and each sample is folded into its case's
    /// record as it completes: memory holds the calls in flight and one small record per
    /// finished case, never the dataset or the outputs (those go to the store).
    pub async fn run_arm(
        &self,
        arm: &Arm,
        identity: &str,
        run_id: &str,
        cases: impl Iterator<Item = Case>,
    ) -> ArmResults {
        let throttle = Throttle::new(self.opts.concurrency);
        let repeat = self.opts.repeat.max(1);
        let jobs = cases.enumerate().flat_map(move |(i, c)| {
            let c = Arc::new(c);
            (0..repeat).map(move |r| (i, Arc::clone(&c), r))
        });
        let throttle = &throttle;
        let mut samples = futures::stream::iter(jobs)
            .map(|(i, case, r)| async move {
                let sample = self.one(arm, identity, run_id, &case, r, throttle).await;
                (i, case, sample)
            })
            .buffer_unordered(self.opts.concurrency.max(1));
        let mut folder = Folder::new(repeat);
        while let Some((i, case, sample)) = samples.next().await {
            folder.add(i, &case.id, sample);
        }
        folder.finish()
    }

    async fn one(
        &self,
        arm: &Arm,
        identity: &str,
        run_id: &str,
        case: &Case,
        repeat: u32,
        throttle: &Throttle,
    ) -> Sample {
        let (out, cached, trace_id) = self.output(arm, identity, case, repeat, throttle).await;
        let mut results: Vec<AssertionResult> = Vec::new();
        for a in self.defaults {
            results.push(evaluate(a, case, &out, self.judge).await);
        }
        for spec in &case.assertions {
            match spec.validate() {
                Ok(a) => results.push(evaluate(&a, case, &out, self.judge).await),
                Err(e) => results.push(AssertionResult {
                    name: spec.kind.clone(),
                    metric: None,
                    pass: false,
                    score: 0.0,
                    weight: 1.0,
                    reason: e,
                    judge_reasoning: None,
                    judge_cost: None,
                }),
            }
        }
        let (pass, score) = if results.is_empty() {
            (
                out.error.is_none(),
                f64::from(u8::from(out.error.is_none())),
            )
        } else {
            case_score(&results)
        };
        let mut metrics = BTreeMap::new();
        for r in &results {
            if let Some(m) = &r.metric {
                metrics.insert(m.clone(), r.score);
            }
        }
        let row = EvalResult {
            run_id: run_id.to_string(),
            case_id: case.id.clone(),
            repeat_idx: repeat,
            pass,
            score,
            output: Some(out.text.clone()),
            error: out.error.clone(),
            latency_ms: out.latency_ms,
            cost_nanos: out.cost.map(|c| c.0),
            input_tokens: out.input_tokens,
            output_tokens: out.output_tokens,
            cached,
            trace_id,
            assertions_json: serde_json::to_string(&results).unwrap_or_else(|_| "[]".into()),
        };
        if let Ok(conn) = self.store.lock() {
            if let Err(e) = keel_store::evals::record_eval_result(&*conn, &row) {
                tracing::warn!(error = %e, case = %case.id, "cannot store an eval result");
            }
        }
        self.progress.case_done(arm.role, pass);
        Sample {
            pass,
            score,
            metrics,
            cost_nanos: out.cost.map(|c| c.0),
            latency_ms: out.latency_ms,
            error: out.error,
        }
    }

    /// The target's output for a case: from the cache, or a call with retries.
    async fn output(
        &self,
        arm: &Arm,
        identity: &str,
        case: &Case,
        repeat: u32,
        throttle: &Throttle,
    ) -> (CaseOutput, bool, Option<String>) {
        let (req, variant) = match case_request(arm, case) {
            Ok(x) => x,
            Err(e) => {
                return (
                    CaseOutput {
                        error: Some(e),
                        ..CaseOutput::default()
                    },
                    false,
                    None,
                )
            }
        };
        // Repeats are separate samples: the repeat index is part of the key.
        let key = cache_key(&format!("{identity}#{repeat}"), &req);
        if self.opts.use_cache {
            let hit = self
                .store
                .lock()
                .ok()
                .and_then(|c| keel_store::evals::cache_get(&*c, &key).ok().flatten())
                .and_then(|j| serde_json::from_str::<CaseOutput>(&j).ok());
            if let Some(out) = hit {
                return (out, true, None);
            }
        }
        let mut attempt = 0;
        loop {
            throttle.enter().await;
            let outcome = self
                .engine
                .call(req.clone(), variant.as_deref(), &self.opts.tags)
                .await;
            let trace = outcome.trace;
            let (out, retry) = match outcome.result {
                Ok(resp) => {
                    let tool_calls = resp
                        .choices
                        .first()
                        .and_then(|c| c.message.tool_calls.clone())
                        .unwrap_or_default();
                    (
                        CaseOutput {
                            text: resp.output_text(),
                            tool_calls,
                            latency_ms: trace.latency_ms,
                            cost: trace.cost,
                            input_tokens: trace.input_tokens,
                            output_tokens: trace.output_tokens,
                            error: None,
                        },
                        None,
                    )
                }
                Err(e) => {
                    let class = e.class();
                    let wait = e
                        .retry_after_secs()
                        .map(Duration::from_secs)
                        .unwrap_or_else(|| {
                            let base = 250u64.saturating_mul(1 << attempt.min(6));
                            Duration::from_millis(base / 2 + fastrand::u64(0..=base))
                        });
                    (
                        CaseOutput {
                            latency_ms: trace.latency_ms,
                            cost: trace.cost,
                            error: Some(format!("{class}: {}", e.view().message)),
                            ..CaseOutput::default()
                        },
                        retryable(class).then_some((wait, class == "upstream_rate_limit")),
                    )
                }
            };
            throttle.leave(match retry {
                Some((wait, true)) => Some(wait),
                _ => None,
            });
            match retry {
                Some((wait, _)) if attempt < self.opts.max_retries => {
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    if self.opts.use_cache && out.error.is_none() {
                        if let (Ok(c), Ok(json)) = (self.store.lock(), serde_json::to_string(&out))
                        {
                            let _ =
                                keel_store::evals::cache_put(&*c, &key, &json, trace.started_at_ms);
                        }
                    }
                    return (out, false, Some(trace.id));
                }
            }
        }
    }
}

/// A case's repeats so far.
#[derive(Default)]
struct Partial {
    samples: u32,
    passes: u32,
    score: f64,
    metrics: BTreeMap<String, f64>,
    cost_nanos: i64,
    priced: u32,
    latency_ms: u64,
    error: Option<String>,
}

/// Folds samples into per-case records as they complete (out of order, repeats of one
/// case possibly interleaved with others'). Only cases with repeats still in flight are
/// pending, so the pending map stays as small as the concurrency.
struct Folder {
    repeat: u32,
    pending: HashMap<usize, Partial>,
    done: Vec<(usize, CaseRecord)>,
    failures: Vec<(usize, String, String)>,
    failed_calls: usize,
}

impl Folder {
    fn new(repeat: u32) -> Self {
        Folder {
            repeat,
            pending: HashMap::new(),
            done: Vec::new(),
            failures: Vec::new(),
            failed_calls: 0,
        }
    }

    fn add(&mut self, index: usize, case_id: &str, s: Sample) {
        let p = self.pending.entry(index).or_default();
        p.samples += 1;
        p.passes += u32::from(s.pass);
        p.score += s.score;
        for (k, v) in s.metrics {
            *p.metrics.entry(k).or_default() += v;
        }
        if let Some(c) = s.cost_nanos {
            p.cost_nanos = p.cost_nanos.saturating_add(c);
            p.priced += 1;
        }
        p.latency_ms += s.latency_ms;
        if p.error.is_none() {
            p.error = s.error;
        }
        if p.samples < self.repeat {
            return;
        }
        let Some(p) = self.pending.remove(&index) else {
            return;
        };
        let n = f64::from(p.samples);
        if let Some(err) = p.error {
            self.failed_calls += 1;
            // The first in dataset order, not in completion order: trim the list back
            // to the lowest indices whenever it doubles.
            self.failures.push((index, case_id.to_string(), err));
            if self.failures.len() >= 2 * LISTED_FAILURES {
                self.failures.sort_by_key(|(i, _, _)| *i);
                self.failures.truncate(LISTED_FAILURES);
            }
        }
        let record = CaseRecord {
            case_id: case_id.to_string(),
            pass: p.passes * 2 >= p.samples,
            score: p.score / n,
            metrics: p.metrics.into_iter().map(|(k, v)| (k, v / n)).collect(),
            cost_nanos: (p.priced == p.samples).then(|| p.cost_nanos / i64::from(p.samples)),
            latency_ms: p.latency_ms / u64::from(p.samples),
        };
        self.done.push((index, record));
    }

    fn finish(mut self) -> ArmResults {
        self.done.sort_by_key(|(i, _)| *i);
        self.failures.sort_by_key(|(i, _, _)| *i);
        self.failures.truncate(LISTED_FAILURES);
        ArmResults {
            records: self.done.into_iter().map(|(_, r)| r).collect(),
            failures: self
                .failures
                .into_iter()
                .map(|(_, id, e)| (id, e))
                .collect(),
            failed_calls: self.failed_calls,
        }
    }
}

/// The judge: the suite's judge model, called through the same pipeline (traced as eval
/// traffic, tagged `judge`).
pub struct EngineJudge<'a> {
    pub engine: &'a InProcess,
    pub model: Option<String>,
    pub tags: Vec<String>,
}

#[async_trait::async_trait]
impl Judge for EngineJudge<'_> {
    async fn judge(
        &self,
        model: Option<&str>,
        messages: Vec<Message>,
    ) -> Result<JudgeReply, String> {
        let Some(model) = model.map(str::to_string).or_else(|| self.model.clone()) else {
            return Err("no judge model: set [judge] model = \"...\" in the suite".into());
        };
        let req = ChatRequest {
            model,
            messages,
            temperature: Some(0.0),
            ..ChatRequest::default()
        };
        let out = self.engine.call(req, None, &self.tags).await;
        match out.result {
            Ok(resp) => Ok(JudgeReply {
                text: resp.output_text(),
                cost: out.trace.cost,
            }),
            Err(e) => Err(format!("{}: {}", e.class(), e.view().message)),
        }
    }
}

/// Record origin for eval traffic.
pub const ORIGIN: Origin = Origin::Eval;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pass: bool, score: f64, cost: Option<i64>, error: Option<&str>) -> Sample {
        Sample {
            pass,
            score,
            metrics: BTreeMap::from([("m".to_string(), score)]),
            cost_nanos: cost,
            latency_ms: 100,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn repeats_fold_as_they_complete_out_of_order_into_dataset_order() {
        let mut f = Folder::new(2);
        // Case 1 completes before case 0; their repeats interleave.
        f.add(1, "b", sample(true, 1.0, Some(10), None));
        f.add(
            0,
            "a",
            sample(false, 0.0, Some(10), Some("upstream_timeout: slow")),
        );
        assert_eq!(f.pending.len(), 2);
        f.add(1, "b", sample(false, 0.5, None, None));
        assert_eq!(f.pending.len(), 1, "a finished case leaves the pending map");
        f.add(0, "a", sample(false, 0.0, Some(30), None));
        let out = f.finish();
        let ids: Vec<&str> = out.records.iter().map(|r| r.case_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let (a, b) = (&out.records[0], &out.records[1]);
        assert!(
            !a.pass && b.pass,
            "half or more of the repeats passing is a pass"
        );
        assert_eq!((a.cost_nanos, b.cost_nanos), (Some(20), None));
        assert_eq!((b.score, b.metrics["m"]), (0.75, 0.75));
        assert_eq!(out.failed_calls, 1);
        assert_eq!(
            out.failures,
            [("a".to_string(), "upstream_timeout: slow".to_string())]
        );
    }

    #[test]
    fn failed_calls_are_all_counted_and_the_first_listed() {
        let mut f = Folder::new(1);
        // Completed in reverse: the listed ones are still the first in dataset order.
        let n = 3 * LISTED_FAILURES + 7;
        for i in (0..n).rev() {
            f.add(i, &format!("c{i}"), sample(false, 0.0, None, Some("boom")));
        }
        let out = f.finish();
        assert_eq!(out.failed_calls, n);
        assert_eq!(out.failures.len(), LISTED_FAILURES);
        assert_eq!(out.records.len(), n);
        assert_eq!(out.failures[0].0, "c0");
        let last = format!("c{}", LISTED_FAILURES - 1);
        assert_eq!(out.failures[LISTED_FAILURES - 1].0, last);
    }
}
