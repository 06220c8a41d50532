//! Target declarations: the AI systems to audit, one or a list per YAML file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};
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
    /// Base URL of the endpoint (`openai`, `anthropic`, `http`).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// The deployed model's version or hash; documents must match it.
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub license: Option<String>,
    /// Where the provider processes data, e.g. `eu-west-1` or `on-premises`.
    #[serde(default)]
    pub data_location: Option<String>,
    /// Third-party components (guardrails, retrievers, plugins).
    #[serde(default)]
    pub components: Vec<String>,
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
    /// Requests per minute; none means unlimited.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens per minute (estimated before, counted from reported usage after).
    #[serde(default)]
    pub tpm: Option<u32>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Retries after a failed request (429, 503, connection errors).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Largest answer, in tokens, asked of the model.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// A proxy URL; without it no proxy is used, whatever the environment says.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Extra CA certificates (PEM) for an internal TLS endpoint.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The file the demo target (and remediation) reads its guardrails from.
    #[serde(default)]
    pub guardrail_file: Option<PathBuf>,
    /// `http`: the JSON request body, with `{{prompt}}` (and `{{system}}`) placeholders.
    #[serde(default)]
    pub request_template: Option<serde_json::Value>,
    /// `http`: a JSON pointer to the answer in the response, e.g. `/output/text`.
    #[serde(default)]
    pub response_pointer: Option<String>,
    /// `command`: the program and its arguments (no shell); the prompt goes to stdin.
    #[serde(default)]
    pub command: Vec<String>,
    /// `command`: the daemon's environment variables the program may see, besides
    /// `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ` and `TMPDIR`. Nothing else is passed, so
    /// the daemon's own keys never reach the program under audit.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// `transcripts`: a JSONL file or a folder of them; `documents`: a folder.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `transcripts`: where each record keeps its fields.
    #[serde(default)]
    pub fields: TranscriptFields,
    /// The file this target was read from; set by the loader.
    #[serde(skip)]
    pub source: PathBuf,
}

fn default_concurrency() -> u32 {
    4
}

fn default_retries() -> u32 {
    3
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

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Any OpenAI-compatible `/v1/chat/completions` server: OpenAI, vLLM, llama.cpp,
    /// Ollama, LM Studio.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Any JSON-over-HTTP endpoint, described by a request template and an answer pointer.
    Http,
    /// A local program: the prompt on stdin, the answer on stdout.
    Command,
    /// JSONL logs of production conversations.
    Transcripts,
    /// A folder of model cards, technical files, risk registers.
    Documents,
    /// The built-in simulated assistant with known weaknesses, for trying AURA out.
    Demo,
}

impl TargetKind {
    pub const ALL: [TargetKind; 7] = [
        TargetKind::Openai,
        TargetKind::Anthropic,
        TargetKind::Http,
        TargetKind::Command,
        TargetKind::Transcripts,
        TargetKind::Documents,
        TargetKind::Demo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Openai => "openai",
            TargetKind::Anthropic => "anthropic",
            TargetKind::Http => "http",
            TargetKind::Command => "command",
            TargetKind::Transcripts => "transcripts",
            TargetKind::Documents => "documents",
            TargetKind::Demo => "demo",
        }
    }

    /// Whether prompts can be sent to it.
    pub fn answers_prompts(self) -> bool {
        matches!(
            self,
            TargetKind::Openai
                | TargetKind::Anthropic
                | TargetKind::Http
                | TargetKind::Command
                | TargetKind::Demo
        )
    }
}

/// EU AI Act style risk tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    #[default]
    Minimal,
    Limited,
    High,
}

/// A reference to a secret: an environment variable or a file. Never the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Inline(#[allow(dead_code)] String),
            Ref {
                #[serde(default)]
                env: Option<String>,
                #[serde(default)]
                file: Option<PathBuf>,
            },
        }
        match Raw::deserialize(d)? {
            Raw::Inline(_) => Err(serde::de::Error::custom(
                "a secret must not be written into the file; reference it with \
                 `{ env: VARIABLE }` or `{ file: /path/to/secret }`",
            )),
            Raw::Ref {
                env: Some(v),
                file: None,
            } => Ok(SecretRef::Env(v)),
            Raw::Ref {
                env: None,
                file: Some(f),
            } => Ok(SecretRef::File(f)),
            Raw::Ref { .. } => Err(serde::de::Error::custom(
                "a secret reference needs exactly one of `env` or `file`",
            )),
        }
    }
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

/// Where a transcript record keeps its parts, as JSON pointers or top-level keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptFields {
    #[serde(default = "f_input")]
    pub input: String,
    #[serde(default = "f_output")]
    pub output: String,
    #[serde(default = "f_session")]
    pub session: String,
    #[serde(default = "f_time")]
    pub timestamp: String,
    /// A field numbering the records (1, 2, 3...), if the log has one; with it, missing,
    /// repeated and reordered records are found (`runtime.integrity`).
    #[serde(default)]
    pub sequence: Option<String>,
    /// Further keys passed through as labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Default for TranscriptFields {
    fn default() -> Self {
        Self {
            input: f_input(),
            output: f_output(),
            session: f_session(),
            timestamp: f_time(),
            sequence: None,
            labels: BTreeMap::new(),
        }
    }
}

fn f_input() -> String {
    "input".into()
}
fn f_output() -> String {
    "output".into()
}
fn f_session() -> String {
    "session_id".into()
}
fn f_time() -> String {
    "timestamp".into()
}

/// Durations as people write them: `500ms`, `5s`, `2m`, `180d`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

pub fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write e.g. `500ms`, `5s`, `2m` or `180d`")
    })
}
