//! The Monitor agent: watches the daemon itself. Here it checks the other agents'
//! heartbeats and the bus queue depths on every tick; host health and transcript
//! monitoring build on this.

use aura_proto::view::AgentKind;

use super::messages::NoMessages;
use super::{Agent, AgentError, topic};
use crate::bus::Envelope;
use crate::services::Services;

pub struct MonitorAgent;

/// A queue deeper than this makes the monitor report itself degraded.
const DEEP_QUEUE: u64 = 10_000;

impl Agent for MonitorAgent {
    type Msg = NoMessages;
    const KIND: AgentKind = AgentKind::Monitor;

    async fn handle(
        &self,
        msg: NoMessages,
        _env: &Envelope,
        _svc: &Services,
    ) -> Result<(), AgentError> {
        match msg {}
    }

    async fn tick(&self, svc: &Services) -> Result<(), AgentError> {
        let deep: Vec<String> = AgentKind::ALL
            .iter()
            .filter_map(|k| {
                let depth = svc.bus.stats(topic(*k)).depth;
                (depth > DEEP_QUEUE).then(|| format!("{k}: {depth}"))
            })
            .collect();
        if deep.is_empty() {
            Ok(())
        } else {
            Err(AgentError::Failed(format!(
                "queues backing up: {}",
                deep.join(", ")
            )))
        }
    }
}
