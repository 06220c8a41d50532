//! Anthropic's Messages API.

use std::time::{Duration, Instant};

use aura_policy::TargetSpec;
use serde::{Deserialize, Serialize};

use super::http_client::{self, excerpt};
use super::{
    BoxFuture, ChatReply, ChatRequest, ChatRole, Target, TargetDefaults, TargetError, ToolCall,
};

pub struct AnthropicTarget {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    max_tokens: u32,
    timeout: Duration,
    max_response_bytes: u64,
}

const API: &str = "Anthropic Messages";
const VERSION: &str = "2023-06-01";

impl AnthropicTarget {
    pub fn new(spec: &TargetSpec, defaults: &TargetDefaults) -> Result<Self, String> {
        let endpoint = spec
            .endpoint
            .as_deref()
            .ok_or("an anthropic target needs an endpoint")?;
        let base = endpoint.trim_end_matches('/');
        let url = if base.ends_with("/messages") {
            base.to_string()
        } else if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        };
        Ok(Self {
            client: http_client::build(spec)?,
            url,
            model: spec
                .model
                .clone()
                .ok_or("an anthropic target needs a model")?,
            api_key: spec
                .api_key
                .as_ref()
                .map(|s| http_client::read_secret(s, spec))
                .transpose()?,
            max_tokens: spec.max_tokens.unwrap_or(1024),
            timeout: spec.timeouts.request,
            max_response_bytes: defaults.max_response_bytes,
        })
    }

    async fn call(&self, req: &ChatRequest) -> Result<ChatReply, TargetError> {
        let system: Vec<&str> = req
            .messages
            .iter()
            .filter(|m| m.role == ChatRole::System)
            .map(|m| m.content.as_str())
            .collect();
        let messages: Vec<Msg> = req
            .messages
            .iter()
            .filter(|m| m.role != ChatRole::System)
            .map(|m| Msg {
                role: if m.role == ChatRole::User {
                    "user"
                } else {
                    "assistant"
                },
                content: &m.content,
            })
            .collect();
        let body = Body {
            model: &self.model,
            max_tokens: self.max_tokens,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages,
            temperature: 0.0,
        };
        let started = Instant::now();
        let mut b = self
            .client
            .post(&self.url)
            .header("anthropic-version", VERSION)
            .json(&body);
        if let Some(key) = &self.api_key {
            b = b.header("x-api-key", key);
        }
        let bytes = http_client::send(b, &self.url, self.timeout, self.max_response_bytes).await?;
        let parsed: Response =
            serde_json::from_slice(&bytes).map_err(|e| TargetError::Malformed {
                api: API,
                message: format!("{e} (body starts: {})", excerpt(&bytes)),
            })?;
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in parsed.content {
            match block {
                Block::Text { text: t } => text.push_str(&t),
                Block::ToolUse { name, input } => tool_calls.push(ToolCall {
                    name,
                    arguments: input.to_string(),
                }),
                Block::Other => {}
            }
        }
        Ok(ChatReply {
            text,
            latency: started.elapsed(),
            usage_tokens: parsed.usage.map(|u| u.input_tokens + u.output_tokens),
            tool_calls,
        })
    }
}

impl Target for AnthropicTarget {
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatReply, TargetError>> {
        Box::pin(self.call(req))
    }
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<Msg<'a>>,
    temperature: f32,
}

#[derive(Serialize)]
struct Msg<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct Response {
    content: Vec<Block>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    input_tokens: u32,
    output_tokens: u32,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    #[serde(other)]
    Other,
}
