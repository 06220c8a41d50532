//! The Testing agent: turns a run's controls into concrete attempts (prompts rendered
//! with this run's canaries and every variable combination, times repeats), and
//! checkpoints the plan so execution can resume from it.

use std::collections::BTreeMap;

use aura_policy::{Control, template};
use aura_proto::view::AgentKind;

use super::messages::{OrchestratorMsg, TestingMsg};
use super::{Agent, AgentError, send};
use crate::bus::{Envelope, Meta};
use crate::run::{AttemptRecord, Phase, PlannedControl, RunRecord};
use crate::services::Services;
use crate::targets::{ChatMessage, ChatRequest};

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
        if record.phase == Phase::Planning {
            let targets = svc.catalog.targets();
            let target = targets.get(&record.target).ok_or_else(|| {
                AgentError::Failed(format!(
                    "target `{}` is no longer configured",
                    record.target
                ))
            })?;
            let policies = svc.catalog.policies();
            let controls: Vec<&Control> = policies
                .select(record.policy.as_deref(), &target.spec)
                .collect();
            let mut attempts = Vec::new();
            let mut plan = Vec::new();
            for c in controls {
                for request in expand(c, &record, target.system_prompt.as_deref())
                    .map_err(AgentError::Failed)?
                {
                    attempts.push(AttemptRecord {
                        run,
                        index: attempts.len() as u32,
                        control: c.id().to_string(),
                        request,
                        outcome: None,
                    });
                }
                plan.push(planned(c));
            }
            svc.store.put_attempts(&attempts)?;
            record.attempts_total = attempts.len() as u32;
            record.controls_total = plan.len() as u32;
            record.plan = plan;
            record.phase = Phase::Executing;
            svc.store.put_run(&record)?;
            svc.view.audit(record.summary());
            tracing::info!(run = %run, attempts = attempts.len(), "attempts planned");
        }
        if record.phase == Phase::Executing {
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

fn planned(c: &Control) -> PlannedControl {
    PlannedControl {
        id: c.id().to_string(),
        title: c.title.clone(),
        severity: c.severity,
        frameworks: c.frameworks.labels(),
        max_attack_success_rate: c.threshold.max_attack_success_rate,
        detectors: c.detectors.iter().map(|d| d.value.clone()).collect(),
        remediation: c
            .remediation
            .as_ref()
            .map(|r| r.suggestion.trim().to_string()),
    }
}

/// Every request one control makes in this run, in a stable order.
pub fn expand(
    c: &Control,
    run: &RunRecord,
    target_system_prompt: Option<&str>,
) -> Result<Vec<ChatRequest>, String> {
    let Some(probe) = c.probe.as_ref().map(|p| &p.value) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for prompt in probe.prompts.iter().map(|p| &p.value) {
        let mut used: Vec<&str> =
            template::placeholders(prompt).map_err(|e| format!("control `{}`: {e}", c.id()))?;
        if let Some(sp) = probe.system_prompt.as_ref().map(|s| &s.value) {
            used.extend(
                template::placeholders(sp).map_err(|e| format!("control `{}`: {e}", c.id()))?,
            );
        }
        let vars: Vec<(&str, &Vec<String>)> = probe
            .variables
            .iter()
            .filter(|(k, _)| used.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        for combo in combinations(&vars) {
            let lookup = |name: &str| -> Option<String> {
                if let Some(canary) = name.strip_prefix("canary.") {
                    return run.canaries.get(canary).cloned();
                }
                if name == "target.system_prompt" {
                    return Some(target_system_prompt.unwrap_or("").to_string());
                }
                combo.get(name).map(|v| v.to_string())
            };
            let system = match probe.system_prompt.as_ref().map(|s| &s.value) {
                Some(sp) => Some(template::render(sp, lookup)?),
                None => target_system_prompt.map(str::to_string),
            };
            let user = template::render(prompt, lookup)?;
            let mut messages = Vec::with_capacity(2);
            if let Some(s) = system {
                messages.push(ChatMessage::system(s));
            }
            messages.push(ChatMessage::user(user));
            for _ in 0..probe.repeats {
                out.push(ChatRequest {
                    messages: messages.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The cartesian product of variable values; one empty combination when there are none.
fn combinations<'a>(vars: &[(&'a str, &'a Vec<String>)]) -> Vec<BTreeMap<&'a str, &'a str>> {
    let mut out = vec![BTreeMap::new()];
    for (name, values) in vars {
        let mut next = Vec::with_capacity(out.len() * values.len());
        for combo in &out {
            for v in values.iter() {
                let mut c = combo.clone();
                c.insert(*name, v.as_str());
                next.push(c);
            }
        }
        out = next;
    }
    out
}
