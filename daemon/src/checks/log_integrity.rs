//! Whether a transcript log can serve as record-keeping evidence: every record complete,
//! none missing or reordered (by its sequence number, when the log has one), no silence
//! longer than allowed, and nothing removed before the retention period. Problems name
//! the file and line, so an operator can go straight to them.

use aura_policy::control::{LogField, LogIntegrity};
use aura_proto::view::Timestamp;

use super::transcript_log::{Read, Record};

/// Problems listed in a verdict's detail; the rest are counted.
const SHOWN: usize = 3;

/// What the checks found.
#[derive(Debug, Default, PartialEq)]
pub struct Findings {
    /// Each a sentence naming where, e.g. `chat.jsonl:12: no session`.
    pub problems: Vec<String>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

impl Findings {
    /// One line for a verdict's detail: the count and the first few problems.
    pub fn summary(&self) -> String {
        let mut s = format!("log integrity: {} problem(s): ", self.problems.len());
        s.push_str(
            &self
                .problems
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        );
        if self.problems.len() > SHOWN {
            s.push_str(&format!("; and {} more", self.problems.len() - SHOWN));
        }
        s
    }
}

/// Checks the window's records (and the step into the window from the record before
/// it), the silence since the last record, and the start of the log.
pub fn check(spec: &LogIntegrity, read: &Read, sequence_mapped: bool, now: Timestamp) -> Findings {
    let mut out = Findings::default();
    let at = |r: &Record| {
        let file = read
            .files
            .get(r.file)
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{file}:{}", r.line)
    };
    for r in &read.records {
        let missing: Vec<&str> = spec
            .required
            .iter()
            .filter(|f| r.missing.contains(f))
            .map(|f| f.name())
            .collect();
        if !missing.is_empty() {
            out.problems
                .push(format!("{}: no {}", at(r), missing.join(", ")));
        }
    }
    if spec.required.contains(&LogField::Sequence) && !sequence_mapped {
        out.notes
            .push("`sequence` is required but the target maps no sequence field".into());
    }
    let mut prev = read.before_window.as_ref();
    for r in &read.records {
        if let Some(p) = prev {
            if let (Some(a), Some(b)) = (p.sequence, r.sequence) {
                if b <= a {
                    out.problems.push(format!(
                        "{}: record {b} comes after record {a} (repeated or out of order)",
                        at(r)
                    ));
                } else if b > a + 1 {
                    out.problems.push(format!(
                        "{}: {} record(s) missing between {a} and {b}",
                        at(r),
                        b - a - 1
                    ));
                }
            }
            if let (Some(max), Some(a), Some(b)) = (spec.max_gap, p.time, r.time)
                && b.0.saturating_sub(a.0) > max.as_millis() as u64
            {
                out.problems.push(format!(
                    "{}: no records for {} before it (max_gap {})",
                    at(r),
                    span(b.0 - a.0),
                    humantime::format_duration(max)
                ));
            }
        }
        prev = Some(r);
    }
    if let Some(max) = spec.max_gap {
        let last = read
            .records
            .iter()
            .rev()
            .chain(read.before_window.iter())
            .find_map(|r| r.time.map(|t| (r, t)));
        match last {
            Some((r, t)) if now.0.saturating_sub(t.0) > max.as_millis() as u64 => {
                out.problems.push(format!(
                    "{}: the last record is {} old (max_gap {}): is the logging pipeline running?",
                    at(r),
                    span(now.0 - t.0),
                    humantime::format_duration(max)
                ));
            }
            Some(_) => {}
            None => out.problems.push(format!(
                "no record with a readable time, so silences longer than max_gap {} cannot be ruled out",
                humantime::format_duration(max)
            )),
        }
    }
    if let Some(retention) = spec.retention {
        match (&read.first, sequence_mapped) {
            (_, false) => out.notes.push(
                "retention not checked: the target maps no `sequence` field, so removed records cannot be told from a new log"
                    .into(),
            ),
            (Some(first), true) => {
                if let (Some(n), Some(t)) = (first.sequence, first.time)
                    && n > 1
                    && now.0.saturating_sub(t.0) < retention.as_millis() as u64
                {
                    out.problems.push(format!(
                        "{}: the log starts at record {n}, only {} old: records were removed before the retention of {}",
                        at(first),
                        span(now.0.saturating_sub(t.0)),
                        humantime::format_duration(retention)
                    ));
                }
            }
            (None, true) => {}
        }
    }
    out
}

/// A duration in milliseconds, to the minute.
fn span(ms: u64) -> String {
    let minutes = std::time::Duration::from_secs(ms / 60_000 * 60);
    humantime::format_duration(minutes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::transcript_log;
    use aura_policy::record::parse_date;

    const NOW: &str = "2026-11-26T12:00:00Z";

    /// Reads `lines` as the log of a target mapping `seq` (when `sequence`), with the
    /// window starting at `since`.
    fn log(lines: &[String], sequence: bool, since: &str) -> (Read, bool) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chat.jsonl"), lines.join("\n")).unwrap();
        let fields = if sequence {
            "fields: { sequence: seq }\n"
        } else {
            ""
        };
        std::fs::write(
            dir.path().join("t.yaml"),
            format!("name: logs\nkind: transcripts\npath: chat.jsonl\n{fields}"),
        )
        .unwrap();
        let target = aura_policy::load_targets(dir.path()).unwrap().remove(0);
        let since = parse_date(since, false).unwrap().0;
        (
            transcript_log::read(&target, since, None).unwrap(),
            sequence,
        )
    }

    fn rec(seq: u64, time: &str, session: Option<&str>) -> String {
        let session = session
            .map(|s| format!(r#","session_id":"{s}""#))
            .unwrap_or_default();
        format!(r#"{{"seq":{seq},"timestamp":"{time}","input":"q","output":"a"{session}}}"#)
    }

    fn spec(max_gap: Option<&str>, retention: Option<&str>) -> LogIntegrity {
        let d = |s: &str| humantime::parse_duration(s).unwrap();
        LogIntegrity {
            required: vec![LogField::Timestamp, LogField::Session, LogField::Sequence],
            max_gap: max_gap.map(d),
            retention: retention.map(d),
        }
    }

    fn now() -> Timestamp {
        parse_date(NOW, false).unwrap()
    }

    #[test]
    fn a_complete_continuous_log_has_no_problems() {
        let lines: Vec<String> = (1..=4)
            .map(|i| rec(i, &format!("2026-11-26T11:{:02}:00Z", i * 10), Some("s")))
            .collect();
        let (read, seq) = log(&lines, true, "2026-11-26T11:15:00Z");
        assert_eq!(read.records.len(), 3, "one record is before the window");
        let found = check(&spec(Some("30m"), Some("183d")), &read, seq, now());
        assert_eq!(found, Findings::default());
    }

    #[test]
    fn missing_fields_lost_and_reordered_records_are_named_where_they_are() {
        let lines = vec![
            rec(1, "2026-11-26T11:00:00Z", Some("s")),
            rec(2, "2026-11-26T11:01:00Z", None),
            rec(5, "2026-11-26T11:02:00Z", Some("s")),
            rec(4, "2026-11-26T11:03:00Z", Some("s")),
        ];
        let (read, seq) = log(&lines, true, "2026-11-26T10:00:00Z");
        let found = check(&spec(None, None), &read, seq, now());
        assert_eq!(
            found.problems,
            [
                "chat.jsonl:2: no session",
                "chat.jsonl:3: 2 record(s) missing between 2 and 5",
                "chat.jsonl:4: record 4 comes after record 5 (repeated or out of order)",
            ]
        );
        assert!(
            found
                .summary()
                .starts_with("log integrity: 3 problem(s): chat.jsonl:2")
        );
    }

    #[test]
    fn silences_longer_than_max_gap_are_problems_also_into_the_window_and_until_now() {
        let lines = vec![
            rec(1, "2026-11-26T05:00:00Z", Some("s")),
            rec(2, "2026-11-26T08:30:00Z", Some("s")),
            rec(3, "2026-11-26T09:00:00Z", Some("s")),
        ];
        // The window starts at 08:00: the step from record 1 (before it) counts.
        let (read, seq) = log(&lines, true, "2026-11-26T08:00:00Z");
        let found = check(&spec(Some("1h"), None), &read, seq, now());
        assert_eq!(
            found.problems,
            [
                "chat.jsonl:2: no records for 3h 30m before it (max_gap 1h)",
                "chat.jsonl:3: the last record is 3h old (max_gap 1h): is the logging pipeline running?",
            ]
        );
    }

    #[test]
    fn records_removed_before_the_retention_period_are_found_with_a_sequence_only() {
        let lines = vec![
            rec(40, "2026-10-01T00:00:00Z", Some("s")),
            rec(41, "2026-11-26T11:59:00Z", Some("s")),
        ];
        let (read, seq) = log(&lines, true, "2026-11-26T00:00:00Z");
        let found = check(&spec(None, Some("183d")), &read, seq, now());
        assert_eq!(found.problems.len(), 1, "{found:?}");
        assert!(
            found.problems[0].starts_with("chat.jsonl:1: the log starts at record 40"),
            "{found:?}"
        );
        // Kept longer than the retention: records before it may go.
        let old = check(&spec(None, Some("30d")), &read, seq, now());
        assert!(old.problems.is_empty(), "{old:?}");
        // Without a sequence field nothing can be decided, and the detail says so;
        // `sequence` being required is then a note too, not a problem per record.
        let (read, seq) = log(&lines, false, "2026-11-26T00:00:00Z");
        let mut s = spec(None, Some("183d"));
        s.required.retain(|f| *f != LogField::Sequence);
        let found = check(&s, &read, seq, now());
        assert!(found.problems.is_empty(), "{found:?}");
        assert!(
            found.notes[0].starts_with("retention not checked"),
            "{found:?}"
        );
    }
}
