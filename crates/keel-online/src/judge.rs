//! The judge model of an online eval, called through the live gateway.
//!
//! Each grading call goes through the same pipeline as a live call (routing, deadlines,
//! retries and fallbacks of the judge model, pricing), traced with `origin = "judge"`,
//! `parent_id` = the judged call, and the tags `judge` and `online:<eval>`: kept out of
//! reports, tenants' budgets and production metrics, and summed for the eval's own daily
//! cap ([`crate::spend`]).
//!
//! A judge that answers 429 or 5xx, times out or cannot be reached is tried again after
//! a back-off (0.5 s, 1 s, 2 s, each ± 25 %): [`RETRIES`] more tries. A judge that still
//! fails — or replies without a score in 0..1 — leaves an error here, and the worker
//! records the call as not judged rather than scoring it: an outage or a misbehaving
//! judge must not read as bad answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keel_core::chat::{ChatRequest, Message};
use keel_core::money::Nanos;
use keel_core::trace::Origin;
use keel_evals::assert::{Judge, JudgeReply};
use keel_gateway::state::AppState;

/// Tries after the first when the judge is rate limited or fails on its side.
pub const RETRIES: u32 = 3;

/// Error classes worth another try.
fn retryable(class: &str) -> bool {
    matches!(
        class,
        "upstream_rate_limit"
            | "upstream_server_error"
            | "upstream_timeout"
            | "upstream_unreachable"
            | "circuit_open"
            | "deployments_busy"
            | "overloaded"
    )
}

fn backoff(attempt: u32) -> Duration {
    let base = 500u64.saturating_mul(1u64 << attempt.min(6));
    let jitter = fastrand::u64(0..=base / 2);
    Duration::from_millis(base - base / 4 + jitter)
}

/// What one judged call's grading cost and whether the judge failed.
#[derive(Debug, Default)]
struct Tally {
    cost: Option<Nanos>,
    error: Option<String>,
}

/// The judge for one call of one eval.
pub struct GatewayJudge {
    app: Arc<AppState>,
    model: Option<String>,
    tags: Vec<String>,
    parent_id: String,
    tally: Mutex<Tally>,
}

impl GatewayJudge {
    pub fn new(app: Arc<AppState>, eval: &str, model: Option<String>, parent_id: &str) -> Self {
        GatewayJudge {
            app,
            model,
            tags: vec!["judge".into(), keel_store::scores::judge_tag(eval)],
            parent_id: parent_id.to_string(),
            tally: Mutex::new(Tally::default()),
        }
    }

    /// What the judge's calls cost so far (`None`: none priced).
    pub fn cost(&self) -> Option<Nanos> {
        self.tally.lock().map_or(None, |t| t.cost)
    }

    /// The judge's last error, when a grading call failed after its retries.
    pub fn error(&self) -> Option<String> {
        self.tally.lock().map_or(None, |t| t.error.clone())
    }

    fn add(&self, cost: Option<Nanos>, error: Option<String>) {
        if let Ok(mut t) = self.tally.lock() {
            if let Some(c) = cost {
                t.cost = Some(Nanos(t.cost.map_or(0, |x| x.0).saturating_add(c.0)));
            }
            if error.is_some() {
                t.error = error;
            }
        }
    }
}

#[async_trait]
impl Judge for GatewayJudge {
    async fn judge(
        &self,
        model: Option<&str>,
        messages: Vec<Message>,
    ) -> Result<JudgeReply, String> {
        let Some(model) = model.map(str::to_string).or_else(|| self.model.clone()) else {
            let e = "no judge model: set judge = \"MODEL\" on the online eval".to_string();
            self.add(None, Some(e.clone()));
            return Err(e);
        };
        let req = ChatRequest {
            model,
            messages,
            temperature: Some(0.0),
            ..ChatRequest::default()
        };
        let mut attempt = 0;
        loop {
            let out = keel_gateway::inproc::call_through(
                &self.app,
                Some(Origin::Judge),
                req.clone(),
                None,
                &self.tags,
                Some(self.parent_id.clone()),
            )
            .await;
            self.add(out.trace.cost, None);
            match out.result {
                Ok(resp) => {
                    let text = resp.output_text();
                    // A reply without a score in 0..1 (a refusal, a cut-off answer, another
                    // format) is the judge failing, not the answer: the call is recorded as
                    // not judged instead of scored 0.
                    if let Err(why) = keel_evals::assert::judge::parse_judge_reply(&text) {
                        let e = format!("judge_unreadable: {why}");
                        self.add(None, Some(e));
                    }
                    return Ok(JudgeReply {
                        text,
                        cost: out.trace.cost,
                    });
                }
                Err(e) if retryable(e.class()) && attempt < RETRIES => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    let msg = format!("{}: {}", e.class(), e.view().message);
                    self.add(None, Some(msg.clone()));
                    return Err(msg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_with_jitter() {
        for attempt in 0..3 {
            let base = 500u64 << attempt;
            let d = backoff(attempt).as_millis() as u64;
            assert!(d >= base * 3 / 4 && d <= base * 5 / 4, "{attempt}: {d}");
        }
        assert!(retryable("upstream_rate_limit") && retryable("upstream_server_error"));
        assert!(!retryable("upstream_client_error") && !retryable("model_not_found"));
    }
}
