//! The mock as an in-process provider (`kind = "mock"` in `keel.toml`): the same answers
//! as the `keel mock-provider` server, delivered through [`ChatProvider`] with the errors
//! an adapter talking to a real upstream would produce — so the gateway's retries,
//! fallbacks and stream handling are exercised without a socket.

use async_trait::async_trait;
use futures::{stream, StreamExt};
use keel_core::chat::{ChatChunk, ChatRequest, ChatResponse};
use keel_core::config::mock::MockSettings;

use super::faults::{MockFault, HANG};
use super::state::MockServerState;
use super::stream::MockReply;
use super::MockError;
use crate::{ChatProvider, ChunkStream, ProviderError};

/// The built-in mock upstream, in process.
#[derive(Debug)]
pub struct MockProvider {
    state: MockServerState,
}

impl MockProvider {
    /// Check the settings and load the rules file; a bad file is an error naming it.
    pub fn new(settings: MockSettings) -> Result<Self, MockError> {
        Ok(MockProvider {
            state: MockServerState::new(settings)?,
        })
    }

    /// A provider over an already built state (e.g. with rules loaded from a string).
    pub fn from_state(state: MockServerState) -> Self {
        MockProvider { state }
    }

    pub fn state(&self) -> &MockServerState {
        &self.state
    }
}

/// The error for a fault, after hanging for a `Timeout` (like a silent upstream).
async fn fault_error(fault: MockFault) -> ProviderError {
    if fault == MockFault::Timeout {
        tokio::time::sleep(HANG).await;
    }
    fault.to_provider_error()
}

/// What an adapter sees when a whole response is cut: a 200 with half a JSON body.
fn cut_body_error(reply: &MockReply) -> ProviderError {
    let body = serde_json::to_vec(&reply.response).unwrap_or_default();
    let half = &body[..body.len() / 2];
    let why = match serde_json::from_slice::<ChatResponse>(half) {
        Err(e) => e.to_string(),
        Ok(_) => "body ended early".to_string(),
    };
    ProviderError::InvalidResponse(format!("truncated chat completion body: {why}"))
}

#[async_trait]
impl ChatProvider for MockProvider {
    async fn embed(
        &self,
        req: keel_core::embeddings::EmbeddingRequest,
    ) -> Result<keel_core::embeddings::EmbeddingResponse, ProviderError> {
        Ok(super::embed::embed(&req))
    }

    async fn complete(&self, mut req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        req.stream = false;
        match self.state.respond(&req).await {
            Ok(reply) if reply.cut => Err(cut_body_error(&reply)),
            Ok(reply) => Ok(reply.response),
            Err(fault) => Err(fault_error(fault).await),
        }
    }

    /// Always ends with the usage chunk (unless cut): adapters must ask for usage.
    async fn stream(&self, mut req: ChatRequest) -> Result<ChunkStream, ProviderError> {
        req.stream = true;
        let reply = match self.state.respond(&req).await {
            Ok(reply) => reply,
            Err(fault) => return Err(fault_error(fault).await),
        };
        let delay = reply.chunk_delay;
        let chunks = reply.chunks(true);
        let items = chunks
            .into_iter()
            .map(Ok::<ChatChunk, ProviderError>)
            .enumerate();
        let body = stream::iter(items).then(move |(i, item)| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            item
        });
        if reply.cut {
            let cut = stream::once(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Err(ProviderError::StreamCut(
                    "connection closed before the end of the stream ([DONE] never came)"
                        .to_string(),
                ))
            });
            Ok(Box::pin(body.chain(cut)))
        } else {
            Ok(Box::pin(body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::chat::{Message, Usage};
    use std::time::Duration;

    fn req(text: &str) -> ChatRequest {
        ChatRequest {
            model: "mock-1".into(),
            messages: vec![Message::text("user", text)],
            ..Default::default()
        }
    }

    fn provider() -> MockProvider {
        MockProvider::new(MockSettings::default()).unwrap()
    }

    async fn collect(s: ChunkStream) -> Vec<Result<ChatChunk, ProviderError>> {
        s.collect().await
    }

    #[tokio::test]
    async fn complete_and_stream_agree() {
        let p = provider();
        let whole = p.complete(req("Tell me a story")).await.unwrap();
        assert_eq!(whole.output_text(), "Mock reply to: Tell me a story");
        let items = collect(p.stream(req("Tell me a story")).await.unwrap()).await;
        let chunks: Vec<ChatChunk> = items.into_iter().map(|c| c.unwrap()).collect();
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, whole.output_text());
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage, whole.usage);
        assert_eq!(whole.usage, Some(Usage::new(8, 8)));
        assert!(chunks.iter().all(|c| c.id == whole.id));
    }

    #[tokio::test]
    async fn status_faults_are_upstream_errors() {
        let p = MockProvider::new(MockSettings {
            retry_after_secs: 4,
            ..Default::default()
        })
        .unwrap();
        match p.complete(req("[mock:status=429]")).await {
            Err(ProviderError::Status {
                status: 429,
                retry_after,
                code,
                body,
                ..
            }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(4)));
                assert_eq!(code.as_deref(), Some("rate_limit_exceeded"));
                assert_eq!(body.unwrap()["error"]["type"], "requests");
            }
            other => panic!("unexpected {other:?}"),
        }
        match p.stream(req("[mock:status=500]")).await {
            Err(e) => assert_eq!(e.class(), "upstream_server_error"),
            Ok(_) => panic!("a 500 must fail before the stream starts"),
        }
    }

    #[tokio::test]
    async fn garbage_is_an_invalid_response() {
        let e = provider()
            .complete(req("[mock:garbage]"))
            .await
            .unwrap_err();
        assert_eq!(e.class(), "upstream_invalid_response");
        let e = provider()
            .stream(req("[mock:garbage]"))
            .await
            .err()
            .unwrap();
        assert_eq!(e.class(), "upstream_invalid_response");
    }

    #[tokio::test]
    async fn cut_streams_end_in_stream_cut() {
        let items = collect(
            provider()
                .stream(req("one two three four five six seven [mock:cut]"))
                .await
                .unwrap(),
        )
        .await;
        let (last, before) = items.split_last().unwrap();
        assert!(matches!(last, Err(ProviderError::StreamCut(_))), "{last:?}");
        assert!(before
            .iter()
            .all(|c| c.as_ref().is_ok_and(|c| c.usage.is_none())));
        // "Mock reply to: one two three four five six seven" = 11 tokens = 3 content
        // chunks; the role chunk and 1 content chunk get through.
        assert_eq!(before.len(), 2);
        let e = provider().complete(req("hi [mock:cut]")).await.unwrap_err();
        assert!(
            matches!(&e, ProviderError::InvalidResponse(m) if m.contains("EOF")),
            "{e:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_hangs_past_any_deadline() {
        let p = provider();
        let r =
            tokio::time::timeout(Duration::from_secs(120), p.complete(req("[mock:timeout]"))).await;
        assert!(r.is_err(), "still hanging after 120 s");
        let start = tokio::time::Instant::now();
        let e = p.complete(req("[mock:timeout]")).await.unwrap_err();
        assert_eq!(start.elapsed(), HANG);
        assert!(
            matches!(e, ProviderError::Status { status: 504, .. }),
            "{e:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn latency_and_chunk_delay_are_waited() {
        let p = MockProvider::new(MockSettings {
            latency_ms: 100,
            chunk_delay_ms: 10,
            ..Default::default()
        })
        .unwrap();
        let start = tokio::time::Instant::now();
        let s = p.stream(req("a b c d e f g h")).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        let n = collect(s).await.len();
        // role + 3 content ("Mock reply to: a b c d e f g h" = 12 tokens) + finish + usage
        assert_eq!(n, 6);
        assert_eq!(start.elapsed(), Duration::from_millis(100 + 10 * 5));
    }
}
