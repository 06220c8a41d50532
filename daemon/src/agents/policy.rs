//! The Policy agent: reloads targets and policies when asked (the folder watcher,
//! SIGHUP, a request), through the same path as the first load, and starts the audits a
//! successful change affects: the changed controls that run `on_change`, and the
//! controls that run `on_target_change` for changed targets.

use std::collections::{BTreeMap, BTreeSet};

use aura_policy::control::Trigger;
use aura_proto::view::{AgentKind, Role};
use aura_proto::wire::StartAudit;

use super::messages::PolicyMsg;
use super::{Agent, AgentError, start_audit};
use crate::bus::Envelope;
use crate::catalog::Loaded;
use crate::run::Requester;
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
                .reload(&svc2.config, &svc2.view, &*svc2.events, &reason2)
        })
        .await
        .map_err(|e| AgentError::Failed(format!("reload task failed: {e}")))?;
        match result {
            Ok(loaded) => trigger(svc, &loaded).await,
            // A rejected reload is the policy author's problem, already alerted; the
            // agent itself is healthy.
            Err(d) => {
                tracing::warn!(%reason, problems = d.len(), "reload kept the previous policy set")
            }
        }
        Ok(())
    }
}

/// Starts one audit per affected target, of exactly the affected controls.
async fn trigger(svc: &Services, loaded: &Loaded) {
    if loaded.changed_files.is_empty() && loaded.changed_targets.is_empty() {
        return;
    }
    let policies = svc.catalog.policies();
    let registry = svc.catalog.targets();
    let mut per_target: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in registry.entries() {
        if entry.spec.kind.answers_prompts() && entry.provider.is_err() {
            continue;
        }
        let target_changed = loaded
            .changed_targets
            .iter()
            .any(|t| t == entry.spec.name());
        for c in policies
            .controls
            .iter()
            .filter(|c| c.applies_to(&entry.spec))
        {
            let control_changed =
                loaded.changed_files.contains(&c.source) && c.triggers.contains(&Trigger::OnChange);
            let by_target = target_changed && c.triggers.contains(&Trigger::OnTargetChange);
            if control_changed || by_target {
                per_target
                    .entry(entry.spec.name().to_string())
                    .or_default()
                    .insert(c.id().to_string());
            }
        }
    }
    for (target, controls) in per_target {
        let req = StartAudit {
            targets: vec![target.clone()],
            controls: controls.into_iter().collect(),
            ..StartAudit::default()
        };
        let who = Requester {
            uid: None,
            role: Role::Operator,
            via: "watcher".into(),
        };
        match start_audit(svc, req, who).await {
            Ok(run) => {
                tracing::info!(run = %run, %target, "audit started by a policy or target change")
            }
            Err(e) => {
                tracing::warn!(%target, error = %e.message, "could not start the audit a change calls for")
            }
        }
    }
}
