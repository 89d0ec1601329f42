//! The OpenAI-compatible adapter: OpenAI itself, Azure OpenAI's v1 API, vLLM, Ollama,
//! Together, and Keel's own mock server all speak this wire format.
//!
//! Azure OpenAI's deployment API is the same wire format at a URL per deployment with an
//! `api-version` and an `api-key` header ([`OpenAiProvider::azure`]).
//!
//! Canonical types *are* this wire format, so the request goes out as-is (with the
//! pinned upstream model). Streams always ask for usage so that they can be priced.
//! With `api = "responses"` the same provider calls OpenAI's Responses API instead
//! (`responses/provider.rs`).

use std::collections::HashMap;

use async_trait::async_trait;
use futures::StreamExt;
use keel_core::chat::{ChatChunk, ChatRequest, ChatResponse, StreamOptions};
use keel_core::config::OpenAiApi;
use keel_core::embeddings::{EmbeddingRequest, EmbeddingResponse};
use serde_json::Value;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::Uri;

use crate::client::{json_headers, parse_uri, uri_of, HttpClient, Response};
use crate::sse;
use crate::{ChatProvider, ChunkStream, Completed, ProviderError};

pub struct OpenAiProvider {
    client: HttpClient,
    target: Target,
    /// `content-type` and the auth header, built once (cloning a value shares its bytes);
    /// an error when the key cannot be a header value.
    headers: Result<Vec<(HeaderName, HeaderValue)>, String>,
    /// Chat Completions, or the Responses API (`responses/provider.rs`).
    api: OpenAiApi,
}

/// Where a request goes.
enum Target {
    /// One URL for every model (`{base_url}/chat/completions`, `{base_url}/embeddings`).
    /// Parsed once: parsing (with IDNA) per request showed up in profiles.
    Fixed {
        chat: Result<Uri, String>,
        embeddings: Result<Uri, String>,
        responses: Result<Uri, String>,
    },
    /// Azure OpenAI: one URL per deployment (the pinned upstream model),
    /// `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V`, each
    /// parsed on first use and kept.
    Azure {
        endpoint: String,
        api_version: String,
        urls: std::sync::RwLock<HashMap<(Op, String), Uri>>,
    },
}

/// Which API of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Chat,
    Embeddings,
    Responses,
}

/// Room for a chat request of a few messages; longer ones grow from here.
const REQUEST_BODY_CAPACITY: usize = 1024;

/// How a request authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `Authorization: Bearer …` (OpenAI; Azure with a Microsoft Entra ID token).
    Bearer(String),
    /// Azure's `api-key: …` header.
    ApiKey(String),
}

impl OpenAiProvider {
    /// `base_url` is the API root, e.g. `https://api.openai.com/v1`.
    pub fn new(client: HttpClient, base_url: &str, api_key: Option<String>) -> Self {
        OpenAiProvider {
            client,
            target: {
                let at = |op: &str| parse_uri(&format!("{}/{op}", base_url.trim_end_matches('/')));
                Target::Fixed {
                    chat: at("chat/completions"),
                    embeddings: at("embeddings"),
                    responses: at("responses"),
                }
            },
            headers: headers(&api_key.map_or(Auth::None, Auth::Bearer)),
            api: OpenAiApi::Chat,
        }
    }

    /// Call the upstream with `api` (Chat Completions unless set).
    pub fn with_api(mut self, api: OpenAiApi) -> Self {
        self.api = api;
        self
    }

    /// Azure OpenAI at `endpoint` (`https://RESOURCE.openai.azure.com`): the model's
    /// upstream id is the deployment name.
    pub fn azure(client: HttpClient, endpoint: &str, api_version: &str, auth: Auth) -> Self {
        OpenAiProvider {
            client,
            target: Target::Azure {
                endpoint: endpoint.trim_end_matches('/').to_string(),
                api_version: api_version.to_string(),
                urls: std::sync::RwLock::new(HashMap::new()),
            },
            headers: headers(&auth),
            api: OpenAiApi::Chat,
        }
    }

    /// The URL of a chat request for `model`.
    fn url(&self, model: &str) -> Result<Uri, ProviderError> {
        self.url_of(Op::Chat, model)
    }

    /// The URL of `op` for `model`.
    pub(crate) fn url_of(&self, op: Op, model: &str) -> Result<Uri, ProviderError> {
        match &self.target {
            Target::Fixed {
                chat,
                embeddings,
                responses,
            } => match op {
                Op::Chat => chat,
                Op::Embeddings => embeddings,
                Op::Responses => responses,
            }
            .clone()
            .map_err(ProviderError::Unsupported),
            Target::Azure {
                endpoint,
                api_version,
                urls,
            } => {
                let cached = urls
                    .read()
                    .ok()
                    .and_then(|m| m.get(&(op, model.to_string())).cloned());
                if let Some(u) = cached {
                    return Ok(u);
                }
                let mut u = url::Url::parse(endpoint)
                    .map_err(|e| ProviderError::Unsupported(format!("invalid base_url: {e}")))?;
                u.path_segments_mut()
                    .map_err(|()| ProviderError::Unsupported("invalid base_url".into()))?
                    .pop_if_empty()
                    .extend(["openai", "deployments", model])
                    .extend(match op {
                        Op::Chat => &["chat", "completions"][..],
                        Op::Embeddings => &["embeddings"][..],
                        Op::Responses => &["responses"][..],
                    });
                u.query_pairs_mut().append_pair("api-version", api_version);
                let u = uri_of(&u).map_err(ProviderError::Unsupported)?;
                if let Ok(mut m) = urls.write() {
                    m.insert((op, model.to_string()), u.clone());
                }
                Ok(u)
            }
        }
    }

    async fn send(&self, req: &ChatRequest) -> Result<Response, ProviderError> {
        self.post(self.url(&req.model)?, req).await
    }

    /// POST `body` to `url` with this provider's auth; a non-2xx is the provider's error.
    pub(crate) async fn post(
        &self,
        url: Uri,
        body: &impl serde::Serialize,
    ) -> Result<Response, ProviderError> {
        let headers = self
            .headers
            .as_ref()
            .map_err(|e| ProviderError::Unsupported(e.clone()))?;
        // In a buffer sized for a typical request (serde_json's own starts at 128 bytes
        // and reallocates up to the body's size on every call).
        let mut json = Vec::with_capacity(REQUEST_BODY_CAPACITY);
        serde_json::to_writer(&mut json, body)
            .map_err(|e| ProviderError::Connect(format!("cannot encode the request: {e}")))?;
        let resp = self
            .client
            .post(url, headers, json)
            .await
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(sse::status_error(resp, openai_error).await);
        }
        Ok(resp)
    }
}

/// The headers every request of a provider with `auth` carries.
fn headers(auth: &Auth) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    match auth {
        Auth::None => json_headers(None),
        Auth::Bearer(key) => json_headers(Some((AUTHORIZATION, &format!("Bearer {key}")))),
        Auth::ApiKey(key) => json_headers(Some((HeaderName::from_static("api-key"), key))),
    }
}

/// A 2xx that is not an event stream (an HTML error page from a proxy, a JSON body from
/// a server that ignored `stream`) is an invalid response, not a cut.
pub(crate) async fn expect_event_stream(resp: Response) -> Result<Response, ProviderError> {
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/event-stream")
        .to_ascii_lowercase();
    if content_type.contains("text/event-stream") {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    Err(ProviderError::InvalidResponse(format!(
        "expected an event stream, got `{content_type}`: {}",
        sse::truncate(&text, 200)
    )))
}

/// `{"error": {"message": .., "type": .., "code": ..}}` → (message, code or type).
pub fn openai_error(body: &Value) -> Option<(String, Option<String>)> {
    let err = body.get("error")?;
    let message = match err {
        Value::String(s) => s.clone(),
        _ => err.get("message")?.as_str()?.to_string(),
    };
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| err.get("type").and_then(Value::as_str))
        .map(str::to_string);
    Some((message, code))
}

impl OpenAiProvider {
    /// A whole completion with the body it came in, when that body is a chat
    /// completion (not with `api = "responses"`, whose answers are translated).
    pub async fn complete_wire(&self, mut req: ChatRequest) -> Result<Completed, ProviderError> {
        if self.api == OpenAiApi::Responses {
            return Ok(Completed {
                resp: self.complete_responses(&req).await?,
                wire: None,
            });
        }
        req.stream = false;
        req.stream_options = None;
        let resp = self.send(&req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ProviderError::StreamCut(e.to_string()))?;
        match serde_json::from_slice::<ChatResponse>(&bytes) {
            Ok(resp) => Ok(Completed {
                resp,
                wire: Some(bytes),
            }),
            Err(e) => Err(ProviderError::InvalidResponse(format!(
                "not a chat completion ({e}): {}",
                sse::truncate(&String::from_utf8_lossy(&bytes), 200)
            ))),
        }
    }
}

#[async_trait]
impl ChatProvider for OpenAiProvider {
    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.complete_wire(req).await.map(|c| c.resp)
    }

    async fn stream(&self, mut req: ChatRequest) -> Result<ChunkStream, ProviderError> {
        if self.api == OpenAiApi::Responses {
            return self.stream_responses(&req).await;
        }
        req.stream = true;
        let mut opts = req.stream_options.take().unwrap_or_default();
        opts.include_usage = Some(true);
        req.stream_options = Some(StreamOptions { ..opts });
        let resp = self.send(&req).await?;
        let resp = expect_event_stream(resp).await?;
        let events = Box::pin(sse::events(resp));
        // State: the event source, or None once a terminal item was yielded.
        let stream = futures::stream::unfold(Some(events), |state| async move {
            let mut events = state?;
            loop {
                let Some(ev) = events.next().await else {
                    let cut = ProviderError::StreamCut("stream ended before data: [DONE]".into());
                    return Some((Err(cut), None));
                };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => return Some((Err(e), None)),
                };
                let data = ev.data.trim();
                if data == "[DONE]" {
                    return None;
                }
                if data.is_empty() {
                    continue;
                }
                return match parse_chunk(data) {
                    Ok(chunk) => Some((Ok(chunk), Some(events))),
                    Err(e) => Some((Err(e), None)),
                };
            }
        });
        Ok(Box::pin(stream))
    }

    async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        let resp = self
            .post(self.url_of(Op::Embeddings, &req.model)?, &req)
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ProviderError::StreamCut(e.to_string()))?;
        serde_json::from_slice::<EmbeddingResponse>(&bytes).map_err(|e| {
            ProviderError::InvalidResponse(format!(
                "not an embeddings response ({e}): {}",
                sse::truncate(&String::from_utf8_lossy(&bytes), 200)
            ))
        })
    }
}

/// One `data:` payload: a chunk, or an in-stream error object. Public so the fuzz
/// targets (`fuzz/`) read a stream the way [`OpenAiProvider`] does.
pub fn parse_chunk(data: &str) -> Result<ChatChunk, ProviderError> {
    match serde_json::from_str::<ChatChunk>(data) {
        Ok(chunk) => Ok(chunk),
        Err(e) => match serde_json::from_str::<Value>(data)
            .ok()
            .as_ref()
            .and_then(openai_error)
        {
            Some((message, code)) => Err(ProviderError::Status {
                status: 500,
                message,
                code,
                body: None,
                retry_after: None,
            }),
            None => Err(ProviderError::InvalidResponse(format!(
                "stream chunk is not a chat.completion.chunk ({e}): {}",
                sse::truncate(data, 200)
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_urls_name_the_deployment_and_the_api_version() {
        let p = OpenAiProvider::azure(
            HttpClient::with_proxies(None).unwrap(),
            "https://res.openai.azure.com/",
            "2024-10-21",
            Auth::ApiKey("k".into()),
        );
        let u = p.url("gpt-4o mini/eu").unwrap();
        assert_eq!(
            u.to_string(),
            "https://res.openai.azure.com/openai/deployments/gpt-4o%20mini%2Feu/chat/completions?api-version=2024-10-21"
        );
        // Kept: the second call is the same URL.
        assert_eq!(p.url("gpt-4o mini/eu").unwrap(), u);
        let openai = OpenAiProvider::new(
            HttpClient::with_proxies(None).unwrap(),
            "http://h:1/v1/",
            None,
        );
        assert_eq!(
            openai.url("any").unwrap().to_string(),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            openai.url_of(Op::Embeddings, "any").unwrap().to_string(),
            "http://h:1/v1/embeddings"
        );
        assert_eq!(
            p.url_of(Op::Embeddings, "emb").unwrap().to_string(),
            "https://res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
        );
    }

    #[test]
    fn retry_after_ms_is_milliseconds() {
        use crate::error::parse_retry_after_ms;
        assert_eq!(
            parse_retry_after_ms(Some("150")),
            Some(std::time::Duration::from_millis(150))
        );
        assert_eq!(
            parse_retry_after_ms(Some(" 1500.5 ")),
            Some(std::time::Duration::from_micros(1_500_500))
        );
        assert_eq!(parse_retry_after_ms(Some("-1")), None);
        assert_eq!(parse_retry_after_ms(Some("soon")), None);
        assert_eq!(parse_retry_after_ms(None), None);
    }
}
