//! An audit run as the daemon keeps it: the records checkpointed in the store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aura_policy::DetectorSpec;
use aura_proto::view::{
    AuditSummary, ControlResult, Role, RunId, RunState, Severity, Timestamp, Verdict, VerdictCounts,
};
use serde::{Deserialize, Serialize};

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub target: String,
    pub target_is_demo: bool,
    pub policy: Option<String>,
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
    /// The controls as they were when the run was planned, so a policy reload during the
    /// run changes nothing in it.
    #[serde(default)]
    pub plan: Vec<PlannedControl>,
    /// Alerts for this run's failures have been raised (they are raised once).
    #[serde(default)]
    pub alerted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedControl {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub frameworks: Vec<String>,
    pub max_attack_success_rate: f64,
    pub detectors: Vec<DetectorSpec>,
    pub remediation: Option<String>,
}

impl RunRecord {
    pub fn summary(&self) -> AuditSummary {
        AuditSummary {
            run: self.id,
            policy: self.policy.clone(),
            target: self.target.clone(),
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
}

/// One prompt sent (or to send) to the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub run: RunId,
    pub index: u32,
    pub control: String,
    pub request: ChatRequest,
    /// `None` until the attempt completed; set exactly once.
    pub outcome: Option<AttemptOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptOutcome {
    pub verdict: Verdict,
    /// The answer, when the target gave one.
    pub response: Option<String>,
    /// Why the target gave none (for `error`), or the detectors' reason.
    pub note: String,
    pub latency_ms: u64,
    pub finished: Timestamp,
}

/// A control's result in a run; the view type is also the stored one.
pub type ControlRecord = ControlResult;
