//! Group commit: many writers, one flush. A writer inserts into sled, then awaits
//! [`Committer::commit`], which returns once a flush that started after the call has
//! finished, so everything the writer wrote is on disk. Concurrent writers share flushes,
//! which is what lets the bus and the event log take tens of thousands of durable writes
//! a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, watch};

#[derive(Clone)]
pub struct Committer {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    requested: AtomicU64,
    done: watch::Sender<u64>,
    wake: Arc<Notify>,
    /// The last flush failure, kept until a flush succeeds (for the Monitor's alert).
    last_error: Mutex<Option<String>>,
    /// The last write that failed before any flush (sled can refuse an insert when the
    /// disk is full), and when; noted by whoever saw it.
    write_failure: Mutex<Option<(String, std::time::Instant)>>,
}

impl Committer {
    /// Starts the flusher task. It ends when the last `Committer` is dropped.
    pub fn start(db: &sled::Db) -> Self {
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            db: db.clone(),
            requested: AtomicU64::new(0),
            done: watch::channel(0).0,
            wake: wake.clone(),
            last_error: Mutex::new(None),
            write_failure: Mutex::new(None),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                let notified = wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let target = {
                    let Some(inner) = weak.upgrade() else { return };
                    let target = inner.requested.load(Ordering::Acquire);
                    if target > *inner.done.borrow() {
                        let result = inner.db.flush_async().await;
                        let mut err = inner.last_error.lock().unwrap_or_else(|p| p.into_inner());
                        *err = result.err().map(|e| e.to_string());
                        Some((inner.clone(), target))
                    } else {
                        None
                    }
                };
                match target {
                    Some((inner, t)) => {
                        inner.done.send_replace(t);
                    }
                    None => notified.await,
                }
            }
        });
        Self { inner }
    }

    /// Waits until everything written before this call is flushed.
    pub async fn commit(&self) -> Result<(), String> {
        let ticket = self.inner.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let mut done = self.inner.done.subscribe();
        self.inner.wake.notify_one();
        while *done.borrow_and_update() < ticket {
            if done.changed().await.is_err() {
                return Err("the store is closing".into());
            }
        }
        match self.last_error() {
            Some(e) => Err(format!("the store could not write to disk: {e}")),
            None => Ok(()),
        }
    }

    /// Records a write that failed for lack of storage (disk full, read-only, I/O).
    pub fn note_write_failure(&self, message: String) {
        *self
            .inner
            .write_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((message, std::time::Instant::now()));
    }

    /// Why storage is failing: the last flush failure, else a write failure noted within
    /// `within`.
    pub fn failure(&self, within: std::time::Duration) -> Option<String> {
        self.last_error().or_else(|| {
            self.inner
                .write_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .filter(|(_, at)| at.elapsed() <= within)
                .map(|(m, _)| m.clone())
        })
    }

    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_commits_share_flushes_and_all_return() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let c = Committer::start(&db);
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let (c, db) = (c.clone(), db.clone());
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), &[1u8][..]).unwrap();
                c.commit().await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(db.len(), 200);
    }
}
