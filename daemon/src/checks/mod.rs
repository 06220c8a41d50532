//! Controls that are not answered by prompts: documents, production transcripts and
//! attestations. Each returns a verdict with its reason, like a probe control does.

pub mod attestation;
pub mod documents;
pub mod log_integrity;
pub mod read_index;
pub mod record_memo;
pub mod transcript_log;
pub mod transcripts;

use aura_proto::view::{Verdict, VerdictCounts};

/// A non-probe control's result.
#[derive(Debug, Clone)]
pub struct Checked {
    pub verdict: Verdict,
    pub detail: String,
    /// Items judged (documents or records), by verdict.
    pub counts: VerdictCounts,
}

impl Checked {
    pub fn new(verdict: Verdict, detail: impl Into<String>) -> Self {
        let mut counts = VerdictCounts::default();
        counts.add(verdict);
        Self {
            verdict,
            detail: detail.into(),
            counts,
        }
    }
}
