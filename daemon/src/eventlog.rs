//! The tamper-evident event log: every state change the daemon makes, hash-chained, with
//! Ed25519-signed checkpoints (see `aura-ledger` for the format). Payloads go to the
//! evidence store, addressed by digest, so retention can purge them without breaking the
//! chain.
//!
//! [`EventLog`] is the seam; [`SledEventLog`] keeps the log in the daemon's store.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use aura_ledger::{Checkpoint, EventRecord, GENESIS, Key, PublicKey};
use aura_proto::view::Timestamp;
use tokio::sync::broadcast;

use crate::durability::Committer;
use crate::evidence::{EvidenceStore, Payload};

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("event log storage: {0}")]
    Storage(String),
    #[error("event signing key {path}: {message}")]
    Key { path: String, message: String },
}

impl From<sled::Error> for EventLogError {
    fn from(e: sled::Error) -> Self {
        EventLogError::Storage(e.to_string())
    }
}

impl From<crate::store::StoreError> for EventLogError {
    fn from(e: crate::store::StoreError) -> Self {
        EventLogError::Storage(e.to_string())
    }
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub trait EventLog: Send + Sync + 'static {
    /// Appends a record (not yet durable; see [`EventLog::commit`]).
    fn append(
        &self,
        actor: &str,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<EventRecord, EventLogError>;
    /// Makes every record appended so far durable.
    fn commit(&self) -> BoxFuture<'_, Result<(), EventLogError>>;
    /// Records from `from` on, at most `limit`.
    fn read(&self, from: u64, limit: usize) -> Result<Vec<EventRecord>, EventLogError>;
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, EventLogError>;
    /// Signs the current head if records were added since the last checkpoint.
    fn checkpoint(&self) -> Result<Option<Checkpoint>, EventLogError>;
    fn payload(&self, record: &EventRecord) -> Payload;
    fn public_key(&self) -> PublicKey;
    /// Records as they are appended.
    fn subscribe(&self) -> broadcast::Receiver<EventRecord>;
    fn last_seq(&self) -> u64;
}

struct Head {
    seq: u64,
    hash: String,
    since_checkpoint: u64,
}

pub struct SledEventLog {
    records: sled::Tree,
    checkpoints: sled::Tree,
    evidence: EvidenceStore,
    committer: Committer,
    key: Key,
    head: Mutex<Head>,
    every: u64,
    tx: broadcast::Sender<EventRecord>,
}

pub const KEY_FILE: &str = "event-signing.key";
pub const PUBLIC_KEY_FILE: &str = "event-signing.pub";

impl SledEventLog {
    /// Opens the log, making the signing key on the first start. A checkpoint is signed
    /// every `every` records (and on [`EventLog::checkpoint`]).
    pub fn open(
        db: &sled::Db,
        evidence: EvidenceStore,
        committer: Committer,
        keys_dir: &Path,
        every: u64,
    ) -> Result<Self, EventLogError> {
        let key = load_or_create_key(keys_dir)?;
        let records = db.open_tree("events")?;
        let head = match records.last()? {
            Some((_, v)) => {
                let r: EventRecord = serde_json::from_slice(&v).map_err(|e| {
                    EventLogError::Storage(format!("the last event is unreadable: {e}"))
                })?;
                Head {
                    seq: r.seq,
                    hash: r.hash,
                    since_checkpoint: 0,
                }
            }
            None => Head {
                seq: 0,
                hash: GENESIS.to_string(),
                since_checkpoint: 0,
            },
        };
        Ok(Self {
            records,
            checkpoints: db.open_tree("events.checkpoints")?,
            evidence,
            committer,
            key,
            head: Mutex::new(head),
            every: every.max(1),
            tx: broadcast::channel(1024).0,
        })
    }

    fn sign_head(&self, head: &mut Head) -> Result<Option<Checkpoint>, EventLogError> {
        if head.seq == 0 || head.since_checkpoint == 0 {
            return Ok(None);
        }
        let cp = Checkpoint::sign(&self.key, head.seq, &head.hash, Timestamp::now().0);
        let bytes = serde_json::to_vec(&cp).map_err(|e| EventLogError::Storage(e.to_string()))?;
        self.checkpoints.insert(cp.seq.to_be_bytes(), bytes)?;
        head.since_checkpoint = 0;
        Ok(Some(cp))
    }
}

impl EventLog for SledEventLog {
    fn append(
        &self,
        actor: &str,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<EventRecord, EventLogError> {
        let bytes =
            serde_json::to_vec(payload).map_err(|e| EventLogError::Storage(e.to_string()))?;
        let digest = self.evidence.put(&bytes)?;
        let record = {
            let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
            let r = EventRecord::seal(
                head.seq + 1,
                Timestamp::now().0,
                actor,
                kind,
                &digest.hex(),
                &head.hash,
            );
            let enc = serde_json::to_vec(&r).map_err(|e| EventLogError::Storage(e.to_string()))?;
            self.records.insert(r.seq.to_be_bytes(), enc)?;
            head.seq = r.seq;
            head.hash = r.hash.clone();
            head.since_checkpoint += 1;
            if head.since_checkpoint >= self.every {
                self.sign_head(&mut head)?;
            }
            // Sent under the lock, so subscribers see records in order.
            let _ = self.tx.send(r.clone());
            r
        };
        Ok(record)
    }

    fn commit(&self) -> BoxFuture<'_, Result<(), EventLogError>> {
        Box::pin(async move {
            self.committer
                .commit()
                .await
                .map_err(EventLogError::Storage)
        })
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<EventRecord>, EventLogError> {
        self.records
            .range(from.max(1).to_be_bytes()..)
            .take(limit)
            .map(|r| {
                let (_, v) = r?;
                serde_json::from_slice(&v)
                    .map_err(|e| EventLogError::Storage(format!("unreadable event: {e}")))
            })
            .collect()
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, EventLogError> {
        self.checkpoints
            .iter()
            .map(|r| {
                let (_, v) = r?;
                serde_json::from_slice(&v)
                    .map_err(|e| EventLogError::Storage(format!("unreadable checkpoint: {e}")))
            })
            .collect()
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, EventLogError> {
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        self.sign_head(&mut head)
    }

    fn payload(&self, record: &EventRecord) -> Payload {
        match crate::evidence::Digest::from_hex(&record.payload_digest) {
            Some(d) => self.evidence.get(&d).unwrap_or(Payload::Missing),
            None => Payload::Corrupt,
        }
    }

    fn public_key(&self) -> PublicKey {
        self.key.verifying_key()
    }

    fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.tx.subscribe()
    }

    fn last_seq(&self) -> u64 {
        self.head.lock().unwrap_or_else(|p| p.into_inner()).seq
    }
}

/// Reads the signing key, or makes one (mode 0600) with its public half beside it.
fn load_or_create_key(dir: &Path) -> Result<Key, EventLogError> {
    let path = dir.join(KEY_FILE);
    let err = |message: String| EventLogError::Key {
        path: path.display().to_string(),
        message,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err(format!("cannot create the folder: {e}")))?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|_| err("not hex".into()))?;
            let seed: [u8; 32] = bytes.try_into().map_err(|_| err("not 32 bytes".into()))?;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the event signing key is readable by others; tightening to 0600");
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
            Ok(aura_ledger::signing_key_from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| err(format!("no randomness for a new key: {e}")))?;
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| err(format!("cannot create: {e}")))?;
            f.write_all(hex::encode(seed).as_bytes())
                .map_err(|e| err(e.to_string()))?;
            f.sync_all().map_err(|e| err(e.to_string()))?;
            let key = aura_ledger::signing_key_from_seed(seed);
            let _ = std::fs::write(
                dir.join(PUBLIC_KEY_FILE),
                aura_ledger::format_public_key(&key.verifying_key()) + "\n",
            );
            tracing::info!(path = %path.display(), "event signing key created");
            Ok(key)
        }
        Err(e) => Err(err(format!("cannot read: {e}"))),
    }
}

/// Signs a checkpoint every `every` (if anything was appended), until `stop`.
pub fn spawn_checkpointer(
    log: std::sync::Arc<dyn EventLog>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = log.checkpoint() {
                        tracing::error!(error = %e, "could not sign an event log checkpoint");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_chain_and_checkpoints_verify_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let ev = EvidenceStore::open(&db).unwrap();
        let log = SledEventLog::open(
            &db,
            ev.clone(),
            Committer::start(&db),
            &dir.path().join("keys"),
            4,
        )
        .unwrap();
        for i in 0..10 {
            log.append("test", "ThingHappened", &serde_json::json!({ "i": i }))
                .unwrap();
        }
        log.commit().await.unwrap();
        let key_mode = std::fs::metadata(dir.path().join("keys").join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(key_mode, 0o600);
        let records = log.read(1, 100).unwrap();
        let cps = log.checkpoints().unwrap();
        assert_eq!(cps.len(), 2, "every 4 records");
        let v = aura_ledger::verify(
            records.iter().map(|r| (r, None)),
            &cps,
            Some(&log.public_key()),
        )
        .unwrap();
        assert_eq!(v.records, 10);
        assert_eq!(v.signed_through, Some(8));
        let pk = log.public_key();
        drop(log);
        let log = SledEventLog::open(&db, ev, Committer::start(&db), &dir.path().join("keys"), 4)
            .unwrap();
        assert_eq!(log.public_key(), pk, "the key persists");
        let r = log
            .append("test", "ThingHappened", &serde_json::json!({}))
            .unwrap();
        assert_eq!(r.seq, 11);
        assert_eq!(r.prev_hash, records[9].hash);
    }
}
