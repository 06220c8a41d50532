//! The Remediation agent. Here it records, for each failed control of a finished run,
//! the remediation the policy suggests; planning, approval, apply, verify and rollback
//! build on this.

use aura_proto::view::{AgentKind, Verdict};

use super::messages::RemediationMsg;
use super::{Agent, AgentError};
use crate::bus::Envelope;
use crate::services::Services;

pub struct RemediationAgent;

impl Agent for RemediationAgent {
    type Msg = RemediationMsg;
    const KIND: AgentKind = AgentKind::Remediation;

    async fn handle(
        &self,
        msg: RemediationMsg,
        _env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let RemediationMsg::Plan { run } = msg;
        let Some(record) = svc.store.run(run)? else {
            return Ok(());
        };
        for result in svc
            .store
            .results(run)?
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
        {
            let suggestion = record
                .plan
                .iter()
                .find(|p| p.id == result.control)
                .and_then(|p| p.remediation.as_deref())
                .unwrap_or("no remediation suggested by the policy");
            tracing::info!(run = %run, control = %result.control, %suggestion, "remediation suggested");
            svc.record(
                "remediation",
                "RemediationSuggested",
                serde_json::json!({ "run": run, "control": result.control, "target": result.target, "suggestion": suggestion }),
            );
        }
        Ok(())
    }
}
