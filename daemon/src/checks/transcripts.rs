//! Runtime controls over a `transcripts` target: JSONL logs of production conversations.
//! Each record in the window is judged by the control's detectors; the control fails when
//! the share of failing records exceeds its rate. A line that is not a JSON record is
//! skipped and counted, and the rest of the file is still read.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use aura_policy::TargetSpec;
use aura_policy::control::{Inspect, RuntimeSpec};
use aura_policy::record::parse_date;
use aura_proto::view::{Timestamp, Verdict, VerdictCounts};
use serde_json::Value;

use super::Checked;
use crate::detectors::{self, Detector, Input};
use crate::targets::{ChatMessage, ChatRequest};

/// One exchange from the log.
#[derive(Debug, Clone)]
pub struct Record {
    pub input: String,
    pub output: String,
    pub session: Option<String>,
    pub time: Option<Timestamp>,
}

/// What reading the log found.
#[derive(Debug, Default)]
pub struct Read {
    pub records: Vec<Record>,
    /// Lines that were not a JSON object with the mapped fields: (file, line number).
    pub broken: Vec<(PathBuf, usize)>,
}

/// Reads every `*.jsonl` (or the one file) at the target's path, records in order.
pub fn read(target: &TargetSpec) -> Result<Read, String> {
    let path = target
        .path
        .as_ref()
        .map(|p| target.resolve(p))
        .ok_or("the transcripts target has no path")?;
    let mut files = Vec::new();
    if path.is_dir() {
        for e in std::fs::read_dir(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "jsonl") {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path);
    }
    let f = &target.fields;
    let mut out = Read::default();
    for file in files {
        read_file(&file, f, &mut out)?;
    }
    Ok(out)
}

fn field(v: &Value, key: &str) -> Option<String> {
    let found = if key.starts_with('/') {
        v.pointer(key)
    } else {
        v.get(key)
    }?;
    Some(match found {
        Value::String(s) => s.clone(),
        Value::Null => return None,
        other => other.to_string(),
    })
}

fn read_file(
    file: &Path,
    f: &aura_policy::target::TranscriptFields,
    out: &mut Read,
) -> Result<(), String> {
    let reader = BufReader::new(
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?,
    );
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            let input = field(&v, &f.input);
            let output = field(&v, &f.output);
            (input.is_some() || output.is_some()).then(|| Record {
                input: input.unwrap_or_default(),
                output: output.unwrap_or_default(),
                session: field(&v, &f.session),
                time: field(&v, &f.timestamp).and_then(|t| parse_date(&t, false).ok()),
            })
        });
        match record {
            Some(r) => out.records.push(r),
            None => out.broken.push((file.to_path_buf(), i + 1)),
        }
    }
    Ok(())
}

/// Judges the records in the control's window.
pub async fn evaluate(
    spec: &RuntimeSpec,
    detectors: &[Detector],
    target: &TargetSpec,
    now: Timestamp,
) -> Checked {
    let read = match tokio::task::spawn_blocking({
        let t = target.clone();
        move || read(&t)
    })
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Checked::new(Verdict::Error, e),
        Err(e) => return Checked::new(Verdict::Error, format!("reading the log failed: {e}")),
    };
    let since = now.0.saturating_sub(spec.window.as_millis() as u64);
    let mut seen_sessions = BTreeSet::new();
    let mut counts = VerdictCounts::default();
    let mut first_failure = None;
    for r in &read.records {
        // Records without a time are judged: better counted than silently dropped.
        if r.time.is_some_and(|t| t.0 < since) {
            continue;
        }
        if spec.first_turn_only {
            let Some(s) = &r.session else { continue };
            if !seen_sessions.insert(s.clone()) {
                continue;
            }
        }
        let (judged_input, judged_output) = match spec.inspect {
            Inspect::Input => (r.input.as_str(), r.input.as_str()),
            Inspect::Output => (r.input.as_str(), r.output.as_str()),
            Inspect::Both => (r.input.as_str(), r.output.as_str()),
        };
        let request = ChatRequest {
            messages: vec![ChatMessage::user(judged_input)],
        };
        let mut outcomes = Vec::new();
        for d in detectors {
            let input = Input {
                request: &request,
                response: judged_output,
                latency: Default::default(),
                tool_calls: &[],
                canaries: &[],
            };
            outcomes.push(d.evaluate(input).await);
            if spec.inspect == Inspect::Both {
                let input = Input {
                    request: &request,
                    response: judged_input,
                    latency: Default::default(),
                    tool_calls: &[],
                    canaries: &[],
                };
                outcomes.push(d.evaluate(input).await);
            }
        }
        let (v, note) = detectors::combine(&outcomes);
        counts.add(v);
        if v == Verdict::Fail && first_failure.is_none() {
            first_failure = Some(note);
        }
    }
    let judged = counts.pass + counts.fail;
    let broken = if read.broken.is_empty() {
        String::new()
    } else {
        format!(
            "; {} unreadable line(s) skipped (first: {}:{})",
            read.broken.len(),
            read.broken[0].0.display(),
            read.broken[0].1
        )
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
    out
}
