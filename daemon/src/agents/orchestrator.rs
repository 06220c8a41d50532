//! The Orchestrator: starts runs and moves each through its workflow, one step message
//! at a time: plan (Testing) -> execute (Audit, all targets in parallel) -> analyse
//! (Analysis) -> alerts -> report (Report) -> done, then remediation (only if something
//! failed) and learning. Critical failures are alerted during execution, not after.

use std::collections::BTreeMap;

use aura_proto::view::{AgentKind, RunId, RunState, Severity, Timestamp, Verdict};
use aura_proto::wire::{ApiError, ErrorCode, StartAudit};

use super::messages::*;
use super::{Agent, AgentError, send};
use crate::aggregator::AlertDraft;
use crate::bus::{Envelope, Meta, Priority};
use crate::run::{Phase, Requester, RunRecord, Selection};
use crate::runctl::Signal;
use crate::services::Services;
use crate::store::StoreError;

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
        let run = match &msg {
            OrchestratorMsg::Start { run }
            | OrchestratorMsg::Planned { run }
            | OrchestratorMsg::Executed { run }
            | OrchestratorMsg::Analyzed { run }
            | OrchestratorMsg::Reported { run } => *run,
        };
        let Some(record) = svc.store.run(run)? else {
            return Ok(());
        };
        if record.state.is_finished() && !matches!(msg, OrchestratorMsg::Reported { .. }) {
            return Ok(());
        }
        match msg {
            OrchestratorMsg::Start { run } => {
                let r = svc
                    .store
                    .update_run(run, |r| {
                        if r.state == RunState::Queued {
                            r.state = RunState::Running;
                        }
                    })?
                    .unwrap_or(record);
                svc.view.audit(r.summary());
                tracing::info!(run = %run, targets = ?r.targets, "audit started");
                send(
                    &*svc.bus,
                    AgentKind::Testing,
                    &TestingMsg::Plan { run },
                    meta,
                )
                .await?;
            }
            OrchestratorMsg::Planned { run } => {
                // A run paused before execution waits for resume.
                if record.state != RunState::Paused {
                    send(
                        &*svc.bus,
                        AgentKind::Audit,
                        &AuditMsg::Execute { run },
                        meta,
                    )
                    .await?;
                }
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
                svc.record(
                    "orchestrator",
                    "AuditCompleted",
                    serde_json::json!({ "run": run, "state": r.state.label(), "controls": r.controls, "report": r.report_dir }),
                );
                svc.store.flush().await?;
                svc.runs.forget(run);
                tracing::info!(
                    run = %run,
                    pass = r.controls.pass,
                    fail = r.controls.fail,
                    error = r.controls.error,
                    "audit completed"
                );
                if r.state == RunState::Completed {
                    // Nothing failed: no remediation step.
                    if r.controls.fail > 0 {
                        send(
                            &*svc.bus,
                            AgentKind::Remediation,
                            &RemediationMsg::Plan { run },
                            meta.clone(),
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
        }
        Ok(())
    }
}

/// One alert per failed control and target, once per run (critical ones may already
/// have been raised during execution).
fn raise_alerts(svc: &Services, run: RunId) -> Result<(), AgentError> {
    let Some(r) = svc.store.run(run)? else {
        return Ok(());
    };
    let policies = svc.catalog.policies();
    let mut newly = Vec::new();
    for c in svc
        .store
        .results(run)?
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
    {
        let key = format!("{}@{}", c.control, c.target);
        if r.alerted.contains(&key) {
            continue;
        }
        // A waiver in monitor mode keeps the verdict but silences the alert.
        if policies
            .waiver(&c.control, &c.target, Timestamp::now())
            .is_some()
        {
            newly.push(key);
            continue;
        }
        raise_failure(
            svc,
            &r,
            &c.control,
            &c.target,
            c.severity,
            &format!("{}: {}", c.title, c.detail),
        )?;
        newly.push(key);
    }
    svc.store
        .update_run(run, |r| r.alerted.extend(newly.iter().cloned()))?;
    Ok(())
}

/// Raises the alert for a failed control on a target.
pub fn raise_failure(
    svc: &Services,
    r: &RunRecord,
    control: &str,
    target: &str,
    severity: Severity,
    detail: &str,
) -> Result<(), StoreError> {
    let demo = svc
        .catalog
        .targets()
        .get(target)
        .is_some_and(|t| t.is_demo());
    let demo = if demo { " (demo target)" } else { "" };
    svc.view.raise(AlertDraft {
        severity,
        source: AgentKind::Orchestrator,
        title: format!("{control} failed on {target}{demo}"),
        detail: detail.to_string(),
        run: Some(r.id),
        control: Some(control.to_string()),
        target: Some(target.to_string()),
    })?;
    Ok(())
}

/// Checks a request to start an audit, records the run and hands it to the Orchestrator.
/// Problems the requester can fix are reported before anything is recorded.
pub async fn start_audit(
    svc: &Services,
    req: StartAudit,
    requested_by: Requester,
) -> Result<RunId, ApiError> {
    start_audit_with(svc, req, requested_by, Priority::Normal).await
}

/// [`start_audit`] with the priority its step messages travel at.
pub async fn start_audit_with(
    svc: &Services,
    req: StartAudit,
    requested_by: Requester,
    priority: Priority,
) -> Result<RunId, ApiError> {
    let registry = svc.catalog.targets();
    let policies = svc.catalog.policies();
    let mut names: Vec<String> = Vec::new();
    for name in &req.targets {
        if registry.get(name).is_none() {
            let known: Vec<&str> = registry.names().collect();
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "no target named `{name}`; configured targets: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    for e in registry.entries() {
        if req.tags.iter().any(|t| e.spec.tags.contains(t))
            && !names.iter().any(|n| n == e.spec.name())
        {
            names.push(e.spec.name().to_string());
        }
    }
    if names.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            if req.tags.is_empty() {
                "name at least one target".to_string()
            } else {
                format!("no target carries the tag(s) {}", req.tags.join(", "))
            },
        ));
    }
    if let Some(sel) = &req.policy
        && !policies.knows(sel)
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no policy file or control named `{sel}` in the active policy set"),
        ));
    }
    for id in &req.controls {
        if policies.control(id).is_none() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no control `{id}` in the active policy set"),
            ));
        }
    }
    let selection = Selection {
        policy: req.policy.clone(),
        controls: req.controls.clone(),
    };
    let mut canaries = BTreeMap::new();
    let mut selected = 0usize;
    let mut demo = false;
    for name in &names {
        let Some(entry) = registry.get(name) else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no target `{name}`"),
            ));
        };
        let prompted = entry.spec.kind.answers_prompts();
        if prompted && let Err(reason) = &entry.provider {
            return Err(ApiError::new(ErrorCode::BadRequest, reason.clone()));
        }
        demo |= entry.is_demo();
        for c in policies
            .controls
            .iter()
            .filter(|c| selection.admits(c) && c.applies_to(&entry.spec))
        {
            selected += 1;
            for canary in c.probe.iter().flat_map(|p| p.value.canaries.iter()) {
                canaries
                    .entry(canary.value.clone())
                    .or_insert_with(new_canary);
            }
        }
    }
    if selected == 0 {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "no selected control applies to {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let internal = |e: StoreError| ApiError::new(ErrorCode::Internal, e.to_string());
    let id = svc.store.next_run_id().map_err(internal)?;
    let record = RunRecord {
        id,
        targets: names,
        target_is_demo: demo,
        selection,
        seed: req.seed.unwrap_or_else(random_seed),
        no_cache: req.no_cache,
        concurrency: req.concurrency.filter(|c| *c > 0),
        state: RunState::Queued,
        phase: Phase::Planning,
        attempts_total: 0,
        attempts_done: 0,
        controls_total: selected as u32,
        controls: Default::default(),
        started: Timestamp::now(),
        finished: None,
        canaries,
        report_dir: None,
        requested_by,
        plan: Vec::new(),
        alerted: Default::default(),
        attempts_pruned: false,
    };
    svc.store.put_run(&record).map_err(internal)?;
    svc.record(
        "orchestrator",
        "AuditStarted",
        serde_json::json!({
            "run": id,
            "targets": record.targets,
            "policy": record.selection.policy,
            "controls": record.selection.controls,
            "seed": record.seed,
            "no_cache": record.no_cache,
            "requested_by": record.requested_by,
        }),
    );
    svc.view.audit(record.summary());
    send(
        &*svc.bus,
        AgentKind::Orchestrator,
        &OrchestratorMsg::Start { run: id },
        Meta {
            priority,
            ..Meta::correlated(correlation(id))
        },
    )
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(id)
}

/// Pause, resume or cancel a run.
pub async fn control_run(svc: &Services, run: RunId, signal: Signal) -> Result<(), ApiError> {
    let internal = |e: StoreError| ApiError::new(ErrorCode::Internal, e.to_string());
    let record = svc
        .store
        .run(run)
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no audit run {run}")))?;
    if record.state.is_finished() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("run {run} is already {}", record.state.label()),
        ));
    }
    let new_state = match (signal, &record.state) {
        (Signal::Pause, RunState::Paused) | (Signal::Run, RunState::Running | RunState::Queued) => {
            return Ok(());
        }
        (Signal::Pause, _) => RunState::Paused,
        (Signal::Run, _) => RunState::Running,
        (Signal::Cancel, _) => RunState::Cancelled,
    };
    let updated = svc
        .store
        .update_run(run, |r| {
            r.state = new_state.clone();
            if new_state == RunState::Cancelled {
                r.phase = Phase::Done;
                r.finished = Some(Timestamp::now());
            }
        })
        .map_err(internal)?
        .unwrap_or(record.clone());
    svc.view.audit(updated.summary());
    svc.record(
        "orchestrator",
        match signal {
            Signal::Pause => "AuditPaused",
            Signal::Run => "AuditResumed",
            Signal::Cancel => "AuditCancelled",
        },
        serde_json::json!({ "run": run }),
    );
    svc.store.flush().await.map_err(internal)?;
    svc.runs.send(run, signal);
    tracing::info!(run = %run, state = updated.state.label(), "audit run state changed on request");
    // A resumed run that was waiting between steps continues from its phase.
    if signal == Signal::Run {
        let meta = Meta::correlated(correlation(run));
        let step = match updated.phase {
            Phase::Planning => {
                send(
                    &*svc.bus,
                    AgentKind::Testing,
                    &TestingMsg::Plan { run },
                    meta,
                )
                .await
            }
            Phase::Executing => {
                send(
                    &*svc.bus,
                    AgentKind::Audit,
                    &AuditMsg::Execute { run },
                    meta,
                )
                .await
            }
            _ => Ok(0),
        };
        step.map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    }
    Ok(())
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return Timestamp::now().0;
    }
    u64::from_le_bytes(b)
}

/// A fresh canary: unguessable, and unlikely to appear in any answer by chance.
fn new_canary() -> String {
    format!("AURA-CANARY-{:016x}", random_seed())
}
