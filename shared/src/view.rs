//! Domain types the console shows. The daemon converts its internal types into these;
//! they are part of the wire contract, so changing one means a protocol version bump.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Timestamp(ms)
    }

    /// Milliseconds from `self` to `later`, zero if `later` is earlier.
    pub fn millis_until(self, later: Timestamp) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

/// What a connection may do. Decided by the daemon from peer credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Reads state, subscribes.
    Viewer,
    /// Also starts audits and approves remediation.
    Operator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AgentKind {
    Orchestrator,
    Policy,
    Audit,
    Testing,
    Analysis,
    Learning,
    Monitor,
    Report,
    Remediation,
}

impl AgentKind {
    pub const ALL: [AgentKind; 9] = [
        AgentKind::Orchestrator,
        AgentKind::Policy,
        AgentKind::Audit,
        AgentKind::Testing,
        AgentKind::Analysis,
        AgentKind::Learning,
        AgentKind::Monitor,
        AgentKind::Report,
        AgentKind::Remediation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Orchestrator => "orchestrator",
            AgentKind::Policy => "policy",
            AgentKind::Audit => "audit",
            AgentKind::Testing => "testing",
            AgentKind::Analysis => "analysis",
            AgentKind::Learning => "learning",
            AgentKind::Monitor => "monitor",
            AgentKind::Report => "report",
            AgentKind::Remediation => "remediation",
        }
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentState {
    Starting,
    Running,
    /// Running, but something it depends on is failing.
    Degraded {
        reason: String,
    },
    /// Crashed; the supervisor restarts it after `retry_in_ms`.
    Failed {
        error: String,
        retry_in_ms: u64,
    },
    Stopped,
}

impl AgentState {
    pub fn label(&self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Running => "running",
            AgentState::Degraded { .. } => "degraded",
            AgentState::Failed { .. } => "failed",
            AgentState::Stopped => "stopped",
        }
    }
}

/// One row of the agents table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRow {
    pub kind: AgentKind,
    pub state: AgentState,
    pub last_heartbeat: Timestamp,
    pub tasks_done: u64,
    pub errors: u64,
    pub queue_depth: u64,
    pub restarts: u32,
}

/// Lowercase names in YAML and JSON; bincode encodes the variant index, so the rename does
/// not touch the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of one attempt or one control. Only `Pass` counts as passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    Pass,
    Fail,
    /// The target could not be asked (endpoint error, timeout, bad response).
    Error,
    /// No detector could decide.
    Inconclusive,
    Skipped,
    /// A waiver applies; the underlying verdict is kept next to it.
    Waived,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Skipped => "skipped",
            Verdict::Waived => "waived",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunId(pub u64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    Queued,
    Running,
    /// Stopped on request; resumes where it left off.
    Paused,
    Completed,
    Failed {
        reason: String,
    },
    Cancelled,
}

impl RunState {
    pub fn label(&self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Completed => "completed",
            RunState::Failed { .. } => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            RunState::Completed | RunState::Failed { .. } | RunState::Cancelled
        )
    }
}

/// Counts of control verdicts in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCounts {
    pub pass: u32,
    pub fail: u32,
    pub error: u32,
    pub inconclusive: u32,
    pub skipped: u32,
    pub waived: u32,
}

impl VerdictCounts {
    pub fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Pass => self.pass += 1,
            Verdict::Fail => self.fail += 1,
            Verdict::Error => self.error += 1,
            Verdict::Inconclusive => self.inconclusive += 1,
            Verdict::Skipped => self.skipped += 1,
            Verdict::Waived => self.waived += 1,
        }
    }

    pub fn total(&self) -> u32 {
        self.pass + self.fail + self.error + self.inconclusive + self.skipped + self.waived
    }
}

/// One audit run as the audits table and progress gauge show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSummary {
    pub run: RunId,
    pub policy: Option<String>,
    pub targets: Vec<String>,
    /// A target is the built-in simulated assistant, not a real system.
    pub target_is_demo: bool,
    pub state: RunState,
    pub attempts_total: u32,
    pub attempts_done: u32,
    /// Control-and-target pairs.
    pub controls_total: u32,
    /// Control verdicts, filled as controls complete.
    pub controls: VerdictCounts,
    pub started: Timestamp,
    pub finished: Option<Timestamp>,
}

/// The result of one control against one target in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlResult {
    pub control: String,
    pub target: String,
    pub title: String,
    pub severity: Severity,
    pub verdict: Verdict,
    /// When `verdict` is `Waived`: the verdict the waiver covers.
    pub underlying: Option<Verdict>,
    /// Attempt verdicts behind the control verdict.
    pub attempts: VerdictCounts,
    /// Attack success (failure) rate over decided attempts, with its Wilson 95% interval;
    /// `None` when no attempt was decided.
    pub rate: Option<Rate>,
    /// The largest tolerated rate; the gate compares the interval's upper bound to it.
    pub threshold: f64,
    /// One sentence on why, e.g. the first failing attempt's detector message.
    pub detail: String,
    /// Framework clauses, as `framework:clause` strings.
    pub frameworks: Vec<String>,
}

/// A proportion with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub successes: u32,
    pub trials: u32,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDetail {
    pub summary: AuditSummary,
    pub controls: Vec<ControlResult>,
    /// Where the daemon wrote this run's reports, if it has.
    pub report_dir: Option<String>,
}

/// An alert: something an operator should look at. Alerts form a log with a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Position in the alert log; strictly increasing.
    pub seq: u64,
    pub time: Timestamp,
    pub severity: Severity,
    pub source: AgentKind,
    pub title: String,
    pub detail: String,
    pub run: Option<RunId>,
    pub control: Option<String>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub info: u32,
}

impl AlertCounts {
    pub fn add(&mut self, s: Severity) {
        match s {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Info => self.info += 1,
        }
    }

    pub fn get(&self, s: Severity) -> u32 {
        match s {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Info => self.info,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DaemonState {
    Starting,
    Running,
    Stopping,
}

impl DaemonState {
    pub fn label(&self) -> &'static str {
        match self {
            DaemonState::Starting => "starting",
            DaemonState::Running => "running",
            DaemonState::Stopping => "stopping",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub name: String,
    pub kind: String,
    pub is_demo: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub host: String,
    pub pid: u32,
    pub state: DaemonState,
    pub started: Timestamp,
    pub data_dir: String,
    pub socket: String,
    /// Controls in the active policy set.
    pub controls_loaded: u32,
    /// Policy files the active set came from.
    pub policy_files: u32,
    /// The last policy load problem, if the active set is older than the files on disk.
    pub policy_error: Option<String>,
    /// Counts successful policy loads since start; a change means a new active set.
    pub policy_generation: u64,
    pub targets: Vec<TargetInfo>,
    /// Alerts raised since the daemon's data dir was created, by severity.
    pub alerts: AlertCounts,
}
