//! The Testing agent: turns a run's selected controls into concrete attempts for every
//! target (see [`crate::generate`]), and checkpoints the plan so execution can resume
//! from it. Controls with `probe.generate` first get new prompts from the daemon's LLM.
//! Document, runtime and attestation controls are planned without attempts; the
//! Analysis agent evaluates them.

use std::collections::HashMap;

use aura_policy::Control;
use aura_proto::view::{AgentKind, RunState};
use serde_json::json;

use super::messages::{OrchestratorMsg, TestingMsg};
use super::{Agent, AgentError, send};
use crate::bus::{Envelope, Meta};
use crate::generate::writer::Brief;
use crate::generate::{self, Context};
use crate::run::{AttemptRecord, Phase, PlannedControl};
use crate::services::Services;

pub struct TestingAgent;

impl Agent for TestingAgent {
    type Msg = TestingMsg;
    const KIND: AgentKind = AgentKind::Testing;

    async fn handle(
        &self,
        msg: TestingMsg,
        env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let TestingMsg::Plan { run } = msg;
        let Some(mut record) = svc.store.run(run)? else {
            return Ok(());
        };
        if record.state.is_finished() {
            return Ok(());
        }
        if record.phase == Phase::Planning {
            let registry = svc.catalog.targets();
            let policies = svc.catalog.policies();
            let learned = svc.learned_attacks();
            let use_cache = !record.no_cache && svc.config.audit.cache;
            // Written once per control and shared by every target of the run.
            let mut generated: HashMap<String, Vec<String>> = HashMap::new();
            let mut attempts: Vec<AttemptRecord> = Vec::new();
            let mut plan = Vec::new();
            for name in record.targets.clone() {
                let entry = registry.get(&name).ok_or_else(|| {
                    AgentError::Failed(format!("target `{name}` is no longer configured"))
                })?;
                let controls: Vec<&Control> = policies
                    .controls
                    .iter()
                    .filter(|c| record.selection.admits(c) && c.applies_to(&entry.spec))
                    .collect();
                for c in controls {
                    let detectors: Vec<_> = c.detectors.iter().map(|d| d.value.clone()).collect();
                    if let (Some(probe), Ok(provider)) = (&c.probe, &entry.provider) {
                        if !generated.contains_key(c.id()) {
                            let written = write_prompts(svc, c, record.seed, use_cache).await;
                            generated.insert(c.id().to_string(), written);
                        }
                        let ctx = Context {
                            control_id: c.id(),
                            target_system_prompt: entry.system_prompt.as_deref(),
                            canaries: &record.canaries,
                            seed: record.seed,
                            learned: &learned,
                            generated: generated.get(c.id()).map_or(&[], |g| g.as_slice()),
                        };
                        let planned =
                            generate::expand(&probe.value, &detectors, &ctx).map_err(|e| {
                                AgentError::Failed(format!("control `{}`: {e}", c.id()))
                            })?;
                        for p in planned {
                            attempts.push(AttemptRecord {
                                run,
                                index: attempts.len() as u32,
                                target: name.clone(),
                                control: c.id().to_string(),
                                request_digest: provider
                                    .request_digest(&p.request, p.variant.repeat),
                                request: p.request,
                                variant: p.variant,
                                outcome: None,
                            });
                        }
                    }
                    plan.push(planned_control(c, &name));
                }
            }
            svc.store.put_attempts(&attempts)?;
            record = svc
                .store
                .update_run(run, |r| {
                    r.attempts_total = attempts.len() as u32;
                    r.controls_total = plan.len() as u32;
                    r.plan = plan.clone();
                    r.phase = Phase::Executing;
                })?
                .unwrap_or(record);
            svc.store.flush().await?;
            svc.view.audit(record.summary());
            tracing::info!(run = %run, attempts = attempts.len(), controls = record.controls_total, "attempts planned");
        }
        if record.phase == Phase::Executing && record.state != RunState::Paused {
            send(
                &*svc.bus,
                AgentKind::Orchestrator,
                &OrchestratorMsg::Planned { run },
                Meta::caused_by(env),
            )
            .await?;
        }
        Ok(())
    }
}

/// Prompts the daemon's LLM writes for a control with `probe.generate`. Without an LLM,
/// or when it fails, the control runs its own prompts and the event log says why.
async fn write_prompts(svc: &Services, c: &Control, seed: u64, use_cache: bool) -> Vec<String> {
    let Some(spec) = c
        .probe
        .as_ref()
        .and_then(|p| p.value.generate.as_ref().map(|g| &g.value))
    else {
        return Vec::new();
    };
    let Some(writer) = &svc.prompt_writer else {
        tracing::warn!(
            control = c.id(),
            "probe.generate needs [llm] in aurad.toml; running the control's own prompts"
        );
        svc.record(
            "testing",
            "ProbeGenerationSkipped",
            json!({ "control": c.id(), "reason": "no [llm] is configured" }),
        );
        return Vec::new();
    };
    let examples: Vec<String> = c
        .probe
        .iter()
        .flat_map(|p| p.value.prompts.iter().map(|s| s.value.clone()))
        .collect();
    let brief = Brief {
        control_id: c.id(),
        title: &c.title,
        examples: &examples,
        spec,
        seed,
    };
    match writer.write(&brief, use_cache).await {
        Ok(prompts) => {
            svc.record(
                "testing",
                "ProbesGenerated",
                json!({ "control": c.id(), "count": prompts.len(), "prompts": prompts }),
            );
            prompts
        }
        Err(e) => {
            tracing::warn!(control = c.id(), error = %e, "probe generation failed; running the control's own prompts");
            svc.record(
                "testing",
                "ProbeGenerationFailed",
                json!({ "control": c.id(), "error": e }),
            );
            Vec::new()
        }
    }
}

fn planned_control(c: &Control, target: &str) -> PlannedControl {
    PlannedControl {
        id: c.id().to_string(),
        target: target.to_string(),
        title: c.title.clone(),
        kind: c.kind.value,
        severity: c.severity,
        frameworks: c.frameworks.labels(),
        max_attack_success_rate: c.threshold.max_attack_success_rate,
        min_attempts: c.threshold.min_attempts.unwrap_or(1),
        detectors: c.detectors.iter().map(|d| d.value.clone()).collect(),
        remediation: c
            .remediation
            .as_ref()
            .map(|r| r.suggestion.trim().to_string()),
    }
}
