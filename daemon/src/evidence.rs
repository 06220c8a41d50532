//! Content-addressed evidence: prompts, responses and other large or sensitive payloads,
//! keyed by their SHA-256. Records elsewhere (attempts, events) hold only the digest, so a
//! retention policy can purge a payload without changing any record that names it; a
//! purged payload then reads as purged, which is not the same as tampered.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::StoreError;

/// A SHA-256 digest, shown as 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Digest(out))
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not a SHA-256 hex digest"))
    }
}

/// What reading a payload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Present(Vec<u8>),
    /// Removed by retention; the digest still proves what it was.
    Purged,
    /// Never stored, or the store lost it.
    Missing,
    /// The stored bytes do not hash to the digest: tampered or corrupted.
    Corrupt,
}

#[derive(Clone)]
pub struct EvidenceStore {
    blobs: sled::Tree,
    purged: sled::Tree,
    /// Digest -> when it was last stored (ms): identical payloads share one copy, so a
    /// payload may be purged only when nobody stored it recently.
    used: sled::Tree,
}

impl EvidenceStore {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            blobs: db.open_tree("evidence")?,
            purged: db.open_tree("evidence.purged")?,
            used: db.open_tree("evidence.used")?,
        })
    }

    /// Stores bytes (once: identical payloads share one copy) and returns their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(bytes);
        if !self.blobs.contains_key(d.0)? {
            self.blobs.insert(d.0, bytes)?;
            self.purged.remove(d.0)?;
        }
        self.used
            .insert(d.0, &aura_proto::view::Timestamp::now().0.to_be_bytes())?;
        Ok(d)
    }

    /// Retention: purges every payload last stored before `cutoff`. Records that name
    /// them keep their digests, and verification reports them as purged.
    pub fn purge_older_than(&self, cutoff: aura_proto::view::Timestamp) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.used.iter() {
            let (k, v) = item?;
            let mut t = [0u8; 8];
            t.copy_from_slice(&v[..8.min(v.len())]);
            if u64::from_be_bytes(t) < cutoff.0 && k.len() == 32 {
                let mut d = [0u8; 32];
                d.copy_from_slice(&k);
                self.purge(&Digest(d))?;
                self.used.remove(&k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn get(&self, d: &Digest) -> Result<Payload, StoreError> {
        match self.blobs.get(d.0)? {
            Some(bytes) if Digest::of(&bytes) == *d => Ok(Payload::Present(bytes.to_vec())),
            Some(_) => Ok(Payload::Corrupt),
            None if self.purged.contains_key(d.0)? => Ok(Payload::Purged),
            None => Ok(Payload::Missing),
        }
    }

    /// Text convenience; invalid UTF-8 is replaced, never an error.
    pub fn get_text(&self, d: &Digest) -> Result<Option<String>, StoreError> {
        Ok(match self.get(d)? {
            Payload::Present(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        })
    }

    /// Removes a payload, remembering that it was purged on purpose.
    pub fn purge(&self, d: &Digest) -> Result<(), StoreError> {
        self.purged.insert(d.0, &[])?;
        self.blobs.remove(d.0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_purge_and_corruption_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ev = EvidenceStore::open(&db).unwrap();
        let d = ev.put(b"the answer").unwrap();
        assert_eq!(
            ev.get(&d).unwrap(),
            Payload::Present(b"the answer".to_vec())
        );
        assert_eq!(Digest::from_hex(&d.hex()), Some(d));
        ev.blobs.insert(d.0, &b"another answer"[..]).unwrap();
        assert_eq!(ev.get(&d).unwrap(), Payload::Corrupt);
        ev.purge(&d).unwrap();
        assert_eq!(ev.get(&d).unwrap(), Payload::Purged);
        assert_eq!(ev.get(&Digest::of(b"never")).unwrap(), Payload::Missing);
    }
}
