//! An audit run as the daemon keeps it: the records checkpointed in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aura_policy::DetectorSpec;
use aura_policy::control::ControlKind;
use aura_proto::view::{
    AuditSummary, ControlResult, Role, RunId, RunState, Severity, Timestamp, Verdict, VerdictCounts,
};
use serde::{Deserialize, Serialize};

use crate::evidence::Digest;
use crate::generate::Variant;
use crate::targets::ChatRequest;

/// Where a run is in its workflow. Each phase belongs to one agent; a redelivered step
/// message finds the phase and does only what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Planning,
    Executing,
    Analyzing,
    Reporting,
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Requester {
    pub uid: Option<u32>,
    pub role: Role,
    /// Who or what asked: `operator`, `watcher`, `scheduler`, `remediation`.
    #[serde(default)]
    pub via: String,
}

/// What was asked for, kept so a resumed run plans the same way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Selection {
    pub policy: Option<String>,
    pub controls: Vec<String>,
}

impl Selection {
    pub fn admits(&self, c: &aura_policy::Control) -> bool {
        self.policy
            .as_deref()
            .is_none_or(|s| c.policy_name() == s || c.id() == s)
            && (self.controls.is_empty() || self.controls.iter().any(|id| id == c.id()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub targets: Vec<String>,
    pub target_is_demo: bool,
    pub selection: Selection,
    pub seed: u64,
    pub no_cache: bool,
    /// Cap on attempts in flight per target for this run.
    pub concurrency: Option<u32>,
    pub state: RunState,
    pub phase: Phase,
    pub attempts_total: u32,
    pub attempts_done: u32,
    pub controls_total: u32,
    pub controls: VerdictCounts,
    pub started: Timestamp,
    pub finished: Option<Timestamp>,
    /// Canary name -> value planted in this run.
    pub canaries: BTreeMap<String, String>,
    pub report_dir: Option<PathBuf>,
    pub requested_by: Requester,
    /// The controls per target as they were when the run was planned, so a policy
    /// reload during the run changes nothing in it.
    #[serde(default)]
    pub plan: Vec<PlannedControl>,
    /// `control@target` pairs already alerted on (alerts are raised once).
    #[serde(default)]
    pub alerted: BTreeSet<String>,
    /// The attempts were removed by `[audit] attempt_retention`; the results stay.
    #[serde(default)]
    pub attempts_pruned: bool,
}

impl RunRecord {
    pub fn summary(&self) -> AuditSummary {
        AuditSummary {
            run: self.id,
            policy: self.selection.policy.clone(),
            targets: self.targets.clone(),
            target_is_demo: self.target_is_demo,
            state: self.state.clone(),
            attempts_total: self.attempts_total,
            attempts_done: self.attempts_done,
            controls_total: self.controls_total,
            controls: self.controls.clone(),
            started: self.started,
            finished: self.finished,
        }
    }

    pub fn planned(&self, control: &str, target: &str) -> Option<&PlannedControl> {
        self.plan
            .iter()
            .find(|p| p.id == control && p.target == target)
    }
}

/// One control against one target, as planned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedControl {
    pub id: String,
    pub target: String,
    pub title: String,
    pub kind: ControlKind,
    pub severity: Severity,
    pub frameworks: Vec<String>,
    pub max_attack_success_rate: f64,
    pub min_attempts: u32,
    pub detectors: Vec<DetectorSpec>,
    pub remediation: Option<String>,
}

/// One prompt sent (or to send) to a target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub run: RunId,
    pub index: u32,
    pub target: String,
    pub control: String,
    pub request: ChatRequest,
    pub variant: Variant,
    /// Identifies the request (and keys the response cache).
    pub request_digest: Digest,
    /// `None` until the attempt completed; set exactly once.
    pub outcome: Option<AttemptOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptOutcome {
    pub verdict: Verdict,
    /// The full answer, in the evidence store.
    pub response: Option<Digest>,
    /// The start of the answer, for reports.
    pub excerpt: String,
    /// The whole answer on its way to the evidence store; never stored here.
    #[serde(skip)]
    pub full_text: Option<String>,
    /// Why the target gave no answer (for `error`), or the detectors' reason.
    pub note: String,
    /// For counterfactual groups: the decision the answer expresses.
    #[serde(default)]
    pub decision: Option<String>,
    pub latency_ms: u64,
    pub from_cache: bool,
    /// Requests actually sent, retries included.
    pub sent: u32,
    pub finished: Timestamp,
}

/// A control's result in a run; the view type is also the stored one.
pub type ControlRecord = ControlResult;
