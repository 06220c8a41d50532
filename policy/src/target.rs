//! Target declarations: the AI systems to audit, one or a list per YAML file.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

/// One AI system to audit.
///
/// ```yaml
/// name: support-bot
/// kind: openai
/// endpoint: http://127.0.0.1:8080    # the server's base URL; /v1/chat/completions is added
/// model: llama-3.1-8b-instruct
/// api_key: { env: SUPPORT_BOT_KEY }  # or { file: /etc/aura/keys/support-bot }
/// system_prompt_file: prompts/support-bot.txt
/// risk_tier: limited
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub name: Spanned<String>,
    pub kind: TargetKind,
    #[serde(default)]
    pub description: String,
    /// Base URL of the endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Where the API key is; never the key itself.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// The production system prompt, inline or in a file (relative to this file).
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub system_prompt_file: Option<PathBuf>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub risk_tier: RiskTier,
    #[serde(default)]
    pub owner: Option<String>,
    /// Attempts in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Largest answer, in tokens, asked of the model.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The file this target was read from; set by the loader.
    #[serde(skip)]
    pub source: PathBuf,
}

fn default_concurrency() -> u32 {
    4
}

impl TargetSpec {
    pub fn name(&self) -> &str {
        &self.name.value
    }

    /// Relative paths in a target file are relative to that file's folder.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        match self.source.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Any OpenAI-compatible `/v1/chat/completions` server: OpenAI, vLLM, llama.cpp,
    /// Ollama, LM Studio.
    Openai,
    /// The built-in simulated assistant with known weaknesses, for trying AURA out.
    Demo,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Openai => "openai",
            TargetKind::Demo => "demo",
        }
    }
}

/// EU AI Act style risk tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    #[default]
    Minimal,
    Limited,
    High,
}

/// A reference to a secret: an environment variable or a file. Exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Time to establish a connection, e.g. `5s`.
    #[serde(default = "default_connect", deserialize_with = "duration")]
    pub connect: Duration,
    /// Time for the whole request, including reading the answer, e.g. `60s`.
    #[serde(default = "default_request", deserialize_with = "duration")]
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: default_connect(),
            request: default_request(),
        }
    }
}

fn default_connect() -> Duration {
    Duration::from_secs(5)
}

fn default_request() -> Duration {
    Duration::from_secs(60)
}

/// Durations as people write them: `500ms`, `5s`, `2m`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration ({e}); write e.g. `500ms`, `5s` or `2m`"
        ))
    })
}
