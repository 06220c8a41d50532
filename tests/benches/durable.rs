//! The durable core's numbers: bus throughput and latency, event log appends, knowledge
//! base search latency and recall. Run with `cargo bench -p aura-tests --bench durable`
//! (add `-- quick` to skip the 100,000-entry knowledge base, `-- kb` for the knowledge
//! base alone).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aurad::bus::{Bus, BusConfig, Meta, SledBus, publish};
use aurad::durability::Committer;
use aurad::eventlog::{EventLog, SledEventLog};
use aurad::evidence::EvidenceStore;
use aurad::kb::{HashedEmbedder, NewEntry, SledKnowledge};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn bus_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let bus = Arc::new(SledBus::open(&db, BusConfig::default(), Committer::start(&db)).unwrap());
    const N: u64 = 40_000;
    const PUBLISHERS: u64 = 64;
    let start = Instant::now();
    let consumer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for _ in 0..N {
                let d = bus.receive("bench").await.unwrap();
                bus.ack(&d).unwrap();
            }
        })
    };
    let mut pubs = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        pubs.push(tokio::spawn(async move {
            for i in 0..N / PUBLISHERS {
                publish(&*bus, "bench", &(p * N + i), Meta::default())
                    .await
                    .unwrap();
            }
        }));
    }
    for p in pubs {
        p.await.unwrap();
    }
    let published = start.elapsed();
    consumer.await.unwrap();
    let total = start.elapsed();
    println!(
        "| bus: durable publish ({PUBLISHERS} publishers, group commit) | {N} messages | {:.0} msg/s published, {:.0} msg/s published-and-delivered |",
        N as f64 / published.as_secs_f64(),
        N as f64 / total.as_secs_f64()
    );
}

async fn bus_latency() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let bus = Arc::new(SledBus::open(&db, BusConfig::default(), Committer::start(&db)).unwrap());
    const N: usize = 5_000;
    let origin = Instant::now();
    let consumer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(N);
            for _ in 0..N {
                let d = bus.receive("lat").await.unwrap();
                let sent: u64 = d.envelope.decode().unwrap();
                lat.push(origin.elapsed() - Duration::from_nanos(sent));
                bus.ack(&d).unwrap();
            }
            lat
        })
    };
    // 1,000 messages a second, each published by its own task (as agents do).
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut pubs = Vec::with_capacity(N);
    for _ in 0..N {
        tick.tick().await;
        let bus = bus.clone();
        let sent = origin.elapsed().as_nanos() as u64;
        pubs.push(tokio::spawn(async move {
            let t = Instant::now();
            publish(&*bus, "lat", &sent, Meta::default()).await.unwrap();
            t.elapsed()
        }));
    }
    let mut publat = Vec::new();
    for p in pubs {
        publat.push(p.await.unwrap());
    }
    publat.sort();
    println!(
        "| bus: publish call (durable) at 1,000 msg/s | {N} messages | p50 {}, p99 {} |",
        ms(pct(&publat, 0.5)),
        ms(pct(&publat, 0.99))
    );
    let mut lat = consumer.await.unwrap();
    lat.sort();
    println!(
        "| bus: publish-to-delivery latency at 1,000 msg/s | {N} messages | p50 {}, p99 {}, max {} |",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
}

async fn event_appends() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let committer = Committer::start(&db);
    let ev = EvidenceStore::open(&db).unwrap();
    let log =
        Arc::new(SledEventLog::open(&db, ev, committer, &dir.path().join("keys"), 1000).unwrap());
    const N: u64 = 50_000;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..N / 16 {
                log.append("bench", "Counted", &serde_json::json!({ "t": t, "i": i }))
                    .unwrap();
                if i % 64 == 63 {
                    log.commit().await.unwrap();
                }
            }
            log.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = start.elapsed();
    let records = log.read(1, usize::MAX).unwrap();
    let v = aura_ledger::verify(
        records.iter().map(|r| (r, None)),
        &log.checkpoints().unwrap(),
        Some(&log.public_key()),
    )
    .unwrap();
    assert_eq!(v.records, N);
    println!(
        "| event log: durable appends (16 writers, payload to evidence, checkpoint every 1,000) | {N} records | {:.0} appends/s (chain re-verified) |",
        N as f64 / took.as_secs_f64()
    );
}

async fn kb(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let kb =
        SledKnowledge::open(&db, &dir.path().join("kb"), Arc::new(HashedEmbedder), 90.0).unwrap();
    let words: Vec<String> = (0..600)
        .map(|i| format!("w{}x{}", i * 37 % 601, i % 13))
        .collect();
    let text = |i: usize| {
        let mut s = String::new();
        let mut x = i as u64 * 2654435761 + 1;
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(&words[(x % words.len() as u64) as usize]);
            s.push(' ');
        }
        s
    };
    let start = Instant::now();
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(1_000) {
        let batch = chunk
            .iter()
            .map(|&i| NewEntry {
                text: text(i),
                kind: "k".into(),
                tags: vec![],
                source: "b".into(),
                confidence: 0.9,
            })
            .collect();
        kb.add_many(batch).await.unwrap();
    }
    let build = start.elapsed();
    let queries: Vec<Vec<f32>> = (0..200)
        .map(|i| aurad::embed::hashed_ngrams(&text(i * 7919 % n)))
        .collect();
    // Exact answers first, so the timed searches run back to back (as ann-benchmarks
    // does) rather than each after a full scan has flushed the caches.
    let exact: Vec<std::collections::HashSet<u64>> = queries
        .iter()
        .map(|q| {
            let e = kb.nearest_exact(q, 10).unwrap();
            e.iter().map(|(id, _)| *id).collect()
        })
        .collect();
    let mut lat = Vec::new();
    let mut got = Vec::new();
    for q in &queries {
        let t = Instant::now();
        got.push(kb.nearest(q, 10));
        lat.push(t.elapsed());
    }
    let mut recall = 0.0;
    for (g, e) in got.iter().zip(&exact) {
        recall += g.iter().filter(|(id, _)| e.contains(id)).count() as f64 / e.len().max(1) as f64;
    }
    lat.sort();
    println!(
        "| knowledge base: top-10 search (index only; built-in embedder) | {n} entries (built in {:.1} s) | p50 {}, p99 {}, recall@10 {:.3} |",
        build.as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        recall / queries.len() as f64
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let kb_only = std::env::args().any(|a| a == "kb");
    println!("| what | size | result |");
    println!("|---|---|---|");
    if !kb_only {
        bus_throughput().await;
        bus_latency().await;
        event_appends().await;
    }
    kb(10_000).await;
    if !quick {
        kb(100_000).await;
    }
}
