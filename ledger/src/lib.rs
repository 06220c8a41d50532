//! `aura-ledger`: the event log's record format, its hash chain, signed checkpoints, the
//! export format, and verification. The daemon writes the log; `aura events verify`
//! checks it, online or from an export, with nothing but this crate and a public key.
//!
//! # The chain
//!
//! Each record is `{seq, time, actor, kind, payload_digest, prev_hash, hash}` with
//! `hash = SHA-256(prev_hash || canonical)`, where `canonical` is the JSON array
//! `["aura-event-v1", seq, time, actor, kind, payload_digest]` (compact, UTF-8) and the
//! first record's `prev_hash` is 32 zero bytes. Payloads (prompts, responses, request
//! details) live outside the chain, addressed by their SHA-256, so a retention policy can
//! purge them: a purged payload is reported as purged, not as tampered.
//!
//! # Checkpoints
//!
//! Every so often the daemon signs `"aura-checkpoint-v1\n{seq}\n{hash}\n{time}"` with an
//! Ed25519 key made on its first start. A verifier with the public key can then trust
//! the chain up to each checkpoint; a chain recomputed by someone without the key fails
//! at the first checkpoint.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Digest hex of 32 zero bytes: the `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    /// Milliseconds since the Unix epoch, UTC.
    pub time: u64,
    /// Who did it: an agent, `operator:uid=1000`, `daemon`.
    pub actor: String,
    /// What happened, noun + past-tense verb: `AuditStarted`, `VerdictRecorded`.
    pub kind: String,
    /// SHA-256 (hex) of the payload JSON.
    pub payload_digest: String,
    pub prev_hash: String,
    pub hash: String,
}

impl EventRecord {
    /// Builds the next record after `prev_hash`.
    pub fn seal(
        seq: u64,
        time: u64,
        actor: &str,
        kind: &str,
        payload_digest: &str,
        prev_hash: &str,
    ) -> Self {
        let mut r = EventRecord {
            seq,
            time,
            actor: actor.to_string(),
            kind: kind.to_string(),
            payload_digest: payload_digest.to_string(),
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        r
    }

    /// The bytes the hash covers besides `prev_hash`.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(&(
            "aura-event-v1",
            self.seq,
            self.time,
            &self.actor,
            &self.kind,
            &self.payload_digest,
        ))
        .unwrap_or_default()
    }

    pub fn compute_hash(&self) -> String {
        let prev = hex::decode(&self.prev_hash).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(&prev);
        h.update(self.canonical());
        hex::encode(h.finalize())
    }
}

/// A signed statement that the chain up to `seq` ends in `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    pub time: u64,
    /// Ed25519 signature (hex) of [`checkpoint_message`].
    pub signature: String,
}

pub fn checkpoint_message(seq: u64, hash: &str, time: u64) -> Vec<u8> {
    format!("aura-checkpoint-v1\n{seq}\n{hash}\n{time}").into_bytes()
}

impl Checkpoint {
    pub fn sign(key: &SigningKey, seq: u64, hash: &str, time: u64) -> Self {
        let sig = key.sign(&checkpoint_message(seq, hash, time));
        Checkpoint {
            seq,
            hash: hash.to_string(),
            time,
            signature: hex::encode(sig.to_bytes()),
        }
    }

    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(&checkpoint_message(self.seq, &self.hash, self.time), &sig)
            .is_ok()
    }
}

/// SHA-256 (hex) of bytes.
pub fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The public key as text: `aura-ed25519:<64 hex digits>`.
pub fn format_public_key(key: &VerifyingKey) -> String {
    format!("aura-ed25519:{}", hex::encode(key.to_bytes()))
}

pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let t = text.trim();
    let hexpart = t.strip_prefix("aura-ed25519:").unwrap_or(t);
    let bytes = hex::decode(hexpart).map_err(|_| "the public key is not hex".to_string())?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "the public key must be 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&arr).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// One line of an export (JSON Lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Event {
        record: EventRecord,
        /// The payload's exact JSON text (the digest covers these bytes; re-encoding
        /// parsed JSON could change them), or `None` when it was purged.
        payload: Option<String>,
    },
    Checkpoint(Checkpoint),
}

/// What verification found wrong, naming the first bad place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("record {seq}: its contents do not match its hash (changed after it was written)")]
    Altered { seq: u64 },
    #[error(
        "record {seq}: it does not follow record {prev} (its prev_hash does not match); a record was removed, inserted or reordered"
    )]
    Broken { seq: u64, prev: u64 },
    #[error(
        "record {found} comes where record {expected} should: records are missing or out of order"
    )]
    Sequence { expected: u64, found: u64 },
    #[error("record {seq}: its payload does not match payload_digest")]
    Payload { seq: u64 },
    #[error("checkpoint at record {seq}: the signature does not verify with the given public key")]
    BadSignature { seq: u64 },
    #[error("checkpoint at record {seq}: it signs a different hash than the record has")]
    CheckpointMismatch { seq: u64 },
    #[error("line {line}: {message}")]
    Unreadable { line: usize, message: String },
}

/// What a successful verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub records: u64,
    pub checkpoints: u64,
    /// The last record covered by a verified signature.
    pub signed_through: Option<u64>,
    /// Records whose payload was purged (reported, not an error).
    pub purged_payloads: u64,
}

/// Verifies records in order (starting at seq 1, or at the first record given if
/// `from_anchor` holds its expected prev_hash), their payloads where given, and the
/// checkpoints (signature, and the hash of the record they name).
pub fn verify<'a>(
    records: impl IntoIterator<Item = (&'a EventRecord, Option<PayloadCheck<'a>>)>,
    checkpoints: &[Checkpoint],
    key: Option<&VerifyingKey>,
) -> Result<Verified, VerifyError> {
    let mut out = Verified::default();
    let mut prev_hash = GENESIS.to_string();
    let mut hashes = std::collections::BTreeMap::new();
    for (expected, (r, payload)) in (1u64..).zip(records) {
        if r.seq != expected {
            return Err(VerifyError::Sequence {
                expected,
                found: r.seq,
            });
        }
        if r.prev_hash != prev_hash {
            return Err(VerifyError::Broken {
                seq: r.seq,
                prev: r.seq.saturating_sub(1),
            });
        }
        if r.compute_hash() != r.hash {
            return Err(VerifyError::Altered { seq: r.seq });
        }
        match payload {
            Some(PayloadCheck::Bytes(b)) if digest_hex(b) != r.payload_digest => {
                return Err(VerifyError::Payload { seq: r.seq });
            }
            Some(PayloadCheck::Purged) => out.purged_payloads += 1,
            _ => {}
        }
        hashes.insert(r.seq, r.hash.clone());
        prev_hash = r.hash.clone();
        out.records += 1;
    }
    for cp in checkpoints {
        if let Some(k) = key
            && !cp.verify(k)
        {
            return Err(VerifyError::BadSignature { seq: cp.seq });
        }
        match hashes.get(&cp.seq) {
            Some(h) if *h != cp.hash => {
                return Err(VerifyError::CheckpointMismatch { seq: cp.seq });
            }
            Some(_) => {
                out.checkpoints += 1;
                if key.is_some() {
                    out.signed_through = out.signed_through.max(Some(cp.seq));
                }
            }
            // A checkpoint beyond the records given (a partial export) is not checked.
            None => {}
        }
    }
    Ok(out)
}

/// What is known about a record's payload during verification.
#[derive(Debug, Clone, Copy)]
pub enum PayloadCheck<'a> {
    Bytes(&'a [u8]),
    Purged,
}

/// Reads an export and verifies it.
pub fn verify_export(text: &str, key: Option<&VerifyingKey>) -> Result<Verified, VerifyError> {
    let mut records = Vec::new();
    let mut payloads: Vec<Option<Vec<u8>>> = Vec::new();
    let mut checkpoints = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ExportLine =
            serde_json::from_str(line).map_err(|e| VerifyError::Unreadable {
                line: i + 1,
                message: format!("not an export line: {e}"),
            })?;
        match parsed {
            ExportLine::Event { record, payload } => {
                payloads.push(payload.map(String::into_bytes));
                records.push(record);
            }
            ExportLine::Checkpoint(c) => checkpoints.push(c),
        }
    }
    let items = records.iter().zip(payloads.iter()).map(|(r, p)| {
        let check = match p {
            Some(b) => PayloadCheck::Bytes(b.as_slice()),
            None => PayloadCheck::Purged,
        };
        (r, Some(check))
    });
    verify(items, &checkpoints, key)
}

/// A new signing key from 32 random bytes.
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

pub use ed25519_dalek::{SigningKey as Key, VerifyingKey as PublicKey};

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<EventRecord> {
        let mut out: Vec<EventRecord> = Vec::new();
        for seq in 1..=n {
            let prev = out
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or_else(|| GENESIS.into());
            let payload = format!("{{\"n\":{seq}}}");
            out.push(EventRecord::seal(
                seq,
                1000 + seq,
                "daemon",
                "Thing",
                &digest_hex(payload.as_bytes()),
                &prev,
            ));
        }
        out
    }

    fn check(
        records: &[EventRecord],
        cps: &[Checkpoint],
        key: Option<&VerifyingKey>,
    ) -> Result<Verified, VerifyError> {
        verify(records.iter().map(|r| (r, None)), cps, key)
    }

    #[test]
    fn an_intact_chain_with_a_signed_checkpoint_verifies() {
        let key = signing_key_from_seed([7; 32]);
        let c = chain(10);
        let cp = Checkpoint::sign(&key, 10, &c[9].hash, 2000);
        let v = check(&c, &[cp], Some(&key.verifying_key())).unwrap();
        assert_eq!((v.records, v.signed_through), (10, Some(10)));
    }

    #[test]
    fn tampering_is_caught_and_named() {
        let key = signing_key_from_seed([7; 32]);
        let c = chain(10);
        let mut altered = c.clone();
        altered[4].kind = "Other".into();
        assert_eq!(
            check(&altered, &[], None),
            Err(VerifyError::Altered { seq: 5 })
        );
        let mut removed = c.clone();
        removed.remove(4);
        assert_eq!(
            check(&removed, &[], None),
            Err(VerifyError::Sequence {
                expected: 5,
                found: 6
            })
        );
        let mut swapped = c.clone();
        swapped.swap(3, 4);
        assert_eq!(
            check(&swapped, &[], None),
            Err(VerifyError::Sequence {
                expected: 4,
                found: 5
            })
        );
        // A forger who rewrites a record and recomputes the chain still fails at the
        // checkpoint signed by the real key.
        let cp = Checkpoint::sign(&key, 10, &c[9].hash, 2000);
        let mut forged: Vec<EventRecord> = Vec::new();
        for r in &c {
            let prev = forged
                .last()
                .map(|x| x.hash.clone())
                .unwrap_or_else(|| GENESIS.into());
            let kind = if r.seq == 3 {
                "Forged"
            } else {
                r.kind.as_str()
            };
            forged.push(EventRecord::seal(
                r.seq,
                r.time,
                &r.actor,
                kind,
                &r.payload_digest,
                &prev,
            ));
        }
        assert_eq!(
            check(
                &forged,
                std::slice::from_ref(&cp),
                Some(&key.verifying_key())
            ),
            Err(VerifyError::CheckpointMismatch { seq: 10 })
        );
        // A checkpoint signed with another key.
        let other = signing_key_from_seed([9; 32]);
        let fake = Checkpoint::sign(&other, 10, &forged[9].hash, 2000);
        assert_eq!(
            check(&forged, &[fake], Some(&key.verifying_key())),
            Err(VerifyError::BadSignature { seq: 10 })
        );
    }

    #[test]
    fn purged_payloads_are_reported_not_failed() {
        let c = chain(2);
        let good = b"{\"n\":1}".to_vec();
        let items = vec![
            (&c[0], Some(PayloadCheck::Bytes(&good))),
            (&c[1], Some(PayloadCheck::Purged)),
        ];
        let v = verify(items, &[], None).unwrap();
        assert_eq!(v.purged_payloads, 1);
        let bad = b"{\"n\":9}".to_vec();
        let items = vec![(&c[0], Some(PayloadCheck::Bytes(&bad)))];
        assert_eq!(
            verify(items, &[], None),
            Err(VerifyError::Payload { seq: 1 })
        );
    }

    #[test]
    fn public_keys_round_trip() {
        let key = signing_key_from_seed([1; 32]).verifying_key();
        assert_eq!(parse_public_key(&format_public_key(&key)).unwrap(), key);
        assert!(parse_public_key("aura-ed25519:zz").is_err());
    }
}
