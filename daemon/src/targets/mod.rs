//! The systems under audit, behind one trait. A target turns a chat request into a reply
//! or a [`TargetError`]; an error becomes an `error` verdict, never a `fail`.

mod demo;
mod openai;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aura_policy::{TargetKind, TargetSpec};
use aura_proto::view::TargetInfo;
use serde::{Deserialize, Serialize};

pub use demo::DemoTarget;
pub use openai::OpenAiTarget;

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
}

/// Why a target gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    #[error("cannot connect to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status} from the endpoint: {body}")]
    Status { status: u16, body: String },
    #[error("the response is not what an {api} endpoint returns: {message}")]
    Malformed { api: &'static str, message: String },
    #[error("the response exceeds the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Config(String),
    #[error("transport error: {0}")]
    Transport(String),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Target: Send + Sync {
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatReply, TargetError>>;
}

/// What every target needs beyond its own spec.
#[derive(Debug, Clone)]
pub struct TargetDefaults {
    pub max_response_bytes: u64,
}

/// A configured target, ready to call.
pub struct TargetEntry {
    pub spec: TargetSpec,
    /// The system prompt from the spec or its file, read at load.
    pub system_prompt: Option<String>,
    /// The client, or why it could not be built (e.g. its API key variable is unset):
    /// an audit of this target is refused with that reason before any request.
    pub client: Result<Arc<dyn Target>, String>,
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

impl TargetRegistry {
    /// Builds clients for validated specs. A target that cannot be built (a missing
    /// secret, an unreadable prompt file) is kept with the reason, so the others work.
    pub fn build(specs: Vec<TargetSpec>, defaults: &TargetDefaults) -> Self {
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
            let client = system_prompt.clone().and_then(|_| match spec.kind {
                TargetKind::Demo => Ok(Arc::new(DemoTarget::new()) as Arc<dyn Target>),
                TargetKind::Openai => {
                    OpenAiTarget::new(&spec, defaults).map(|t| Arc::new(t) as Arc<dyn Target>)
                }
                other => Err(format!("{} targets cannot be audited yet", other.name())),
            });
            let client = client.map_err(|e| format!("target `{name}`: {e}"));
            let system_prompt = system_prompt.unwrap_or(None);
            targets.insert(
                name,
                Arc::new(TargetEntry {
                    spec,
                    system_prompt,
                    client,
                }),
            );
        }
        Self { targets }
    }

    /// Targets that cannot be used, with the reason.
    pub fn problems(&self) -> impl Iterator<Item = &str> {
        self.targets
            .values()
            .filter_map(|t| t.client.as_ref().err().map(String::as_str))
    }

    pub fn get(&self, name: &str) -> Option<Arc<TargetEntry>> {
        self.targets.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(String::as_str)
    }

    pub fn infos(&self) -> Vec<TargetInfo> {
        self.targets.values().map(|t| t.info()).collect()
    }

    pub fn specs(&self) -> impl Iterator<Item = &TargetSpec> {
        self.targets.values().map(|t| &t.spec)
    }
}
