//! The Audit agent: sends a run's pending attempts to the target, at most the target's
//! concurrency at once, judges each answer with the control's detectors, and checkpoints
//! every completed attempt. A redelivered run resumes with the attempts still pending.

use std::collections::HashMap;
use std::sync::Arc;

use aura_proto::view::{AgentKind, Timestamp, Verdict};
use tokio::task::JoinSet;

use super::messages::{AuditMsg, OrchestratorMsg};
use super::{Agent, AgentError, send};
use crate::bus::{Envelope, Meta};
use crate::detectors::{self, Detector, Input};
use crate::run::{AttemptOutcome, AttemptRecord, Phase};
use crate::services::Services;
use crate::targets::Target;

pub struct AuditAgent;

impl Agent for AuditAgent {
    type Msg = AuditMsg;
    const KIND: AgentKind = AgentKind::Audit;
    /// Runs against different targets proceed side by side.
    const PARALLEL: usize = 4;

    async fn handle(
        &self,
        msg: AuditMsg,
        env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let AuditMsg::Execute { run } = msg;
        let Some(mut record) = svc.store.run(run)? else {
            return Ok(());
        };
        if record.phase == Phase::Executing {
            let targets = svc.catalog.targets();
            let entry = targets.get(&record.target).ok_or_else(|| {
                AgentError::Failed(format!(
                    "target `{}` is no longer configured",
                    record.target
                ))
            })?;
            let client = entry.client.clone().map_err(AgentError::Failed)?;
            let detectors: HashMap<String, Arc<Vec<Detector>>> = record
                .plan
                .iter()
                .map(|c| {
                    let ds = c
                        .detectors
                        .iter()
                        .map(Detector::compile)
                        .collect::<Result<Vec<_>, _>>();
                    ds.map(|d| (c.id.clone(), Arc::new(d)))
                })
                .collect::<Result<_, _>>()
                .map_err(AgentError::Failed)?;
            let canaries: Arc<Vec<String>> = Arc::new(record.canaries.values().cloned().collect());
            let pending: Vec<AttemptRecord> = svc
                .store
                .attempts(run)?
                .into_iter()
                .filter(|a| a.outcome.is_none())
                .collect();
            record.attempts_done = record.attempts_total - pending.len() as u32;
            let limit = entry.spec.concurrency.max(1) as usize;
            let mut queue = pending.into_iter();
            let mut in_flight = JoinSet::new();
            loop {
                while in_flight.len() < limit && !svc.cancel.is_cancelled() {
                    let Some(attempt) = queue.next() else { break };
                    let detectors = detectors.get(&attempt.control).cloned().unwrap_or_default();
                    in_flight.spawn(execute(
                        client.clone(),
                        attempt,
                        detectors,
                        canaries.clone(),
                    ));
                }
                let done = tokio::select! {
                    done = in_flight.join_next() => done,
                    _ = svc.cancel.cancelled() => {
                        in_flight.abort_all();
                        return Err(AgentError::ShuttingDown);
                    }
                };
                let Some(done) = done else { break };
                let attempt =
                    done.map_err(|e| AgentError::Failed(format!("attempt task failed: {e}")))?;
                svc.store.put_attempt(&attempt)?;
                record.attempts_done += 1;
                svc.store
                    .update_run(run, |r| r.attempts_done = record.attempts_done)?;
                svc.view.audit(record.summary());
            }
            record = svc
                .store
                .update_run(run, |r| r.phase = Phase::Analyzing)?
                .unwrap_or(record);
            svc.view.audit(record.summary());
        }
        if record.phase == Phase::Analyzing {
            send(
                &*svc.bus,
                AgentKind::Orchestrator,
                &OrchestratorMsg::Executed { run },
                Meta::caused_by(env),
            )
            .await?;
        }
        Ok(())
    }
}

/// One attempt: ask, then judge. A target error is an `error` verdict, never `fail`.
async fn execute(
    client: Arc<dyn Target>,
    mut attempt: AttemptRecord,
    detectors: Arc<Vec<Detector>>,
    canaries: Arc<Vec<String>>,
) -> AttemptRecord {
    let outcome = match client.complete(&attempt.request).await {
        Ok(reply) => {
            let input = Input {
                response: &reply.text,
                canaries: &canaries,
            };
            let outcomes: Vec<_> = detectors.iter().map(|d| d.evaluate(input)).collect();
            let (verdict, note) = detectors::combine(&outcomes);
            AttemptOutcome {
                verdict,
                response: Some(reply.text),
                note,
                latency_ms: reply.latency.as_millis() as u64,
                finished: Timestamp::now(),
            }
        }
        Err(e) => AttemptOutcome {
            verdict: Verdict::Error,
            response: None,
            note: e.to_string(),
            latency_ms: 0,
            finished: Timestamp::now(),
        },
    };
    attempt.outcome = Some(outcome);
    attempt
}
