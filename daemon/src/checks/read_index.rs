//! Where to resume reading a transcript file that only grows. While a file is read,
//! every few MiB a mark records the byte offset of a line, the newest record time before
//! it and the last record before it; the next read for a window starting after that time
//! seeks to the mark instead of parsing the file from its start. A file that was replaced
//! (another inode) or truncated loses its marks. Kept in memory: after a restart the
//! first read of each file sets them again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::transcript_log::Record;

/// Bytes between marks.
const SPACING: u64 = 4 << 20;

/// A point in a file to resume from.
#[derive(Debug, Clone)]
pub struct Mark {
    /// Byte offset of the start of a line.
    pub offset: u64,
    /// Lines before it.
    pub line: usize,
    /// The newest record time before it (ms); `u64::MAX` once a record without a time
    /// was seen, since such records are always judged and must never be skipped.
    pub newest_before: u64,
    /// The last record before it.
    pub last_before: Option<Record>,
}

impl Mark {
    pub fn start() -> Self {
        Self {
            offset: 0,
            line: 0,
            newest_before: 0,
            last_before: None,
        }
    }
}

/// What is known of one file.
#[derive(Debug, Clone)]
pub struct FileMarks {
    /// (device, inode): another file at the same path starts over.
    pub id: (u64, u64),
    /// The file's first record.
    pub first: Option<Record>,
    /// In offset order.
    pub marks: Vec<Mark>,
}

#[derive(Clone)]
pub struct ReadIndex {
    files: Arc<Mutex<HashMap<PathBuf, FileMarks>>>,
    spacing: u64,
}

impl Default for ReadIndex {
    fn default() -> Self {
        Self::with_spacing(SPACING)
    }
}

impl ReadIndex {
    pub fn with_spacing(spacing: u64) -> Self {
        Self {
            files: Arc::default(),
            spacing: spacing.max(1),
        }
    }

    pub fn spacing(&self) -> u64 {
        self.spacing
    }

    /// The marks of `file` if they still describe it: the same inode, and not shorter
    /// than the last mark.
    pub fn get(&self, file: &Path, id: (u64, u64), len: u64) -> Option<FileMarks> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files
            .get(file)
            .filter(|m| m.id == id && m.marks.last().is_none_or(|last| last.offset <= len))
            .cloned()
    }

    pub fn put(&self, file: &Path, marks: FileMarks) {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file.to_path_buf(), marks);
    }
}
