//! The active targets and policy set, swapped as a whole on a successful reload.
//!
//! The first load and every reload go through [`Catalog::reload`]. A reload that finds
//! problems keeps the previous set, raises an alert naming the file and line, and
//! shows the problem in the daemon status.

use std::sync::Arc;

use aura_policy::{Diagnostics, PolicySet, load_policies, load_targets};
use aura_proto::view::{AgentKind, Severity};
use tokio::sync::watch;

use crate::aggregator::{AlertDraft, ViewHandle};
use crate::config::DaemonConfig;
use crate::targets::{TargetDefaults, TargetRegistry};

#[derive(Clone)]
pub struct Catalog {
    policies: watch::Sender<Arc<PolicySet>>,
    targets: watch::Sender<Arc<TargetRegistry>>,
}

/// What a successful reload loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub controls: usize,
    pub files: usize,
    pub targets: usize,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    pub fn new() -> Self {
        Self {
            policies: watch::channel(Arc::new(PolicySet::default())).0,
            targets: watch::channel(Arc::new(TargetRegistry::default())).0,
        }
    }

    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.borrow().clone()
    }

    pub fn targets(&self) -> Arc<TargetRegistry> {
        self.targets.borrow().clone()
    }

    /// Loads targets and policies from disk and swaps them in if both are valid.
    pub fn reload(
        &self,
        config: &DaemonConfig,
        view: &ViewHandle,
        reason: &str,
    ) -> Result<Loaded, Diagnostics> {
        match load_all(config) {
            Ok((policies, registry)) => {
                let loaded = Loaded {
                    controls: policies.controls.len(),
                    files: policies.files.len(),
                    targets: registry.infos().len(),
                };
                for problem in registry.problems() {
                    tracing::warn!(%problem, "target unavailable");
                }
                let infos = registry.infos();
                self.policies.send_replace(Arc::new(policies));
                self.targets.send_replace(Arc::new(registry));
                let l = loaded.clone();
                view.daemon(move |d| {
                    d.controls_loaded = l.controls as u32;
                    d.policy_files = l.files as u32;
                    d.policy_error = None;
                    d.targets = infos;
                });
                tracing::info!(
                    reason,
                    controls = loaded.controls,
                    files = loaded.files,
                    targets = loaded.targets,
                    "policies loaded"
                );
                Ok(loaded)
            }
            Err(diags) => {
                let first = diags
                    .iter()
                    .next()
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                let summary = format!(
                    "{} problem(s); the previous policy set stays active. First: {first}",
                    diags.len()
                );
                tracing::error!(reason, problems = diags.len(), first = %first, "policy reload rejected");
                let _ = view.raise(AlertDraft {
                    severity: Severity::High,
                    source: AgentKind::Policy,
                    title: "policy reload rejected".into(),
                    detail: diags.to_string(),
                    run: None,
                    control: None,
                    target: None,
                });
                view.daemon(move |d| d.policy_error = Some(summary));
                Err(diags)
            }
        }
    }
}

/// Loads and validates targets and policies together, as `aurad check-config` does.
pub fn load_all(config: &DaemonConfig) -> Result<(PolicySet, TargetRegistry), Diagnostics> {
    let targets = load_targets(&config.targets_dir);
    let policies = load_policies(&config.policies_dir);
    match (targets, policies) {
        (Ok(t), Ok(p)) => {
            let cross = p.check_against(&t);
            if !cross.is_empty() {
                return Err(cross);
            }
            let defaults = TargetDefaults {
                max_response_bytes: config.audit.max_response_bytes,
            };
            Ok((p, TargetRegistry::build(t, &defaults)))
        }
        (t, p) => {
            let mut all = Diagnostics::default();
            for d in t.err().into_iter().chain(p.err()) {
                all.0.extend(d.0);
            }
            Err(all)
        }
    }
}
