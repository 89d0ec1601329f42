//! The HTTP side of calling Gemini: `POST {base_url}/models/{model}:generateContent`, or
//! `:streamGenerateContent?alt=sse` for a stream, or `:batchEmbedContents` for embeddings, with the key in the `x-goog-api-key`
//! header (never in the URL, so it cannot reach a log). Errors keep Gemini's own message
//! and `status` (`RESOURCE_EXHAUSTED` with 429, …).

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue};
use http::Uri;
use keel_core::chat::{ChatChunk, ChatRequest, ChatResponse};
use keel_core::embeddings::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage,
};
use serde_json::{json, Value};

use super::request::chat_request_to_gemini;
use super::response::{gemini_error, gemini_to_chat, GeminiChunks};
use crate::client::{json_headers, parse_uri, HttpClient, Response};
use crate::json_stream::{json_body, json_event_stream, EventTranslator};
use crate::openai::expect_event_stream;
use crate::sse;
use crate::{ChatProvider, ChunkStream, ProviderError};

/// Inputs per `batchEmbedContents` call (the API's limit).
const MAX_BATCH: usize = 100;

/// A Gemini API upstream (`kind = "gemini"`).
pub struct GeminiProvider {
    client: HttpClient,
    base_url: String,
    api_key: Option<String>,
    /// `content-type` and `x-goog-api-key`, built once.
    headers: Result<Vec<(HeaderName, HeaderValue)>, String>,
}

impl std::fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl GeminiProvider {
    /// `base_url` is the API root with its version, e.g.
    /// `https://generativelanguage.googleapis.com/v1beta`.
    pub fn new(client: HttpClient, base_url: &str, api_key: Option<String>) -> Self {
        let headers = json_headers(
            api_key
                .as_deref()
                .map(|k| (HeaderName::from_static("x-goog-api-key"), k)),
        );
        GeminiProvider {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            headers,
        }
    }

    /// The URL of `method` for `model` (`gemini-2.0-flash`, or a full `models/…` /
    /// `tunedModels/…` name).
    fn url(&self, model: &str, method: &str) -> Result<Uri, ProviderError> {
        let name = model_name(model);
        let query = if method == "streamGenerateContent" {
            "?alt=sse"
        } else {
            ""
        };
        parse_uri(&format!("{}/{name}:{method}{query}", self.base_url))
            .map_err(ProviderError::Unsupported)
    }

    async fn post(&self, url: Uri, body: &Value) -> Result<Response, ProviderError> {
        let headers = self
            .headers
            .as_ref()
            .map_err(|e| ProviderError::Unsupported(e.clone()))?;
        let json = serde_json::to_vec(body)
            .map_err(|e| ProviderError::Connect(format!("cannot encode the request: {e}")))?;
        let resp = self
            .client
            .post(url, headers, json)
            .await
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(sse::status_error(resp, gemini_error).await);
        }
        Ok(resp)
    }
}

#[async_trait]
impl ChatProvider for GeminiProvider {
    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = chat_request_to_gemini(&req)?;
        let resp = self
            .post(self.url(&req.model, "generateContent")?, &body)
            .await?;
        gemini_to_chat(&json_body(resp, "a Gemini answer").await?)
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChunkStream, ProviderError> {
        let body = chat_request_to_gemini(&req)?;
        let resp = self
            .post(self.url(&req.model, "streamGenerateContent")?, &body)
            .await?;
        let resp = expect_event_stream(resp).await?;
        Ok(json_event_stream(resp, GeminiChunks::default()))
    }

    /// `batchEmbedContents`: one request per input text, `outputDimensionality` from
    /// `dimensions`. Gemini embeds text only, and reports no token counts: the gateway
    /// prices such a call by its tokenizer estimate (`usage_estimated`).
    async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        let texts: Vec<&str> = match &req.input {
            EmbeddingInput::Text(t) => vec![t.as_str()],
            EmbeddingInput::Texts(v) => v.iter().map(String::as_str).collect(),
            EmbeddingInput::Tokens(_) | EmbeddingInput::TokenLists(_) => {
                return Err(ProviderError::Unsupported(
                    "Gemini embeds text only: send `input` as strings, not token ids".into(),
                ))
            }
        };
        let name = model_name(&req.model);
        let url = self.url(&req.model, "batchEmbedContents")?;
        let mut data = Vec::with_capacity(texts.len());
        let mut tokens = 0u64;
        // The API takes at most MAX_BATCH requests per call; OpenAI clients send up to 2,048.
        for chunk in texts.chunks(MAX_BATCH) {
            let requests: Vec<Value> = chunk
                .iter()
                .map(|t| {
                    let mut r = json!({"model": name, "content": {"parts": [{"text": t}]}});
                    if let Some(d) = req.dimensions {
                        r["outputDimensionality"] = json!(d);
                    }
                    r
                })
                .collect();
            let resp = self
                .post(url.clone(), &json!({"requests": requests}))
                .await?;
            let v = json_body(resp, "a Gemini embeddings answer").await?;
            let vectors = v
                .get("embeddings")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    ProviderError::InvalidResponse(format!(
                        "a Gemini embeddings answer without `embeddings`: {}",
                        sse::truncate(&v.to_string(), 200)
                    ))
                })?;
            if vectors.len() != chunk.len() {
                return Err(ProviderError::InvalidResponse(format!(
                    "Gemini returned {} vectors for {} inputs",
                    vectors.len(),
                    chunk.len()
                )));
            }
            for e in vectors {
                let values: Vec<f32> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_f64)
                    .map(|x| x as f32)
                    .collect();
                data.push(Embedding::new(data.len(), values, req.wants_base64()));
            }
            tokens += v
                .pointer("/usageMetadata/promptTokenCount")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
        Ok(EmbeddingResponse {
            object: "list".into(),
            data,
            model: req.model.clone(),
            usage: EmbeddingUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        })
    }

    fn reports_embedding_usage(&self) -> bool {
        false
    }
}

/// A model's resource name: `models/{model}` unless it already is a full name.
fn model_name(model: &str) -> String {
    if model.contains('/') {
        model.to_string()
    } else {
        format!("models/{model}")
    }
}

/// Gemini sends no terminal event: read to the end of the body; it is complete when a
/// chunk carried a `finishReason`, and then its usage closes the stream.
impl EventTranslator for GeminiChunks {
    fn push(&mut self, event: &Value) -> Result<Vec<ChatChunk>, ProviderError> {
        if let Some((message, status)) = gemini_error(event) {
            return Err(ProviderError::Status {
                status: 500,
                message,
                code: status,
                body: None,
                retry_after: None,
            });
        }
        GeminiChunks::push(self, event)
    }

    fn done(&self) -> bool {
        false
    }

    fn end(&mut self) -> Result<Option<ChatChunk>, ProviderError> {
        if self.finished() {
            Ok(self.usage_chunk())
        } else {
            Err(ProviderError::StreamCut(
                "stream ended before a finishReason".into(),
            ))
        }
    }
}
