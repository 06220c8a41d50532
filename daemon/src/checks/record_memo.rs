//! Verdicts already reached on transcript records, so each record is judged once per
//! control definition while it stays in the window, not on every run: an LLM judge over
//! a day's window, run hourly, would otherwise grade every record 24 times. Only decided
//! verdicts (pass, fail) are kept, so a record an unavailable judge left inconclusive is
//! judged again; entries older than the window are pruned on each run.

use aura_proto::view::{Timestamp, Verdict};
use serde::{Deserialize, Serialize};

use crate::evidence::Digest;

/// What judging one record gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    pub verdict: Verdict,
    pub note: String,
    /// The note of a zero-tolerance detector that failed it, if one did.
    pub intolerable: Option<String>,
}

/// The memo's tree.
const TREE: &str = "runtime.memo";

/// Forgets every control's verdicts on records older than `before` (ms), including
/// those of control definitions no longer in use. Returns how many.
pub fn forget_before(db: &sled::Db, before: u64) -> Result<u64, sled::Error> {
    // Opening a tree creates it: a daemon with no runtime control never needs one.
    if !db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == TREE.as_bytes())
    {
        return Ok(0);
    }
    let tree = db.open_tree(TREE)?;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for key in tree.iter().keys() {
        let key = key?;
        let time = key
            .get(32..40)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes);
        if time.is_none_or(|t| t < before) {
            batch.remove(key);
            n += 1;
        }
    }
    tree.apply_batch(batch)?;
    Ok(n)
}

/// One control's memo (its `scope` digests everything the verdict depends on besides
/// the record: the control's detectors and inspection, and the judge).
pub struct RecordMemo {
    tree: sled::Tree,
    scope: Digest,
}

impl RecordMemo {
    pub fn open(db: &sled::Db, scope: Digest) -> Result<Self, sled::Error> {
        Ok(Self {
            tree: db.open_tree(TREE)?,
            scope,
        })
    }

    /// Keys sort by scope, then time, so pruning one control's window is a range scan.
    fn key(&self, time: Timestamp, input: &str, output: &str) -> Vec<u8> {
        let record = Digest::of(&serde_json::to_vec(&(input, output)).unwrap_or_default());
        let mut k = Vec::with_capacity(72);
        k.extend_from_slice(&self.scope.0);
        k.extend_from_slice(&time.0.to_be_bytes());
        k.extend_from_slice(&record.0);
        k
    }

    pub fn get(&self, time: Timestamp, input: &str, output: &str) -> Option<Judged> {
        let bytes = self.tree.get(self.key(time, input, output)).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps a decided verdict; a failure to write only costs a later re-judging.
    pub fn put(&self, time: Timestamp, input: &str, output: &str, judged: &Judged) {
        if !matches!(judged.verdict, Verdict::Pass | Verdict::Fail) {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(judged) else {
            return;
        };
        if let Err(e) = self.tree.insert(self.key(time, input, output), bytes) {
            tracing::warn!(error = %e, "cannot keep a record's verdict; it will be judged again");
        }
    }

    /// Forgets the verdicts of records older than `since` (ms).
    pub fn prune(&self, since: u64) {
        let mut end = self.scope.0.to_vec();
        end.extend_from_slice(&since.to_be_bytes());
        let old: Vec<sled::IVec> = self
            .tree
            .range(self.scope.0.to_vec()..end)
            .keys()
            .filter_map(Result::ok)
            .collect();
        for k in old {
            let _ = self.tree.remove(k);
        }
    }

    /// Entries kept for this scope (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.tree.scan_prefix(self.scope.0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_decided_verdicts_and_prunes_one_controls_window_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let a = RecordMemo::open(&db, Digest::of(b"control a")).unwrap();
        let b = RecordMemo::open(&db, Digest::of(b"control b")).unwrap();
        let judged = |verdict| Judged {
            verdict,
            note: "n".into(),
            intolerable: None,
        };
        a.put(Timestamp(1_000), "q", "old", &judged(Verdict::Pass));
        a.put(Timestamp(5_000), "q", "new", &judged(Verdict::Fail));
        a.put(
            Timestamp(6_000),
            "q",
            "undecided",
            &judged(Verdict::Inconclusive),
        );
        b.put(Timestamp(1_000), "q", "old", &judged(Verdict::Pass));
        assert_eq!(
            a.get(Timestamp(5_000), "q", "new"),
            Some(judged(Verdict::Fail))
        );
        assert_eq!(
            a.get(Timestamp(5_000), "q", "other"),
            None,
            "keyed by content"
        );
        assert_eq!(
            a.get(Timestamp(6_000), "q", "undecided"),
            None,
            "judged again"
        );
        assert_eq!((a.len(), b.len()), (2, 1));
        a.prune(2_000);
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_eq!(a.get(Timestamp(1_000), "q", "old"), None);
        // The housekeeping sweep forgets across scopes (b's control was since edited).
        assert_eq!(forget_before(&db, 5_500).unwrap(), 2);
        assert_eq!((a.len(), b.len()), (0, 0));
    }
}
