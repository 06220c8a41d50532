//! Runtime controls over a `transcripts` target: JSONL logs of production conversations.
//! Each record in the window is judged by the control's detectors; the control fails when
//! the share of failing records exceeds its rate. A line that is not a JSON record is
//! skipped and counted, and the rest of the file is still read. Logs are streamed and
//! only the window's records are kept, so a log of any size is judged in memory
//! proportional to its window.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use aura_policy::TargetSpec;
use aura_policy::control::{Inspect, LogField, RuntimeSpec};
use aura_policy::record::parse_date;
use aura_proto::view::{Timestamp, Verdict, VerdictCounts};
use serde_json::Value;

use super::record_memo::{Judged, RecordMemo};
use super::{Checked, log_integrity};
use crate::detectors::{self, Detector, Input};
use crate::targets::{ChatMessage, ChatRequest};

/// A detector judging records, and whether one failure of it fails the control.
pub struct RecordDetector {
    pub detector: Detector,
    pub zero_tolerance: bool,
}

/// One exchange from the log.
#[derive(Debug, Clone)]
pub struct Record {
    pub input: String,
    pub output: String,
    pub session: Option<String>,
    pub time: Option<Timestamp>,
    pub sequence: Option<u64>,
    /// Mapped fields absent, null or unreadable in this record.
    pub missing: Vec<LogField>,
    /// Where it is: an index into [`Read::files`] and the line number.
    pub file: usize,
    pub line: usize,
}

/// What reading the log found.
#[derive(Debug, Default)]
pub struct Read {
    /// The log's files, in order.
    pub files: Vec<PathBuf>,
    /// The records in the window (and those without a time), in order.
    pub records: Vec<Record>,
    /// The first record of the log, and the last one before the window: what the
    /// integrity checks compare the window with.
    pub first: Option<Record>,
    pub before_window: Option<Record>,
    /// Lines that were not a JSON object with the mapped fields.
    pub broken: usize,
    /// The first of them: (file, line number).
    pub first_broken: Option<(PathBuf, usize)>,
}

/// How much of a file to read.
#[derive(Clone, Copy, PartialEq)]
enum Extent {
    Whole,
    /// Only its first record: the start of the log, for the retention check.
    FirstRecord,
    Skip,
}

/// Reads every `*.jsonl` (or the one file) at the target's path, in order, keeping the
/// records at or after `since` (ms since the epoch). Records without a time are kept:
/// better judged than silently dropped.
///
/// Files of a folder last modified before `since` hold no record of the window, so a
/// year of rotated daily logs is not re-read on every run: only the latest of them is
/// (its last record leads into the window), and the first record of the first file
/// (the start of the log).
pub fn read(target: &TargetSpec, since: u64) -> Result<Read, String> {
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
    let modified: Vec<Option<u64>> = files.iter().map(|p| modified_ms(p)).collect();
    let stale = |i: usize| modified[i].is_some_and(|m| m < since);
    let latest_stale = (0..files.len())
        .filter(|&i| stale(i))
        .max_by_key(|&i| modified[i]);
    let f = &target.fields;
    let mut out = Read::default();
    for (i, file) in files.into_iter().enumerate() {
        let extent = match i {
            _ if !stale(i) || Some(i) == latest_stale => Extent::Whole,
            0 => Extent::FirstRecord,
            _ => Extent::Skip,
        };
        if extent != Extent::Skip {
            read_file(&file, f, since, extent, &mut out)?;
        }
        out.files.push(file);
    }
    Ok(out)
}

fn modified_ms(p: &Path) -> Option<u64> {
    let t = std::fs::metadata(p).ok()?.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
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
    since: u64,
    extent: Extent,
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
            if input.is_none() && output.is_none() {
                return None;
            }
            let session = field(&v, &f.session);
            let time = field(&v, &f.timestamp).and_then(|t| parse_date(&t, false).ok());
            let sequence = f
                .sequence
                .as_ref()
                .and_then(|k| field(&v, k))
                .and_then(|n| n.parse().ok());
            let missing = [
                (LogField::Input, input.is_none()),
                (LogField::Output, output.is_none()),
                (LogField::Session, session.is_none()),
                (LogField::Timestamp, time.is_none()),
                (LogField::Sequence, sequence.is_none()),
            ]
            .into_iter()
            .filter_map(|(f, absent)| absent.then_some(f))
            .collect();
            Some(Record {
                input: input.unwrap_or_default(),
                output: output.unwrap_or_default(),
                session,
                time,
                sequence,
                missing,
                file: out.files.len(),
                line: i + 1,
            })
        });
        match record {
            Some(r) if extent == Extent::FirstRecord => {
                out.first.get_or_insert(r);
                return Ok(());
            }
            None if extent == Extent::FirstRecord => {}
            Some(r) => {
                if out.first.is_none() {
                    out.first = Some(r.clone());
                }
                if r.time.is_some_and(|t| t.0 < since) {
                    out.before_window = Some(r);
                } else {
                    out.records.push(r);
                }
            }
            None => {
                out.broken += 1;
                out.first_broken
                    .get_or_insert_with(|| (file.to_path_buf(), i + 1));
            }
        }
    }
    Ok(())
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
) -> Checked {
    let since = now.0.saturating_sub(spec.window.as_millis() as u64);
    let read = match tokio::task::spawn_blocking({
        let t = target.clone();
        move || read(&t, since)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn rotated_files_untouched_since_before_the_window_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let hours_ago = |h: u64| now - Duration::from_secs(h * 3600);
        let rec = |h: u64, input: &str| {
            format!(
                r#"{{"timestamp":"{}","input":"{input}","output":"ok"}}"#,
                humantime::format_rfc3339_seconds(hours_ago(h))
            )
        };
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        // Daily files, each last written when its last record was; the broken lines in
        // the old ones would be counted if they were read.
        for (name, lines, written) in [
            (
                "a.jsonl",
                vec![rec(72, "start"), "{broken".into(), rec(50, "a2")],
                50,
            ),
            ("b.jsonl", vec![rec(48, "b1"), "{broken".into()], 26),
            ("c.jsonl", vec![rec(24, "c1"), rec(3, "last before")], 3),
            ("d.jsonl", vec![rec(0, "in the window")], 0),
        ] {
            let path = logs.join(name);
            std::fs::write(&path, lines.join("\n")).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(hours_ago(written))
                .unwrap();
        }
        std::fs::write(
            dir.path().join("t.yaml"),
            "name: logs\nkind: transcripts\npath: logs\n",
        )
        .unwrap();
        let target = aura_policy::load_targets(dir.path()).unwrap().remove(0);
        let since = hours_ago(1)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let read = read(&target, since).unwrap();
        let input = |r: &Option<Record>| r.as_ref().map(|r| r.input.clone());
        assert_eq!(input(&read.first), Some("start".into()));
        assert_eq!(input(&read.before_window), Some("last before".into()));
        let inputs: Vec<&str> = read.records.iter().map(|r| r.input.as_str()).collect();
        assert_eq!(inputs, ["in the window"]);
        assert_eq!(read.broken, 0, "a and b were not read past their start");
        assert_eq!(read.files.len(), 4);
    }

    #[test]
    fn only_the_windows_records_are_kept_and_broken_lines_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("chat.jsonl"),
            concat!(
                r#"{"timestamp":"2026-11-01T08:00:00Z","input":"old","output":"a"}"#,
                "\n",
                r#"{"input":"cut off in the mid"#,
                "\n",
                r#"{"timestamp":"2026-11-01T10:00:00Z","input":"new","output":"b"}"#,
                "\n",
                "\n",
                r#"{"unmapped":"no input or output"}"#,
                "\n",
                r#"{"input":"untimed","output":"c"}"#,
                "\n",
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t.yaml"),
            "name: logs\nkind: transcripts\npath: chat.jsonl\n",
        )
        .unwrap();
        let target = aura_policy::load_targets(dir.path()).unwrap().remove(0);
        let since = parse_date("2026-11-01T09:00:00Z", false).unwrap().0;
        let read = read(&target, since).unwrap();
        let inputs: Vec<&str> = read.records.iter().map(|r| r.input.as_str()).collect();
        assert_eq!(inputs, ["new", "untimed"]);
        assert_eq!(read.broken, 2);
        assert_eq!(
            read.first_broken,
            Some((dir.path().join("chat.jsonl"), 2)),
            "line numbers count from 1 and include blank lines"
        );
    }
}
