//! Runtime controls over a `transcripts` target: each record in the window is judged by
//! the control's detectors; the control fails when the share of failing records exceeds
//! its rate, when a zero-tolerance detector fails one, or when the log itself is not
//! intact (`runtime.integrity`).

use std::collections::BTreeSet;

use aura_policy::TargetSpec;
use aura_policy::control::{Inspect, RuntimeSpec};
use aura_proto::view::{Timestamp, Verdict, VerdictCounts};

use super::read_index::ReadIndex;
use super::record_memo::{Judged, RecordMemo};
use super::transcript_log::{Record, read};
use super::{Checked, log_integrity};
use crate::detectors::{self, Detector, Input};
use crate::targets::{ChatMessage, ChatRequest};

/// A detector judging records, and whether one failure of it fails the control.
pub struct RecordDetector {
    pub detector: Detector,
    pub zero_tolerance: bool,
}

/// Runs the detectors on one record. The target's declared system prompt, if any, is
/// what production ran under: `prompt_leak` compares answers with it.
async fn judge_record(
    spec: &RuntimeSpec,
    detectors: &[RecordDetector],
    system_prompt: Option<&str>,
    r: &Record,
) -> Judged {
    let (judged_input, judged_output) = match spec.inspect {
        Inspect::Input => (r.input.as_str(), r.input.as_str()),
        Inspect::Output | Inspect::Both => (r.input.as_str(), r.output.as_str()),
    };
    let request = ChatRequest {
        messages: system_prompt
            .map(ChatMessage::system)
            .into_iter()
            .chain([ChatMessage::user(judged_input)])
            .collect(),
    };
    let sides: &[&str] = if spec.inspect == Inspect::Both {
        &[judged_output, judged_input]
    } else {
        &[judged_output]
    };
    let mut outcomes = Vec::new();
    let mut intolerable = None;
    for d in detectors {
        for response in sides {
            let input = Input {
                request: &request,
                response,
                latency: Default::default(),
                tool_calls: &[],
                canaries: &[],
            };
            let outcome = d.detector.evaluate(input).await;
            if d.zero_tolerance && outcome.verdict == Verdict::Fail {
                intolerable.get_or_insert_with(|| outcome.note.clone());
            }
            outcomes.push(outcome);
        }
    }
    let (verdict, note) = detectors::combine(&outcomes);
    Judged {
        verdict,
        note,
        intolerable,
    }
}

/// Judges the records in the control's window, reusing the verdicts `memo` holds for
/// records judged by earlier runs.
pub async fn evaluate(
    spec: &RuntimeSpec,
    detectors: &[RecordDetector],
    target: &TargetSpec,
    system_prompt: Option<&str>,
    now: Timestamp,
    memo: Option<&RecordMemo>,
    index: Option<ReadIndex>,
) -> Checked {
    let since = now.0.saturating_sub(spec.window.as_millis() as u64);
    let read = match tokio::task::spawn_blocking({
        let t = target.clone();
        move || read(&t, since, index.as_ref())
    })
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Checked::new(Verdict::Error, e),
        Err(e) => return Checked::new(Verdict::Error, format!("reading the log failed: {e}")),
    };
    let mut seen_sessions = BTreeSet::new();
    let mut counts = VerdictCounts::default();
    let mut first_failure = None;
    // Records failed by a zero-tolerance detector, and the first such failure.
    let mut intolerable = 0u64;
    let mut first_intolerable = None;
    for r in &read.records {
        if spec.first_turn_only {
            let Some(s) = &r.session else { continue };
            if !seen_sessions.insert(s.clone()) {
                continue;
            }
        }
        // Untimed records cannot be pruned from the memo, so they are judged each run.
        let remembered = memo
            .zip(r.time)
            .and_then(|(m, t)| m.get(t, &r.input, &r.output));
        let judged = match remembered {
            Some(j) => j,
            None => {
                let j = judge_record(spec, detectors, system_prompt, r).await;
                if let (Some(m), Some(t)) = (memo, r.time) {
                    m.put(t, &r.input, &r.output, &j);
                }
                j
            }
        };
        if let Some(note) = judged.intolerable {
            intolerable += 1;
            first_intolerable.get_or_insert(note);
        }
        let (v, note) = (judged.verdict, judged.note);
        counts.add(v);
        if v == Verdict::Fail && first_failure.is_none() {
            first_failure = Some(note);
        }
    }
    if let Some(m) = memo {
        m.prune(since);
    }
    let judged = counts.pass + counts.fail;
    let broken = match &read.first_broken {
        None => String::new(),
        Some((file, line)) => format!(
            "; {} unreadable line(s) skipped (first: {}:{line})",
            read.broken,
            file.display()
        ),
    };
    let mut out = if judged == 0 {
        Checked::new(
            Verdict::Inconclusive,
            format!(
                "no records in the last {}{broken}",
                humantime::format_duration(spec.window)
            ),
        )
    } else {
        let rate = counts.fail as f64 / judged as f64;
        let summary = format!(
            "{} of {judged} record(s) failed ({:.1}%)",
            counts.fail,
            rate * 100.0
        );
        if counts.fail > 0 && rate > spec.max_rate {
            Checked::new(
                Verdict::Fail,
                format!(
                    "{summary}, above {:.1}%; first: {}{broken}",
                    spec.max_rate * 100.0,
                    first_failure.unwrap_or_default()
                ),
            )
        } else {
            Checked::new(Verdict::Pass, format!("{summary}{broken}"))
        }
    };
    out.counts = counts;
    if let Some(note) = first_intolerable {
        out.verdict = Verdict::Fail;
        out.detail = format!(
            "{intolerable} record(s) failed a zero-tolerance detector (first: {note}); {}",
            out.detail
        );
    }
    if let Some(integrity) = &spec.integrity {
        let found = log_integrity::check(integrity, &read, target.fields.sequence.is_some(), now);
        if !found.problems.is_empty() {
            out.verdict = Verdict::Fail;
            out.detail = format!("{}; {}", found.summary(), out.detail);
        }
        for note in found.notes {
            out.detail.push_str(&format!("; {note}"));
        }
    }
    out
}
