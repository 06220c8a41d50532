//! The daemon's own LLM (`[llm]`): one OpenAI-compatible endpoint serving the agents that
//! need a model, the Audit agent's judge detectors and the Testing agent's probe
//! generation. Each agent calls it through its own [`Provider`] (the same traffic layer
//! as audited targets), so each has its own RPM, TPM and concurrency: a large run's
//! judging cannot starve probe generation, and the reverse. They share one circuit
//! breaker, as the endpoint is up or down for both; retries, backoff and the breaker
//! follow `[audit]`.

use std::sync::Arc;

use crate::config::{AuditConfig, LlmConfig, LlmLimits};
use crate::evidence::Digest;
use crate::provider::{Provider, ResponseCache, TrafficConfig};
use crate::targets::{ChatMessage, ChatRequest, ChatRole, OpenAiTarget, Target, TargetError};

pub struct DaemonLlm {
    /// Judge detectors.
    pub audit: Arc<Provider>,
    /// Probe generation.
    pub testing: Arc<Provider>,
}

impl DaemonLlm {
    /// Builds the endpoint and each agent's traffic control. The cache (when on) serves
    /// probe generation only: the same control, seed and model then write the same
    /// prompts, so a run is reproducible. Judging is never cached.
    pub fn from_config(
        cfg: &LlmConfig,
        audit: &AuditConfig,
        cache: Option<ResponseCache>,
    ) -> Result<Self, String> {
        let api_key = match &cfg.api_key {
            None => None,
            Some(s) => Some(match (&s.env, &s.file) {
                (Some(var), None) => std::env::var(var)
                    .map_err(|_| format!("[llm]: the API key variable {var} is not set"))?,
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map(|k| k.trim().to_string())
                    .map_err(|e| format!("[llm]: cannot read {}: {e}", f.display()))?,
                _ => return Err("[llm] api_key needs exactly one of `env` or `file`".into()),
            }),
        };
        let target: Arc<dyn Target> = Arc::new(OpenAiTarget::direct(
            &cfg.endpoint,
            &cfg.model,
            api_key,
            cfg.timeout,
            audit.max_response_bytes,
        )?);
        let provider = |agent: &str, limits: &LlmLimits, max_tokens: u32, cache| {
            let fingerprint =
                Digest::of(format!("llm|{agent}|{}|{}", cfg.endpoint, cfg.model).as_bytes());
            Provider::new(
                target.clone(),
                traffic(cfg, audit, limits, max_tokens),
                fingerprint,
                cache,
            )
        };
        let judging = provider("audit", &cfg.agents.audit, 300, None);
        let writing = provider("testing", &cfg.agents.testing, 2000, cache);
        Ok(Self {
            testing: Arc::new(writing.sharing_breaker_of(&judging)),
            audit: Arc::new(judging),
        })
    }
}

fn traffic(
    cfg: &LlmConfig,
    audit: &AuditConfig,
    limits: &LlmLimits,
    max_tokens: u32,
) -> TrafficConfig {
    TrafficConfig {
        concurrency: limits.concurrency.max(1),
        rpm: limits.rpm,
        tpm: limits.tpm,
        retries: cfg.retries,
        breaker_threshold: audit.breaker_threshold,
        breaker_cooldown: audit.breaker_cooldown,
        backoff_initial: audit.backoff_initial,
        backoff_max: audit.backoff_max,
        max_tokens,
    }
}

/// Sends `req` and parses the answer with `parse`; an answer that does not parse gets one
/// retry, with the answer and `reminder` (what the JSON must look like) added to the
/// conversation. Only the first request may come from the cache: a retry exists because
/// the cached answer was bad.
pub async fn ask_json<T>(
    provider: &Provider,
    mut req: ChatRequest,
    use_cache: bool,
    reminder: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, AskError> {
    let mut last_error = String::new();
    for attempt in 0..2 {
        let digest = provider.request_digest(&req, 0);
        let called = provider
            .call(&req, &digest, use_cache && attempt == 0)
            .await
            .map_err(AskError::Endpoint)?;
        match parse(&called.reply.text) {
            Ok(v) => return Ok(v),
            Err(e) => {
                last_error = e;
                req.messages.push(ChatMessage {
                    role: ChatRole::Assistant,
                    content: called.reply.text,
                });
                req.messages.push(ChatMessage::user(format!(
                    "That was not the required JSON. {reminder}"
                )));
            }
        }
    }
    Err(AskError::Unparseable(last_error))
}

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("the endpoint failed: {0}")]
    Endpoint(TargetError),
    #[error("the answer was not the required JSON, twice: {0}")]
    Unparseable(String),
}
