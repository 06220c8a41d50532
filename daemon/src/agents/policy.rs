//! The Policy agent: reloads targets and policies when asked (SIGHUP, a request), through
//! the same path as the first load.

use aura_proto::view::AgentKind;

use super::messages::PolicyMsg;
use super::{Agent, AgentError};
use crate::bus::Envelope;
use crate::services::Services;

pub struct PolicyAgent;

impl Agent for PolicyAgent {
    type Msg = PolicyMsg;
    const KIND: AgentKind = AgentKind::Policy;

    async fn handle(
        &self,
        msg: PolicyMsg,
        _env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let PolicyMsg::Reload { reason } = msg;
        let (svc2, reason2) = (svc.clone(), reason.clone());
        // Reading and validating files is blocking work.
        let result = tokio::task::spawn_blocking(move || {
            svc2.catalog
                .reload(&svc2.config, &svc2.view, &reason2)
                .map(|_| ())
        })
        .await
        .map_err(|e| AgentError::Failed(format!("reload task failed: {e}")))?;
        // A rejected reload is the policy author's problem, already alerted; the agent
        // itself is healthy.
        if let Err(d) = result {
            tracing::warn!(%reason, problems = d.len(), "reload kept the previous policy set");
        }
        Ok(())
    }
}
