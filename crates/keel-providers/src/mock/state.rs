//! The mock's shared state — settings, loaded rules, fault dice — and the one entry
//! point both front doors use: the in-process [`super::MockProvider`] and the HTTP server
//! of `keel-mock` (OpenAI and Anthropic routes) all call [`MockServerState::respond`], so
//! they answer the same request the same way.

use std::path::Path;

use keel_core::chat::ChatRequest;
use keel_core::config::mock::MockSettings;

use super::faults::{injected_message, FaultDice, MockFault, Roll};
use super::reply::{self, Plan};
use super::rules::RuleSet;
use super::stream::MockReply;
use super::MockError;

/// Settings, rules and dice, shared (behind an `Arc`) by every request. Nothing here is
/// locked across an await; the dice take a lock for one draw, and only when a fault
/// rate is set.
#[derive(Debug)]
pub struct MockServerState {
    settings: MockSettings,
    rules: RuleSet,
    dice: FaultDice,
}

impl MockServerState {
    /// Check the settings and load the rules file, if any.
    pub fn new(settings: MockSettings) -> Result<Self, MockError> {
        let rules = match settings.rules.as_deref() {
            Some(path) => RuleSet::load(Path::new(path))?,
            None => RuleSet::default(),
        };
        Self::with_rules(settings, rules)
    }

    /// Like [`MockServerState::new`] with rules already loaded (the `rules` setting is
    /// then ignored).
    pub fn with_rules(settings: MockSettings, rules: RuleSet) -> Result<Self, MockError> {
        let dice = FaultDice::new(&settings)?;
        Ok(MockServerState {
            settings,
            rules,
            dice,
        })
    }

    pub fn settings(&self) -> &MockSettings {
        &self.settings
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Decide the answer to `req` without waiting: the deterministic reply (or scripted
    /// fault), then one roll of the fault dice. `req.stream` tells whether a random
    /// `cut` may apply. Returns the decision and the latency still to wait.
    pub fn decide(&self, req: &ChatRequest) -> (Result<MockReply, MockFault>, std::time::Duration) {
        let Plan {
            outcome,
            latency,
            chunk_delay,
            cut,
        } = reply::plan(req, &self.settings, &self.rules);
        // Rolled for every request so the fault sequence depends only on the seed and
        // the order of requests.
        let roll = self.dice.roll(req.stream);
        let outcome = outcome.and_then(|response| {
            let retry_after = Some(self.settings.retry_after_secs);
            match roll {
                Roll::Status429 => Err(MockFault::Status {
                    status: 429,
                    message: injected_message(429, &req.model, retry_after),
                    retry_after,
                }),
                Roll::Status500 => Err(MockFault::Status {
                    status: 500,
                    message: injected_message(500, &req.model, None),
                    retry_after: None,
                }),
                Roll::Timeout => Err(MockFault::Timeout),
                Roll::Cut | Roll::Clean => Ok(MockReply {
                    response,
                    latency,
                    chunk_delay,
                    cut: cut || roll == Roll::Cut,
                }),
            }
        });
        (outcome, latency)
    }

    /// Answer `req`: decide, then **sleep the latency** (for faults too), then return.
    /// Callers must not sleep [`MockReply::latency`] again; they sleep
    /// [`MockReply::chunk_delay`] between streamed chunks, and [`super::HANG`] on
    /// [`MockFault::Timeout`].
    pub async fn respond(&self, req: &ChatRequest) -> Result<MockReply, MockFault> {
        let (outcome, latency) = self.decide(req);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::chat::Message;
    use std::time::Duration;

    fn req(text: &str, stream: bool) -> ChatRequest {
        ChatRequest {
            model: "mock-1".into(),
            messages: vec![Message::text("user", text)],
            stream,
            ..Default::default()
        }
    }

    #[test]
    fn random_faults_never_change_the_content() {
        let state = MockServerState::new(MockSettings {
            rate_429: 0.3,
            rate_500: 0.2,
            rate_cut: 0.3,
            seed: 3,
            ..Default::default()
        })
        .unwrap();
        let expected = reply::plan(&req("hi", true), state.settings(), state.rules()).outcome;
        let mut seen = [0usize; 4];
        for _ in 0..500 {
            match state.decide(&req("hi", true)).0 {
                Ok(r) => {
                    assert_eq!(Ok(r.response.clone()), expected);
                    seen[usize::from(r.cut)] += 1;
                }
                Err(MockFault::Status {
                    status: 429,
                    retry_after: Some(1),
                    ..
                }) => seen[2] += 1,
                Err(MockFault::Status {
                    status: 500,
                    retry_after: None,
                    ..
                }) => seen[3] += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
    }

    #[test]
    fn a_missing_rules_file_fails_at_load() {
        let err = MockServerState::new(MockSettings {
            rules: Some("/nonexistent/keel-rules.toml".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/keel-rules.toml"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn respond_waits_the_latency_first() {
        let state = MockServerState::new(MockSettings {
            latency_ms: 250,
            ..Default::default()
        })
        .unwrap();
        let start = tokio::time::Instant::now();
        let r = state.respond(&req("hi", false)).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        assert_eq!(r.latency, Duration::from_millis(250));
        let start = tokio::time::Instant::now();
        let f = state
            .respond(&req("[mock:status=503][mock:latency=40]", false))
            .await;
        assert!(matches!(f, Err(MockFault::Status { status: 503, .. })));
        assert_eq!(start.elapsed(), Duration::from_millis(40));
    }
}
