//! The nine agents. Each is a type implementing [`Agent`]; a supervisor
//! ([`supervisor::spawn`]) runs it, feeds it messages from its bus topic, restarts it
//! with capped backoff when it fails, and reports its state.

mod analysis;
mod audit;
mod learning;
pub mod messages;
mod monitor;
mod orchestrator;
mod policy;
mod remediation;
mod report;
pub mod supervisor;
mod testing;

use std::future::Future;

use aura_proto::view::AgentKind;
use serde::{Serialize, de::DeserializeOwned};

use crate::bus::{Bus, BusError, Envelope, Meta, publish};
use crate::services::Services;
use crate::store::StoreError;

pub use analysis::AnalysisAgent;
pub use audit::AuditAgent;
pub use learning::LearningAgent;
pub use monitor::MonitorAgent;
pub use orchestrator::{OrchestratorAgent, control_run, start_audit, start_audit_with};
pub use policy::PolicyAgent;
pub use remediation::RemediationAgent;
pub use report::ReportAgent;
pub use testing::TestingAgent;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("{0}")]
    Failed(String),
    /// The daemon is stopping; the message stays on the bus for the next start.
    #[error("interrupted by shutdown")]
    ShuttingDown,
}

impl AgentError {
    /// Whether the store could not write (disk full, read-only, I/O), rather than the
    /// work itself failing: the Monitor alerts on these.
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            AgentError::Store(StoreError::Sled(sled::Error::Io(_)) | StoreError::Durability(_))
                | AgentError::Bus(BusError::Storage(sled::Error::Io(_)) | BusError::Durability(_))
        )
    }
}

pub trait Agent: Send + Sync + 'static {
    /// What arrives on this agent's topic.
    type Msg: Serialize + DeserializeOwned + Send + std::fmt::Debug + 'static;
    const KIND: AgentKind;
    /// Messages handled at once. Most agents take one at a time.
    const PARALLEL: usize = 1;

    /// Called once per (re)start, before any message.
    fn start(&self, _svc: &Services) -> impl Future<Output = Result<(), AgentError>> + Send {
        async { Ok(()) }
    }

    /// Handles one message. `Ok` acks it; an error nacks it (redelivered, then
    /// dead-lettered) and marks the agent degraded until a later success.
    fn handle(
        &self,
        msg: Self::Msg,
        envelope: &Envelope,
        svc: &Services,
    ) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// Called on every heartbeat, for agents that work on a timer.
    fn tick(&self, _svc: &Services) -> impl Future<Output = Result<(), AgentError>> + Send {
        async { Ok(()) }
    }
}

/// The bus topic of an agent's inbox.
pub fn topic(kind: AgentKind) -> &'static str {
    kind.name()
}

/// Sends a typed message to another agent's topic.
pub async fn send<M: Serialize>(
    bus: &dyn Bus,
    to: AgentKind,
    msg: &M,
    meta: Meta,
) -> Result<u64, AgentError> {
    Ok(publish(bus, topic(to), msg, meta).await?)
}
