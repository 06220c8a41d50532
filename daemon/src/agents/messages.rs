//! The typed messages on each agent's topic. A step message names a run; the run's
//! stored phase says what is left, so a redelivered message does only that.

use aura_proto::view::RunId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OrchestratorMsg {
    Start { run: RunId },
    Planned { run: RunId },
    Executed { run: RunId },
    Analyzed { run: RunId },
    Reported { run: RunId },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TestingMsg {
    Plan { run: RunId },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AuditMsg {
    Execute { run: RunId },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AnalysisMsg {
    Analyze { run: RunId },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReportMsg {
    Render { run: RunId },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemediationMsg {
    Plan { run: RunId },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LearningMsg {
    Learn { run: RunId },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PolicyMsg {
    /// Re-read targets and policies; `reason` is logged and recorded.
    Reload { reason: String },
}

/// For agents that take no messages (they work on a timer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NoMessages {}

/// The correlation id of everything about one run.
pub fn correlation(run: RunId) -> String {
    format!("run-{run}")
}
