//! The active targets and policy set, swapped as a whole on a successful reload.
//!
//! The first load and every reload go through [`Catalog::reload`]. A reload that finds
//! problems keeps the previous set, raises an alert naming the file and line, and
//! shows the problem in the daemon status. A reload that succeeds reports which files
//! changed, so the audits they affect can be started.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aura_policy::{Diagnostics, PolicySet, TargetSpec, load_policies, load_targets};
use aura_proto::view::{AgentKind, Severity};
use tokio::sync::watch;

use crate::aggregator::{AlertDraft, ViewHandle};
use crate::config::DaemonConfig;
use crate::eventlog::EventLog;
use crate::evidence::Digest;
use crate::targets::{TargetDefaults, TargetRegistry};

#[derive(Clone)]
pub struct Catalog {
    policies: watch::Sender<Arc<PolicySet>>,
    targets: watch::Sender<Arc<TargetRegistry>>,
    state: Arc<Mutex<State>>,
    defaults: TargetDefaults,
}

#[derive(Default)]
struct State {
    /// Content digest of every file of the active set.
    digests: BTreeMap<PathBuf, Digest>,
    generation: u64,
}

/// What a successful reload loaded and what changed since the previous one.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub controls: usize,
    pub files: usize,
    pub targets: usize,
    pub generation: u64,
    /// Policy files added or changed (not on the first load).
    pub changed_files: Vec<PathBuf>,
    /// Targets whose file was added or changed (not on the first load).
    pub changed_targets: Vec<String>,
}

impl Catalog {
    pub fn new(defaults: TargetDefaults) -> Self {
        Self {
            policies: watch::channel(Arc::new(PolicySet::default())).0,
            targets: watch::channel(Arc::new(TargetRegistry::default())).0,
            state: Arc::default(),
            defaults,
        }
    }

    /// Follows the active policy set: changes with every successful reload.
    pub fn subscribe(&self) -> watch::Receiver<Arc<PolicySet>> {
        self.policies.subscribe()
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
        events: &dyn EventLog,
        reason: &str,
    ) -> Result<Loaded, Diagnostics> {
        let (policies, specs) = match load_specs(config) {
            Ok(v) => v,
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
                    title: format!(
                        "policy reload rejected: {}",
                        first.lines().next().unwrap_or("")
                    ),
                    detail: diags.to_string(),
                    run: None,
                    control: None,
                    target: None,
                });
                let payload = serde_json::json!({
                    "reason": reason,
                    "problems": diags.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                });
                if let Err(e) = events.append("policy", "PolicyRejected", &payload) {
                    tracing::error!(error = %e, "could not record the rejected reload");
                }
                view.daemon(move |d| d.policy_error = Some(summary));
                return Err(diags);
            }
        };
        let previous = self.targets();
        let registry = TargetRegistry::build(specs.clone(), &self.defaults, Some(&previous));
        for problem in registry.problems() {
            tracing::warn!(%problem, "target unavailable");
        }
        let mut digests = BTreeMap::new();
        let target_files: Vec<(String, PathBuf)> = specs
            .iter()
            .map(|t| (t.name().to_string(), t.source.clone()))
            .collect();
        for f in policies
            .files
            .iter()
            .chain(target_files.iter().map(|(_, f)| f))
        {
            if let Ok(bytes) = std::fs::read(f) {
                digests.insert(f.clone(), Digest::of(&bytes));
            }
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let first = st.generation == 0;
        let changed = |f: &PathBuf| !first && st.digests.get(f) != digests.get(f);
        let changed_files: Vec<PathBuf> = policies
            .files
            .iter()
            .filter(|f| changed(f))
            .cloned()
            .collect();
        let changed_targets: Vec<String> = target_files
            .iter()
            .filter(|(_, f)| changed(f))
            .map(|(n, _)| n.clone())
            .collect();
        st.generation += 1;
        st.digests = digests;
        let loaded = Loaded {
            controls: policies.controls.len(),
            files: policies.files.len(),
            targets: registry.infos().len(),
            generation: st.generation,
            changed_files,
            changed_targets,
        };
        drop(st);
        let infos = registry.infos();
        self.policies.send_replace(Arc::new(policies));
        self.targets.send_replace(Arc::new(registry));
        let l = loaded.clone();
        view.daemon(move |d| {
            d.controls_loaded = l.controls as u32;
            d.policy_files = l.files as u32;
            d.policy_error = None;
            d.policy_generation = l.generation;
            d.targets = infos;
        });
        let payload = serde_json::json!({
            "reason": reason,
            "generation": loaded.generation,
            "controls": loaded.controls,
            "files": loaded.files,
            "targets": loaded.targets,
            "changed_files": loaded.changed_files,
            "changed_targets": loaded.changed_targets,
        });
        if let Err(e) = events.append("policy", "PolicyLoaded", &payload) {
            tracing::error!(error = %e, "could not record the policy load");
        }
        tracing::info!(
            reason,
            generation = loaded.generation,
            controls = loaded.controls,
            files = loaded.files,
            targets = loaded.targets,
            changed_files = loaded.changed_files.len(),
            changed_targets = loaded.changed_targets.len(),
            "policies loaded"
        );
        Ok(loaded)
    }
}

/// Loads and validates targets and policies together, as `aurad check-config` does.
pub fn load_specs(config: &DaemonConfig) -> Result<(PolicySet, Vec<TargetSpec>), Diagnostics> {
    let targets = load_targets(&config.targets_dir);
    let policies = load_policies(&config.policies_dir);
    match (targets, policies) {
        (Ok(t), Ok(p)) => {
            let cross = p.check_against(&t);
            if !cross.is_empty() {
                return Err(cross);
            }
            Ok((p, t))
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
