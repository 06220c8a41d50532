//! Reading a `transcripts` target: JSONL logs of production conversations, one record a
//! line, mapped by the target's `fields`. A line that is not a JSON record is skipped and
//! counted, and the rest of the file is still read. Logs are streamed and only the
//! window's records are kept, so a log of any size is read in memory proportional to
//! its window.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aura_policy::TargetSpec;
use aura_policy::control::LogField;
use aura_policy::record::parse_date;
use aura_proto::view::Timestamp;
use serde_json::Value;

use super::read_index::{FileMarks, Mark, ReadIndex};

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
    /// Lines that were not a JSON object with the mapped fields (in the parts read).
    pub broken: usize,
    /// The first of them: (file, line number).
    pub first_broken: Option<(PathBuf, usize)>,
    /// Bytes read: what the marks of a [`ReadIndex`] saved shows here.
    pub bytes_read: u64,
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
/// (the start of the log). With an `index`, a file that only grew is read from the last
/// mark before the window rather than from its start.
pub fn read(target: &TargetSpec, since: u64, index: Option<&ReadIndex>) -> Result<Read, String> {
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
            read_file(&file, f, since, extent, index, &mut out)?;
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

/// Where the last record read went, to copy it into a mark without cloning each one.
#[derive(Clone, Copy)]
enum Last {
    InWindow(usize),
    BeforeWindow,
}

fn read_file(
    file: &Path,
    f: &aura_policy::target::TranscriptFields,
    since: u64,
    extent: Extent,
    index: Option<&ReadIndex>,
    out: &mut Read,
) -> Result<(), String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", file.display());
    let mut handle =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let meta = handle.metadata().map_err(cannot)?;
    let id = (meta.dev(), meta.ino());
    let file_index = out.files.len();
    let here = |mut r: Record| {
        r.file = file_index;
        r
    };
    // Resume at the last mark before the window, keeping the marks up to it.
    let index = index.filter(|_| extent == Extent::Whole);
    let known = index.and_then(|i| i.get(file, id, meta.len()));
    let mut marks: Vec<Mark> = Vec::new();
    let mut start = Mark::start();
    let mut file_first: Option<Record> = None;
    if let Some(known) = known
        && let Some(pos) = known.marks.iter().rposition(|m| m.newest_before < since)
    {
        marks = known.marks[..=pos].to_vec();
        start = marks[pos].clone();
        file_first = known.first.map(here);
        if out.first.is_none() {
            out.first = file_first.clone();
        }
        if let Some(r) = start.last_before.clone() {
            out.before_window = Some(here(r));
        }
        handle.seek(SeekFrom::Start(start.offset)).map_err(cannot)?;
    }
    let mut newest = start.newest_before;
    let mut last: Option<Last> = start.last_before.is_some().then_some(Last::BeforeWindow);
    let mut offset = start.offset;
    let mut since_mark = 0u64;
    let reader = BufReader::new(handle);
    for (n, line) in reader.split(b'\n').enumerate() {
        let i = start.line + n;
        if let Some(index) = index
            && since_mark >= index.spacing()
        {
            let last_before = match last {
                Some(Last::InWindow(k)) => out.records.get(k).cloned(),
                Some(Last::BeforeWindow) => out.before_window.clone(),
                None => None,
            };
            marks.push(Mark {
                offset,
                line: i,
                newest_before: newest,
                last_before,
            });
            since_mark = 0;
        }
        let line = line.map_err(cannot)?;
        let len = line.len() as u64 + 1;
        offset += len;
        since_mark += len;
        out.bytes_read += len;
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
                if file_first.is_none() {
                    file_first = Some(r.clone());
                }
                newest = newest.max(r.time.map_or(u64::MAX, |t| t.0));
                if r.time.is_some_and(|t| t.0 < since) {
                    out.before_window = Some(r);
                    last = Some(Last::BeforeWindow);
                } else {
                    out.records.push(r);
                    last = Some(Last::InWindow(out.records.len() - 1));
                }
            }
            None => {
                out.broken += 1;
                out.first_broken
                    .get_or_insert_with(|| (file.to_path_buf(), i + 1));
            }
        }
    }
    if let Some(index) = index {
        index.put(
            file,
            FileMarks {
                id,
                first: file_first,
                marks,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// What a read found, to compare reads with and without marks.
    fn summary(r: &Read) -> (Vec<(String, usize)>, Option<String>, Option<String>) {
        (
            r.records
                .iter()
                .map(|r| (r.input.clone(), r.line))
                .collect(),
            r.before_window.as_ref().map(|r| r.input.clone()),
            r.first.as_ref().map(|r| r.input.clone()),
        )
    }

    #[test]
    fn marks_skip_what_is_older_than_the_window_and_change_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let at = |secs_ago: u64| {
            humantime::format_rfc3339_seconds(now - Duration::from_secs(secs_ago)).to_string()
        };
        let rec = |i: u64, secs_ago: u64| {
            format!(
                r#"{{"timestamp":"{}","input":"r{i}","output":"ok"}}"#,
                at(secs_ago)
            )
        };
        // Two days of old records (one without a time, which is always judged), then an
        // hour of recent ones.
        let mut lines: Vec<String> = (0..2000).map(|i| rec(i, 200_000 - i * 10)).collect();
        lines[10] = r#"{"input":"untimed","output":"ok"}"#.into();
        lines.extend((2000..2500).map(|i| rec(i, 3000 - (i - 2000) * 5)));
        let log = dir.path().join("chat.jsonl");
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        std::fs::write(
            dir.path().join("t.yaml"),
            "name: logs\nkind: transcripts\npath: chat.jsonl\n",
        )
        .unwrap();
        let target = aura_policy::load_targets(dir.path()).unwrap().remove(0);
        let since = |secs_ago: u64| {
            (now - Duration::from_secs(secs_ago))
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let index = ReadIndex::with_spacing(4096);
        let check = |window: u64| {
            let plain = read(&target, since(window), None).unwrap();
            let marked = read(&target, since(window), Some(&index)).unwrap();
            assert_eq!(summary(&marked), summary(&plain));
            (plain.bytes_read, marked.bytes_read)
        };
        // The first read sets the marks; an untimed record keeps everything after it
        // from being skipped...
        check(3600);
        let (all, marked) = check(3600);
        assert_eq!(marked, all);
        // ...so remove it: now the old records are skipped.
        lines[10] = rec(10, 200_000 - 100);
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        check(3600);
        let (all, marked) = check(3600);
        assert!(marked * 4 < all, "read {marked} of {all} bytes");
        // Appended records are found.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, (rec(9999, 1) + "\n").as_bytes()).unwrap();
        check(3600);
        // A file rewritten shorter (rotated in place) starts over.
        std::fs::write(&log, lines[..5].join("\n") + "\n").unwrap();
        check(3600);
        check(400_000);
    }

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
        let read = read(&target, since, None).unwrap();
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
        let read = read(&target, since, None).unwrap();
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
