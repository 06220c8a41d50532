//! Any OpenAI-compatible chat completions server: OpenAI, vLLM, llama.cpp server,
//! Ollama, LM Studio.

use std::time::{Duration, Instant};

use aura_policy::TargetSpec;
use aura_policy::target::SecretRef;
use serde::{Deserialize, Serialize};

use super::{BoxFuture, ChatReply, ChatRequest, Target, TargetDefaults, TargetError};

pub struct OpenAiTarget {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    max_tokens: Option<u32>,
    request_timeout: Duration,
    max_response_bytes: u64,
}

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
            .map(|s| read_secret(s, spec))
            .transpose()?;
        crate::tls::install_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(spec.timeouts.connect)
            .timeout(spec.timeouts.request)
            .no_proxy()
            .user_agent(concat!("aurad/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            client,
            url: chat_url(endpoint),
            model,
            api_key,
            max_tokens: spec.max_tokens,
            request_timeout: spec.timeouts.request,
            max_response_bytes: defaults.max_response_bytes,
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
        let resp = builder.send().await.map_err(|e| self.classify(e))?;
        let status = resp.status();
        let bytes = read_bounded(resp, self.max_response_bytes, |e| self.classify(e)).await?;
        if !status.is_success() {
            return Err(TargetError::Status {
                status: status.as_u16(),
                body: excerpt(&bytes),
            });
        }
        let parsed: ChatResponse =
            serde_json::from_slice(&bytes).map_err(|e| TargetError::Malformed {
                api: "OpenAI chat completions",
                message: format!("{e} (body starts: {})", excerpt(&bytes)),
            })?;
        let text = parsed
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| TargetError::Malformed {
                api: "OpenAI chat completions",
                message: "no `choices` in the response".into(),
            })?
            .message
            .content
            .unwrap_or_default();
        Ok(ChatReply {
            text,
            latency: started.elapsed(),
        })
    }

    fn classify(&self, e: reqwest::Error) -> TargetError {
        if e.is_timeout() {
            TargetError::Timeout(self.request_timeout)
        } else if e.is_connect() {
            TargetError::Connect {
                endpoint: self.url.clone(),
                message: source_chain(&e),
            }
        } else {
            TargetError::Transport(source_chain(&e))
        }
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
}

#[derive(Deserialize)]
struct Choice {
    message: AnswerMessage,
}

#[derive(Deserialize)]
struct AnswerMessage {
    content: Option<String>,
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

/// Reads a body, refusing to hold more than `limit` bytes.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    limit: u64,
    classify: impl Fn(reqwest::Error) -> TargetError,
) -> Result<Vec<u8>, TargetError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(TargetError::TooLarge { limit });
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(&classify)? {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(TargetError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The first 200 characters of a body, for error messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Reads a secret by reference. Never logged.
fn read_secret(secret: &SecretRef, spec: &TargetSpec) -> Result<String, String> {
    match secret {
        SecretRef::Env(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            _ => Err(format!(
                "its API key variable {var} is not set in the daemon's environment"
            )),
        },
        SecretRef::File(path) => {
            let path = spec.resolve(path);
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("cannot read its API key file {}: {e}", path.display()))
        }
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
