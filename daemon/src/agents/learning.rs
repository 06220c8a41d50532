//! The Learning agent. Here it notes which attacks succeeded in a finished run; the
//! knowledge base that remembers them for later runs builds on this.

use aura_proto::view::{AgentKind, Verdict};

use super::messages::LearningMsg;
use super::{Agent, AgentError};
use crate::bus::Envelope;
use crate::services::Services;

pub struct LearningAgent;

impl Agent for LearningAgent {
    type Msg = LearningMsg;
    const KIND: AgentKind = AgentKind::Learning;

    async fn handle(
        &self,
        msg: LearningMsg,
        _env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let LearningMsg::Learn { run } = msg;
        let successful = svc
            .store
            .attempts(run)?
            .iter()
            .filter(|a| {
                a.outcome
                    .as_ref()
                    .is_some_and(|o| o.verdict == Verdict::Fail)
            })
            .count();
        tracing::info!(run = %run, successful_attacks = successful, "run learned from");
        Ok(())
    }
}
