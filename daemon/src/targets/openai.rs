//! Any OpenAI-compatible chat completions server: OpenAI, vLLM, llama.cpp server,
//! Ollama, LM Studio.

use std::time::{Duration, Instant};

use aura_policy::TargetSpec;
use serde::{Deserialize, Serialize};

use super::http_client::{self, excerpt};
use super::{BoxFuture, ChatReply, ChatRequest, Target, TargetDefaults, TargetError, ToolCall};

pub struct OpenAiTarget {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    max_tokens: Option<u32>,
    timeout: Duration,
    max_response_bytes: u64,
}

const API: &str = "OpenAI chat completions";

impl OpenAiTarget {
    pub fn new(spec: &TargetSpec, defaults: &TargetDefaults) -> Result<Self, String> {
        let endpoint = spec
            .endpoint
            .as_deref()
            .ok_or("an openai target needs an endpoint")?;
        let model = spec.model.clone().ok_or("an openai target needs a model")?;
        let api_key = spec
            .api_key
            .as_ref()
            .map(|s| http_client::read_secret(s, spec))
            .transpose()?;
        Ok(Self {
            client: http_client::build(spec)?,
            url: chat_url(endpoint),
            model,
            api_key,
            max_tokens: spec.max_tokens,
            timeout: spec.timeouts.request,
            max_response_bytes: defaults.max_response_bytes,
        })
    }

    /// A client for an endpoint that is not a configured target (the judge).
    pub fn direct(
        endpoint: &str,
        model: &str,
        api_key: Option<String>,
        timeout: Duration,
        max_response_bytes: u64,
    ) -> Result<Self, String> {
        crate::tls::install_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            client,
            url: chat_url(endpoint),
            model: model.to_string(),
            api_key,
            max_tokens: Some(300),
            timeout,
            max_response_bytes,
        })
    }

    async fn call(&self, req: &ChatRequest) -> Result<ChatReply, TargetError> {
        let body = ChatBody {
            model: &self.model,
            messages: &req.messages,
            temperature: 0.0,
            max_tokens: self.max_tokens,
            stream: false,
        };
        let started = Instant::now();
        let mut builder = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let bytes =
            http_client::send(builder, &self.url, self.timeout, self.max_response_bytes).await?;
        let parsed: ChatResponse =
            serde_json::from_slice(&bytes).map_err(|e| TargetError::Malformed {
                api: API,
                message: format!("{e} (body starts: {})", excerpt(&bytes)),
            })?;
        let choice = parsed
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| TargetError::Malformed {
                api: API,
                message: "no `choices` in the response".into(),
            })?;
        Ok(ChatReply {
            text: choice.message.content.unwrap_or_default(),
            latency: started.elapsed(),
            usage_tokens: parsed.usage.and_then(|u| u.total_tokens),
            tool_calls: choice
                .message
                .tool_calls
                .into_iter()
                .map(|t| ToolCall {
                    name: t.function.name,
                    arguments: t.function.arguments,
                })
                .collect(),
        })
    }
}

impl Target for OpenAiTarget {
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatReply, TargetError>> {
        Box::pin(self.call(req))
    }
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [super::ChatMessage],
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    stream: bool,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    total_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct Choice {
    message: AnswerMessage,
}

#[derive(Deserialize)]
struct AnswerMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// `http://host:8080` -> `http://host:8080/v1/chat/completions`; a URL already ending in
/// `/v1` or `/chat/completions` is completed, not doubled.
pub fn chat_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/chat/completions") {
        base.to_string()
    } else if base.ends_with("/v1") {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_url_completes_common_endpoint_forms() {
        let want = "http://h:8080/v1/chat/completions";
        assert_eq!(chat_url("http://h:8080"), want);
        assert_eq!(chat_url("http://h:8080/"), want);
        assert_eq!(chat_url("http://h:8080/v1"), want);
        assert_eq!(chat_url(want), want);
    }
}
