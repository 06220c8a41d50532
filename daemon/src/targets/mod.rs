//! The systems under audit, behind one trait. A target turns a chat request into a reply
//! or a [`TargetError`]; an error becomes an `error` verdict, never a `fail`.

mod anthropic;
mod command;
mod demo;
mod http;
pub mod http_client;
mod openai;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aura_policy::{TargetKind, TargetSpec};
use aura_proto::view::TargetInfo;
use serde::{Deserialize, Serialize};

pub use anthropic::AnthropicTarget;
pub use command::CommandTarget;
pub use demo::{DemoTarget, Guardrails};
pub use http::HttpTarget;
pub use openai::OpenAiTarget;

use crate::evidence::Digest;
use crate::provider::{Provider, ResponseCache, TrafficConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            content: content.into(),
        }
    }
}

/// One attempt's request, already rendered: no placeholders left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
}

impl ChatRequest {
    /// The last user message: what the detectors judge the answer against.
    pub fn last_user(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == ChatRole::User)
            .map(|m| m.content.as_str())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    pub text: String,
    pub latency: Duration,
    /// Tokens the endpoint says it used (prompt and answer), when it says.
    pub usage_tokens: Option<u32>,
    /// Tool calls the model asked for, when the API reports them.
    pub tool_calls: Vec<ToolCall>,
}

impl ChatReply {
    pub fn text(text: impl Into<String>, latency: Duration) -> Self {
        Self {
            text: text.into(),
            latency,
            usage_tokens: None,
            tool_calls: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as the model wrote them (usually JSON).
    pub arguments: String,
}

/// Why a target gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    #[error("cannot connect to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status} from the endpoint: {body}")]
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("the response is not what an {api} endpoint returns: {message}")]
    Malformed { api: &'static str, message: String },
    #[error("the response exceeds the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Config(String),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("the program failed: {0}")]
    Program(String),
    #[error("circuit open after repeated failures; next try in {}s", retry_in.as_secs())]
    CircuitOpen { retry_in: Duration },
}

impl TargetError {
    /// Worth trying again: overload, gateway trouble, a dropped connection, a timeout.
    pub fn retryable(&self) -> bool {
        match self {
            // 529: Anthropic's "overloaded".
            TargetError::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504 | 529),
            TargetError::Connect { .. } | TargetError::Timeout(_) | TargetError::Transport(_) => {
                true
            }
            _ => false,
        }
    }

    /// What the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TargetError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Counts towards opening the circuit breaker: the endpoint is unhealthy.
    pub fn counts_against_endpoint(&self) -> bool {
        match self {
            TargetError::Status { status, .. } => *status == 429 || *status >= 500,
            TargetError::Connect { .. }
            | TargetError::Timeout(_)
            | TargetError::Transport(_)
            | TargetError::Malformed { .. }
            | TargetError::Program(_) => true,
            _ => false,
        }
    }
}

/// The longest `Retry-After` honoured; a server asking for more gets the backoff's
/// bounded retries instead of stalling an audit for hours.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(120);

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3), measured from `now`
/// and capped. A date in the past means "now"; anything unreadable is ignored, so the
/// backoff applies.
pub fn parse_retry_after(value: Option<&str>, now: std::time::SystemTime) -> Option<Duration> {
    let value = value?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Target: Send + Sync {
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatReply, TargetError>>;
}

/// What every target needs beyond its own spec.
#[derive(Clone)]
pub struct TargetDefaults {
    pub max_response_bytes: u64,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Shared by every target; `None` disables caching.
    pub cache: Option<ResponseCache>,
}

impl TargetDefaults {
    pub fn from_config(audit: &crate::config::AuditConfig, cache: Option<ResponseCache>) -> Self {
        Self {
            max_response_bytes: audit.max_response_bytes,
            breaker_threshold: audit.breaker_threshold,
            breaker_cooldown: audit.breaker_cooldown,
            backoff_initial: audit.backoff_initial,
            backoff_max: audit.backoff_max,
            cache,
        }
    }
}

/// A configured target, ready to call through its traffic control.
pub struct TargetEntry {
    pub spec: TargetSpec,
    /// The system prompt from the spec or its file, read at load.
    pub system_prompt: Option<String>,
    /// The provider, or why it could not be built (e.g. its API key variable is unset):
    /// an audit of this target is refused with that reason before any request.
    pub provider: Result<Arc<Provider>, String>,
}

impl TargetEntry {
    pub fn is_demo(&self) -> bool {
        self.spec.kind == TargetKind::Demo
    }

    pub fn info(&self) -> TargetInfo {
        TargetInfo {
            name: self.spec.name().to_string(),
            kind: self.spec.kind.name().to_string(),
            is_demo: self.is_demo(),
        }
    }
}

/// All configured targets by name.
#[derive(Default)]
pub struct TargetRegistry {
    targets: BTreeMap<String, Arc<TargetEntry>>,
}

#[derive(Serialize)]
struct Fingerprint<'a> {
    kind: &'a str,
    endpoint: &'a Option<String>,
    model: &'a Option<String>,
    model_version: &'a Option<String>,
    system_prompt: &'a Option<String>,
    guardrails: Option<String>,
    template: &'a Option<serde_json::Value>,
    command: &'a [String],
    /// Everything else that shapes the client or its traffic.
    traffic: String,
}

impl TargetRegistry {
    /// Builds providers for validated specs. A target that cannot be built (a missing
    /// secret, an unreadable prompt file) is kept with the reason, so the others work.
    /// A target whose configuration did not change keeps its provider from `previous`,
    /// with its limits and circuit breaker state.
    pub fn build(
        specs: Vec<TargetSpec>,
        defaults: &TargetDefaults,
        previous: Option<&TargetRegistry>,
    ) -> Self {
        let mut targets = BTreeMap::new();
        for spec in specs {
            let name = spec.name().to_string();
            let system_prompt = match (&spec.system_prompt, &spec.system_prompt_file) {
                (Some(p), _) => Ok(Some(p.clone())),
                (None, Some(f)) => {
                    let path = spec.resolve(f);
                    std::fs::read_to_string(&path)
                        .map(Some)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))
                }
                (None, None) => Ok(None),
            };
            let guardrail_file = spec.guardrail_file.as_ref().map(|g| spec.resolve(g));
            let fingerprint = Digest::of(
                &serde_json::to_vec(&Fingerprint {
                    kind: spec.kind.name(),
                    endpoint: &spec.endpoint,
                    model: &spec.model,
                    model_version: &spec.model_version,
                    system_prompt: system_prompt.as_ref().unwrap_or(&None),
                    guardrails: guardrail_file
                        .as_ref()
                        .and_then(|g| std::fs::read_to_string(g).ok()),
                    template: &spec.request_template,
                    command: &spec.command,
                    traffic: format!(
                        "{:?}",
                        (
                            &spec.timeouts,
                            &spec.proxy,
                            &spec.ca_file,
                            &spec.api_key,
                            &spec.pass_env,
                            (
                                spec.rpm,
                                spec.tpm,
                                spec.concurrency,
                                spec.retries,
                                spec.max_tokens
                            ),
                            &spec.response_pointer,
                        )
                    ),
                })
                .unwrap_or_default(),
            );
            let reused = previous
                .and_then(|p| p.targets.get(&name))
                .and_then(|e| e.provider.as_ref().ok())
                .filter(|p| p.fingerprint() == fingerprint)
                .cloned();
            let provider = match reused {
                Some(p) => Ok(p),
                None => system_prompt.clone().and_then(|_| {
                    build_target(&spec, guardrail_file, defaults).map(|t| {
                        Arc::new(Provider::new(
                            t,
                            traffic(&spec, defaults),
                            fingerprint,
                            defaults.cache.clone(),
                        ))
                    })
                }),
            };
            targets.insert(
                name.clone(),
                Arc::new(TargetEntry {
                    provider: provider.map_err(|e| format!("target `{name}`: {e}")),
                    system_prompt: system_prompt.unwrap_or(None),
                    spec,
                }),
            );
        }
        Self { targets }
    }

    pub fn get(&self, name: &str) -> Option<Arc<TargetEntry>> {
        self.targets.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(String::as_str)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Arc<TargetEntry>> {
        self.targets.values()
    }

    pub fn infos(&self) -> Vec<TargetInfo> {
        self.targets.values().map(|t| t.info()).collect()
    }

    pub fn specs(&self) -> impl Iterator<Item = &TargetSpec> {
        self.targets.values().map(|t| &t.spec)
    }

    /// Targets that cannot be used, with the reason.
    pub fn problems(&self) -> impl Iterator<Item = &str> {
        self.targets
            .values()
            .filter_map(|t| t.provider.as_ref().err().map(String::as_str))
    }
}

fn traffic(spec: &TargetSpec, d: &TargetDefaults) -> TrafficConfig {
    TrafficConfig {
        concurrency: spec.concurrency,
        rpm: spec.rpm,
        tpm: spec.tpm,
        retries: spec.retries,
        breaker_threshold: d.breaker_threshold,
        breaker_cooldown: d.breaker_cooldown,
        backoff_initial: d.backoff_initial,
        backoff_max: d.backoff_max,
        max_tokens: spec.max_tokens.unwrap_or(256),
    }
}

fn build_target(
    spec: &TargetSpec,
    guardrail_file: Option<std::path::PathBuf>,
    d: &TargetDefaults,
) -> Result<Arc<dyn Target>, String> {
    Ok(match spec.kind {
        TargetKind::Demo => Arc::new(DemoTarget::new(guardrail_file)),
        TargetKind::Openai => Arc::new(OpenAiTarget::new(spec, d)?),
        TargetKind::Anthropic => Arc::new(AnthropicTarget::new(spec, d)?),
        TargetKind::Http => Arc::new(HttpTarget::new(spec, d)?),
        TargetKind::Command => Arc::new(CommandTarget::new(spec, d)?),
        TargetKind::Transcripts | TargetKind::Documents => {
            return Err(format!(
                "{} targets are read, not prompted",
                spec.kind.name()
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        // Sun, 06 Nov 1994 08:49:37 GMT, the example of RFC 9110.
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after(Some(" 7 "), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(Some("Sun, 06 Nov 1994 08:49:52 GMT"), now),
            Some(Duration::from_secs(15))
        );
        // A date already past: retry at once; far ahead or huge: capped.
        assert_eq!(
            parse_retry_after(Some("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(Some("Mon, 07 Nov 1994 08:49:37 GMT"), now),
            Some(RETRY_AFTER_CAP)
        );
        assert_eq!(parse_retry_after(Some("86400"), now), Some(RETRY_AFTER_CAP));
        // Unreadable or absent: the backoff decides.
        assert_eq!(parse_retry_after(Some("soon"), now), None);
        assert_eq!(parse_retry_after(Some("-3"), now), None);
        assert_eq!(parse_retry_after(None, SystemTime::now()), None);
    }
}
