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
