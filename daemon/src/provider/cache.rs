//! Responses keyed by the digest of the request that produced them (which includes the
//! target's fingerprint: endpoint, model, system prompt, guardrails), so an identical
//! request to an unchanged target is answered from the store. Entries expire after a
//! TTL; a run with `no_cache` bypasses it.

use std::time::Duration;

use aura_proto::view::Timestamp;
use serde::{Deserialize, Serialize};

use crate::evidence::{Digest, EvidenceStore};
use crate::store::StoreError;
use crate::targets::ChatReply;

#[derive(Clone)]
pub struct ResponseCache {
    tree: sled::Tree,
    evidence: EvidenceStore,
    ttl: Duration,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    response: Digest,
    latency_ms: u64,
    usage_tokens: Option<u32>,
    stored: Timestamp,
}

impl ResponseCache {
    pub fn open(db: &sled::Db, evidence: EvidenceStore, ttl: Duration) -> Result<Self, StoreError> {
        Ok(Self {
            tree: db.open_tree("cache")?,
            evidence,
            ttl,
        })
    }

    pub fn get(&self, key: &Digest) -> Option<ChatReply> {
        let bytes = self.tree.get(key.0).ok()??;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        if Timestamp::now().0.saturating_sub(e.stored.0) > self.ttl.as_millis() as u64 {
            let _ = self.tree.remove(key.0);
            return None;
        }
        let text = self.evidence.get_text(&e.response).ok()??;
        Some(ChatReply {
            text,
            latency: Duration::from_millis(e.latency_ms),
            usage_tokens: e.usage_tokens,
            tool_calls: Vec::new(),
        })
    }

    /// Removes the entries older than the TTL: requests with fresh canaries are never
    /// asked again, so their entries would otherwise stay forever. Returns how many.
    pub fn sweep_expired(&self) -> Result<u64, StoreError> {
        let now = Timestamp::now().0;
        let ttl = self.ttl.as_millis() as u64;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.tree.iter() {
            let (k, v) = item?;
            let expired = serde_json::from_slice::<Entry>(&v)
                .map_or(true, |e| now.saturating_sub(e.stored.0) > ttl);
            if expired {
                batch.remove(k);
                n += 1;
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(n)
    }

    pub fn put(&self, key: &Digest, reply: &ChatReply) -> Result<(), StoreError> {
        if !reply.tool_calls.is_empty() {
            // Tool calls are not kept in the cache entry; such answers are not cached.
            return Ok(());
        }
        let response = self.evidence.put(reply.text.as_bytes())?;
        let e = Entry {
            response,
            latency_ms: reply.latency.as_millis() as u64,
            usage_tokens: reply.usage_tokens,
            stored: Timestamp::now(),
        };
        let bytes = serde_json::to_vec(&e).map_err(|e| StoreError::Encode {
            what: "cache entry",
            message: e.to_string(),
        })?;
        self.tree.insert(key.0, bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_swept_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let evidence = EvidenceStore::open(&db).unwrap();
        let cache = ResponseCache::open(&db, evidence, Duration::from_secs(3600)).unwrap();
        let reply = ChatReply {
            text: "fresh".into(),
            latency: Duration::from_millis(5),
            usage_tokens: None,
            tool_calls: Vec::new(),
        };
        let (fresh, stale) = (Digest::of(b"fresh"), Digest::of(b"stale"));
        cache.put(&fresh, &reply).unwrap();
        cache.put(&stale, &reply).unwrap();
        // Age the second entry past the TTL, as two hours of waiting would.
        let mut e: Entry =
            serde_json::from_slice(&cache.tree.get(stale.0).unwrap().unwrap()).unwrap();
        e.stored = Timestamp(e.stored.0 - 2 * 3_600_000);
        cache
            .tree
            .insert(stale.0, serde_json::to_vec(&e).unwrap())
            .unwrap();

        assert_eq!(cache.sweep_expired().unwrap(), 1);
        assert_eq!(cache.tree.len(), 1);
        assert_eq!(cache.get(&fresh).map(|r| r.text), Some("fresh".to_string()));
        assert!(cache.get(&stale).is_none());
    }
}
