//! Attestation controls: closed by a recorded attestation for the target that is not
//! older than the control allows, has not expired, and, where evidence is required,
//! names evidence files whose SHA-256 still matches.

use aura_policy::PolicySet;
use aura_policy::control::AttestationSpec;
use aura_proto::view::{Timestamp, Verdict};

use super::Checked;
use crate::evidence::Digest;

pub fn evaluate(
    control: &str,
    spec: &AttestationSpec,
    target: &str,
    policies: &PolicySet,
    now: Timestamp,
) -> Checked {
    let mut latest = policies
        .attestations
        .iter()
        .filter(|a| a.covers(control, target))
        .collect::<Vec<_>>();
    latest.sort_by_key(|a| std::cmp::Reverse(a.at));
    let Some(a) = latest.first() else {
        return Checked::new(
            Verdict::Fail,
            format!(
                "no attestation recorded for {target}: \"{}\"",
                spec.statement.trim()
            ),
        );
    };
    let age_limit = a.at.0 + spec.max_age.as_millis() as u64;
    if now.0 > age_limit || a.expires.is_some_and(|e| now > e) {
        return Checked::new(
            Verdict::Fail,
            format!("the attestation by {} has expired; record a new one", a.by),
        );
    }
    if spec.evidence_required && a.evidence.is_empty() {
        return Checked::new(
            Verdict::Fail,
            format!("the attestation by {} names no evidence", a.by),
        );
    }
    for e in &a.evidence {
        let path = a
            .file
            .parent()
            .map(|d| d.join(&e.path))
            .unwrap_or_else(|| e.path.clone());
        match std::fs::read(&path) {
            Ok(bytes) if Digest::of(&bytes).hex().eq_ignore_ascii_case(&e.sha256) => {}
            Ok(_) => {
                return Checked::new(
                    Verdict::Fail,
                    format!(
                        "evidence {} does not match its recorded SHA-256",
                        e.path.display()
                    ),
                );
            }
            Err(err) => {
                return Checked::new(
                    Verdict::Fail,
                    format!("evidence {} cannot be read: {err}", e.path.display()),
                );
            }
        }
    }
    Checked::new(
        Verdict::Pass,
        format!(
            "attested by {} ({} evidence file(s))",
            a.by,
            a.evidence.len()
        ),
    )
}
