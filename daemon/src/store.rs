//! The daemon's sled store: runs, their attempts and control results, and the alert log.
//!
//! Records are JSON so that a newer daemon reads an older store (new fields get
//! defaults). Keys are big-endian integers, so sled's order is numeric order.

use std::path::Path;

use aura_proto::view::{Alert, AlertCounts, RunId, RunState, Timestamp};
use serde::{Serialize, de::DeserializeOwned};

use crate::durability::Committer;
use crate::run::{AttemptRecord, ControlRecord, Phase, RunRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store at {path}: {message}. If the files are damaged, move the \
         folder aside and start again; nothing else is changed"
    )]
    Open { path: String, message: String },
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    #[error("a stored {what} is unreadable: {message}")]
    Decode { what: &'static str, message: String },
    #[error("cannot encode a {what}: {message}")]
    Encode { what: &'static str, message: String },
    #[error("{0}")]
    Durability(String),
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    committer: Committer,
    runs: sled::Tree,
    attempts: sled::Tree,
    results: sled::Tree,
    alerts: sled::Tree,
    meta: sled::Tree,
}

const RUN_COUNTER: &[u8] = b"run_counter";
const ALERT_COUNTER: &[u8] = b"alert_counter";

impl Store {
    /// Opens (or creates) the store. A damaged store is an error with a clear message,
    /// never a panic: sled can panic on some corruptions, so the open is guarded.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let p = path.to_path_buf();
        let opened = std::panic::catch_unwind(move || sled::Config::new().path(&p).open());
        let open_err = |message: String| StoreError::Open {
            path: path.display().to_string(),
            message,
        };
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(open_err(e.to_string())),
            Err(_) => return Err(open_err("the store's files are damaged".into())),
        };
        Ok(Self {
            committer: Committer::start(&db),
            runs: db.open_tree("runs")?,
            attempts: db.open_tree("attempts")?,
            results: db.open_tree("results")?,
            alerts: db.open_tree("alerts")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Makes everything written so far (in any tree, by anyone) durable, sharing the
    /// flush with concurrent writers.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.committer
            .commit()
            .await
            .map_err(StoreError::Durability)
    }

    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    fn next(&self, counter: &[u8]) -> Result<u64, StoreError> {
        let v = self.meta.update_and_fetch(counter, |old| {
            let n = old.map(|b| u64_from(b) + 1).unwrap_or(1);
            Some(n.to_be_bytes().to_vec())
        })?;
        Ok(v.map(|b| u64_from(&b)).unwrap_or(1))
    }

    // ---- runs

    pub fn next_run_id(&self) -> Result<RunId, StoreError> {
        self.next(RUN_COUNTER).map(RunId)
    }

    pub fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.runs
            .insert(run.id.0.to_be_bytes(), encode("run", run)?)?;
        Ok(())
    }

    pub fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        self.runs
            .get(id.0.to_be_bytes())?
            .map(|b| decode("run", &b))
            .transpose()
    }

    /// Applies `f` to a stored run and writes it back; `None` if there is no such run.
    /// Atomically (compare-and-swap: `f` may run more than once, so it must only change
    /// the record), so concurrent updates of different fields never undo each other.
    pub fn update_run(
        &self,
        id: RunId,
        mut f: impl FnMut(&mut RunRecord),
    ) -> Result<Option<RunRecord>, StoreError> {
        let mut failure = None;
        let new = self.runs.update_and_fetch(id.0.to_be_bytes(), |old| {
            let old = old?;
            match decode::<RunRecord>("run", old) {
                Ok(mut run) => {
                    f(&mut run);
                    match encode("run", &run) {
                        Ok(bytes) => Some(bytes),
                        Err(e) => {
                            failure = Some(e);
                            Some(old.to_vec())
                        }
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    Some(old.to_vec())
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        new.map(|b| decode("run", &b)).transpose()
    }

    /// The most recent runs first.
    pub fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.runs
            .iter()
            .rev()
            .take(limit)
            .map(|r| decode("run", &r?.1))
            .collect()
    }

    /// Runs not yet finished, oldest first.
    pub fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.runs.iter() {
            let run: RunRecord = decode("run", &item?.1)?;
            if run.phase != Phase::Done && !run.state.is_finished() {
                out.push(run);
            }
        }
        Ok(out)
    }

    // ---- attempts

    fn attempt_key(run: RunId, index: u32) -> [u8; 12] {
        let mut k = [0u8; 12];
        k[..8].copy_from_slice(&run.0.to_be_bytes());
        k[8..].copy_from_slice(&index.to_be_bytes());
        k
    }

    /// Writes attempts in one batch (a plan, or a group of completed attempts).
    pub fn put_attempts(&self, attempts: &[AttemptRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for a in attempts {
            batch.insert(
                &Self::attempt_key(a.run, a.index)[..],
                encode("attempt", a)?,
            );
        }
        self.attempts.apply_batch(batch)?;
        Ok(())
    }

    pub fn put_attempt(&self, a: &AttemptRecord) -> Result<(), StoreError> {
        self.attempts
            .insert(Self::attempt_key(a.run, a.index), encode("attempt", a)?)?;
        Ok(())
    }

    /// Removes the attempts of runs that finished before `cutoff` (all their agents
    /// done), keeping the runs and their results. Returns (runs, attempts) removed.
    pub fn prune_attempts(&self, cutoff: Timestamp) -> Result<(u64, u64), StoreError> {
        let mut old = Vec::new();
        for item in self.runs.iter() {
            let run: RunRecord = decode("run", &item?.1)?;
            if run.phase == Phase::Done
                && !run.attempts_pruned
                && run.finished.is_some_and(|f| f.0 < cutoff.0)
            {
                old.push(run.id);
            }
        }
        let (mut runs, mut attempts) = (0, 0);
        for id in old {
            let mut batch = sled::Batch::default();
            for key in self.attempts.scan_prefix(id.0.to_be_bytes()).keys() {
                batch.remove(key?);
                attempts += 1;
            }
            self.attempts.apply_batch(batch)?;
            self.update_run(id, |r| r.attempts_pruned = true)?;
            runs += 1;
        }
        Ok((runs, attempts))
    }

    pub fn attempts(&self, run: RunId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.attempts
            .scan_prefix(run.0.to_be_bytes())
            .map(|r| decode("attempt", &r?.1))
            .collect()
    }

    // ---- control results

    pub fn put_results(&self, run: RunId, results: &[ControlRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (i, r) in results.iter().enumerate() {
            let mut k = run.0.to_be_bytes().to_vec();
            k.extend_from_slice(&(i as u32).to_be_bytes());
            batch.insert(k, encode("control result", r)?);
        }
        self.results.apply_batch(batch)?;
        Ok(())
    }

    pub fn results(&self, run: RunId) -> Result<Vec<ControlRecord>, StoreError> {
        self.results
            .scan_prefix(run.0.to_be_bytes())
            .map(|r| decode("control result", &r?.1))
            .collect()
    }

    // ---- alerts

    /// Appends an alert, assigning its sequence number.
    pub fn append_alert(&self, mut alert: Alert) -> Result<Alert, StoreError> {
        alert.seq = self.next(ALERT_COUNTER)?;
        self.alerts
            .insert(alert.seq.to_be_bytes(), encode("alert", &alert)?)?;
        Ok(alert)
    }

    /// Alerts with `seq >= from`, in order, at most `limit`.
    pub fn alerts_from(&self, from: u64, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.alerts
            .range(from.to_be_bytes()..)
            .take(limit)
            .map(|r| decode("alert", &r?.1))
            .collect()
    }

    /// The seq the next alert will get at the earliest.
    pub fn next_alert_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .alerts
            .last()?
            .map(|(k, _)| u64_from(&k) + 1)
            .unwrap_or(1))
    }

    pub fn alert_counts(&self) -> Result<AlertCounts, StoreError> {
        let mut counts = AlertCounts::default();
        for item in self.alerts.iter() {
            let a: Alert = decode("alert", &item?.1)?;
            counts.add(a.severity);
        }
        Ok(counts)
    }

    /// Marks runs left running by a previous process; called once at start before any
    /// agent resumes them.
    pub fn interrupted_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        Ok(self
            .unfinished_runs()?
            .into_iter()
            .filter(|r| matches!(r.state, RunState::Running | RunState::Queued))
            .collect())
    }
}

fn u64_from(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[8 - n..].copy_from_slice(&b[b.len() - n..]);
    u64::from_be_bytes(a)
}

fn encode<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Encode {
        what,
        message: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Decode {
        what,
        message: e.to_string(),
    })
}
