//! The Orchestrator: starts runs and moves each through its workflow, one step message
//! at a time: plan (Testing) -> execute (Audit) -> analyse (Analysis) -> alerts ->
//! report (Report) -> done, then remediation (only if something failed) and learning.

use std::collections::BTreeMap;

use aura_proto::view::{AgentKind, RunId, RunState, Timestamp, Verdict};
use aura_proto::wire::{ApiError, ErrorCode, StartAudit};

use super::messages::*;
use super::{Agent, AgentError, send};
use crate::aggregator::AlertDraft;
use crate::bus::{Envelope, Meta, Priority};
use crate::run::{Phase, Requester, RunRecord};
use crate::services::Services;

pub struct OrchestratorAgent;

impl Agent for OrchestratorAgent {
    type Msg = OrchestratorMsg;
    const KIND: AgentKind = AgentKind::Orchestrator;

    async fn handle(
        &self,
        msg: OrchestratorMsg,
        env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let meta = Meta::caused_by(env);
        match msg {
            OrchestratorMsg::Start { run } => {
                let Some(r) = svc.store.update_run(run, |r| {
                    if r.state == RunState::Queued {
                        r.state = RunState::Running;
                    }
                })?
                else {
                    return Ok(());
                };
                svc.view.audit(r.summary());
                tracing::info!(run = %run, target = %r.target, "audit started");
                send(
                    &*svc.bus,
                    AgentKind::Testing,
                    &TestingMsg::Plan { run },
                    meta,
                )
                .await?;
            }
            OrchestratorMsg::Planned { run } => {
                send(
                    &*svc.bus,
                    AgentKind::Audit,
                    &AuditMsg::Execute { run },
                    meta,
                )
                .await?;
            }
            OrchestratorMsg::Executed { run } => {
                send(
                    &*svc.bus,
                    AgentKind::Analysis,
                    &AnalysisMsg::Analyze { run },
                    meta,
                )
                .await?;
            }
            OrchestratorMsg::Analyzed { run } => {
                raise_alerts(svc, run)?;
                send(
                    &*svc.bus,
                    AgentKind::Report,
                    &ReportMsg::Render { run },
                    meta,
                )
                .await?;
            }
            OrchestratorMsg::Reported { run } => {
                let Some(r) = svc.store.update_run(run, |r| {
                    r.phase = Phase::Done;
                    if !r.state.is_finished() {
                        r.state = RunState::Completed;
                        r.finished = Some(Timestamp::now());
                    }
                })?
                else {
                    return Ok(());
                };
                svc.view.audit(r.summary());
                tracing::info!(
                    run = %run,
                    pass = r.controls.pass,
                    fail = r.controls.fail,
                    error = r.controls.error,
                    "audit completed"
                );
                // Nothing failed: no remediation step.
                if r.controls.fail > 0 {
                    let m = Meta {
                        priority: Priority::Normal,
                        ..meta.clone()
                    };
                    send(
                        &*svc.bus,
                        AgentKind::Remediation,
                        &RemediationMsg::Plan { run },
                        m,
                    )
                    .await?;
                }
                let low = Meta {
                    priority: Priority::Low,
                    ..meta
                };
                send(
                    &*svc.bus,
                    AgentKind::Learning,
                    &LearningMsg::Learn { run },
                    low,
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// One alert per failed control, once per run.
fn raise_alerts(svc: &Services, run: RunId) -> Result<(), AgentError> {
    let Some(r) = svc.store.run(run)? else {
        return Ok(());
    };
    if r.alerted {
        return Ok(());
    }
    let demo = if r.target_is_demo {
        " (demo target)"
    } else {
        ""
    };
    for c in svc
        .store
        .results(run)?
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
    {
        svc.view.raise(AlertDraft {
            severity: c.severity,
            source: AgentKind::Orchestrator,
            title: format!("{} failed on {}{demo}", c.control, r.target),
            detail: format!("{}: {}", c.title, c.detail),
            run: Some(run),
            control: Some(c.control.clone()),
            target: Some(r.target.clone()),
        })?;
    }
    svc.store.update_run(run, |r| r.alerted = true)?;
    Ok(())
}

/// Checks a request to start an audit, records the run and hands it to the Orchestrator.
/// Problems the requester can fix are reported before anything is recorded.
pub async fn start_audit(
    svc: &Services,
    req: StartAudit,
    requested_by: Requester,
) -> Result<RunId, ApiError> {
    let targets = svc.catalog.targets();
    let Some(target) = targets.get(&req.target) else {
        let known: Vec<&str> = targets.names().collect();
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no target named `{}`; configured targets: {}",
                req.target,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    if let Err(reason) = &target.client {
        return Err(ApiError::new(ErrorCode::BadRequest, reason.clone()));
    }
    let policies = svc.catalog.policies();
    if let Some(sel) = &req.policy
        && !policies.knows(sel)
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no policy file or control named `{sel}` in the active policy set"),
        ));
    }
    let selected: Vec<_> = policies
        .select(req.policy.as_deref(), &target.spec)
        .collect();
    if selected.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "no control{} applies to target `{}` (kind {})",
                req.policy
                    .as_ref()
                    .map(|p| format!(" of `{p}`"))
                    .unwrap_or_default(),
                req.target,
                target.spec.kind.name()
            ),
        ));
    }
    let mut canaries = BTreeMap::new();
    for c in &selected {
        for name in c.probe.iter().flat_map(|p| p.value.canaries.iter()) {
            canaries
                .entry(name.value.clone())
                .or_insert_with(new_canary);
        }
    }
    let internal = |e: crate::store::StoreError| ApiError::new(ErrorCode::Internal, e.to_string());
    let id = svc.store.next_run_id().map_err(internal)?;
    let record = RunRecord {
        id,
        target: req.target.clone(),
        target_is_demo: target.is_demo(),
        policy: req.policy.clone(),
        state: RunState::Queued,
        phase: Phase::Planning,
        attempts_total: 0,
        attempts_done: 0,
        controls_total: selected.len() as u32,
        controls: Default::default(),
        started: Timestamp::now(),
        finished: None,
        canaries,
        report_dir: None,
        requested_by,
        plan: Vec::new(),
        alerted: false,
    };
    svc.store.put_run(&record).map_err(internal)?;
    svc.view.audit(record.summary());
    send(
        &*svc.bus,
        AgentKind::Orchestrator,
        &OrchestratorMsg::Start { run: id },
        Meta::correlated(correlation(id)),
    )
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(id)
}

/// A fresh canary: unguessable, and unlikely to appear in any answer by chance.
fn new_canary() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the clock, still unique per run.
        bytes = Timestamp::now().0.to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("AURA-CANARY-{hex}")
}
