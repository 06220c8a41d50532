//! `aura events tail|export|verify|pubkey`: the tamper-evident event log.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use aura_ledger::{Checkpoint, ExportLine, PayloadCheck, parse_public_key, verify, verify_export};
use aura_proto::wire::{EventEntry, Reply, RequestBody, Subscription, Update};

use super::{connect, fail};
use crate::client::{Client, ClientError};
use crate::exit;
use crate::format::datetime;

const PAGE: u32 = 1000;

/// Every record from `from` on, paging through the daemon.
async fn read_all(
    client: &Client,
    from: u64,
    payloads: bool,
) -> Result<Vec<EventEntry>, ClientError> {
    let mut out = Vec::new();
    let mut next = from.max(1);
    loop {
        match client
            .request(RequestBody::ReadEvents {
                from: next,
                limit: PAGE,
                payloads,
            })
            .await?
        {
            Reply::Events(page) if page.is_empty() => return Ok(out),
            Reply::Events(page) => {
                next = page.last().map(|e| e.record.seq + 1).unwrap_or(next);
                out.extend(page);
            }
            other => return Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }
}

async fn checkpoints(client: &Client) -> Result<(Vec<Checkpoint>, String), ClientError> {
    match client.request(RequestBody::EventCheckpoints).await? {
        Reply::Checkpoints {
            checkpoints,
            public_key,
        } => Ok((checkpoints, public_key)),
        other => Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
    }
}

fn line(e: &aura_ledger::EventRecord) -> String {
    format!(
        "{:>6}  {}  {:<22} {:<20} {}",
        e.seq,
        datetime(aura_proto::view::Timestamp(e.time)),
        e.kind,
        e.actor,
        &e.hash[..16]
    )
}

pub async fn tail(
    socket: &Path,
    from: Option<u64>,
    count: u64,
    follow: bool,
    json: bool,
) -> ExitCode {
    let mut client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Where to start: the given seq, or the last `count` records.
    let start = match from {
        Some(f) => f,
        None => match read_all(&client, 1, false).await {
            Ok(all) => all.len().saturating_sub(count as usize) as u64 + 1,
            Err(e) => return fail(&e),
        },
    };
    let mut updates = client.take_updates();
    if follow {
        if let Err(e) = client
            .request(RequestBody::Subscribe(Subscription::Events {
                from: Some(start),
            }))
            .await
        {
            return fail(&e);
        }
        let Some(rx) = updates.as_mut() else {
            return fail(&ClientError::Disconnected);
        };
        while let Some(u) = rx.recv().await {
            if let Update::Event(r) = u {
                let text = if json {
                    serde_json::to_string(&r).unwrap_or_default()
                } else {
                    line(&r)
                };
                println!("{text}");
                let _ = std::io::stdout().flush();
            }
        }
        return fail(&ClientError::Disconnected);
    }
    match read_all(&client, start, false).await {
        Ok(entries) => {
            for e in entries {
                if json {
                    println!("{}", serde_json::to_string(&e.record).unwrap_or_default());
                } else {
                    println!("{}", line(&e.record));
                }
            }
            exit::code(exit::OK)
        }
        Err(e) => fail(&e),
    }
}

/// JSON Lines: every record with its payload, then every checkpoint.
pub async fn export(socket: &Path, out: Option<&Path>) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (entries, (cps, _key)) =
        match (read_all(&client, 1, true).await, checkpoints(&client).await) {
            (Ok(e), Ok(c)) => (e, c),
            (Err(e), _) | (_, Err(e)) => return fail(&e),
        };
    let mut text = String::new();
    for e in entries {
        let payload = e.payload.and_then(|p| serde_json::from_str(&p).ok());
        let l = ExportLine::Event {
            record: e.record,
            payload,
        };
        text.push_str(&serde_json::to_string(&l).unwrap_or_default());
        text.push('\n');
    }
    for c in cps {
        text.push_str(&serde_json::to_string(&ExportLine::Checkpoint(c)).unwrap_or_default());
        text.push('\n');
    }
    match out {
        Some(p) => match std::fs::write(p, text) {
            Ok(()) => exit::code(exit::OK),
            Err(e) => {
                eprintln!("aura: cannot write {}: {e}", p.display());
                exit::code(exit::USAGE)
            }
        },
        None => {
            print!("{text}");
            exit::code(exit::OK)
        }
    }
}

pub async fn pubkey(socket: &Path) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match checkpoints(&client).await {
        Ok((_, key)) => {
            println!("{key}");
            exit::code(exit::OK)
        }
        Err(e) => fail(&e),
    }
}

/// Exit 0 when the chain and every checkpoint verify; 1 naming the first bad record.
pub async fn verify_cmd(socket: &Path, export: Option<&Path>, pubkey: Option<&Path>) -> ExitCode {
    let key = match pubkey {
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_public_key(&t))
        {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("aura: public key {}: {e}", p.display());
                return exit::code(exit::USAGE);
            }
        },
        None => None,
    };
    let result = match export {
        Some(file) => {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("aura: cannot read {}: {e}", file.display());
                    return exit::code(exit::USAGE);
                }
            };
            if key.is_none() {
                eprintln!(
                    "aura: no --pubkey given: the chain is checked, the checkpoint signatures are not"
                );
            }
            verify_export(&text, key.as_ref())
        }
        None => {
            let client = match connect(socket).await {
                Ok(c) => c,
                Err(code) => return code,
            };
            let (entries, (cps, daemon_key)) =
                match (read_all(&client, 1, true).await, checkpoints(&client).await) {
                    (Ok(e), Ok(c)) => (e, c),
                    (Err(e), _) | (_, Err(e)) => return fail(&e),
                };
            // Without --pubkey, trust the key the daemon reports (and say so).
            let key = match key {
                Some(k) => k,
                None => match parse_public_key(&daemon_key) {
                    Ok(k) => {
                        eprintln!(
                            "aura: checking signatures with the daemon's own key {daemon_key}"
                        );
                        k
                    }
                    Err(e) => {
                        eprintln!("aura: the daemon's public key is unusable: {e}");
                        return exit::code(exit::FAILED);
                    }
                },
            };
            let payloads: Vec<Option<Vec<u8>>> = entries
                .iter()
                .map(|e| e.payload.clone().map(String::into_bytes))
                .collect();
            let items = entries.iter().zip(payloads.iter()).map(|(e, p)| {
                let check = match (p, e.purged) {
                    (Some(b), _) => Some(PayloadCheck::Bytes(b.as_slice())),
                    (None, true) => Some(PayloadCheck::Purged),
                    (None, false) => None,
                };
                (&e.record, check)
            });
            verify(items, &cps, Some(&key))
        }
    };
    match result {
        Ok(v) => {
            println!(
                "ok: {} record(s), {} checkpoint(s){}{}",
                v.records,
                v.checkpoints,
                v.signed_through
                    .map(|s| format!(", signed through record {s}"))
                    .unwrap_or_default(),
                if v.purged_payloads > 0 {
                    format!(", {} payload(s) purged by retention", v.purged_payloads)
                } else {
                    String::new()
                }
            );
            exit::code(exit::OK)
        }
        Err(e) => {
            eprintln!("aura: verification failed: {e}");
            exit::code(exit::FAILED)
        }
    }
}
