//! A child process for the crash-safety test: publishes to the bus and appends to the
//! event log in a loop, printing each sequence number once the publish (or commit) has
//! returned, until it is killed. `aura-crashy DIR START`.

use std::io::Write;
use std::sync::Arc;

use aurad::bus::{Bus, BusConfig, Meta, SledBus, publish};
use aurad::durability::Committer;
use aurad::eventlog::{EventLog, SledEventLog};
use aurad::evidence::EvidenceStore;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("DIR"));
    let start: u64 = args.next().and_then(|s| s.parse().ok()).expect("START");
    let db = sled::open(dir.join("db")).expect("store opens");
    let committer = Committer::start(&db);
    let evidence = EvidenceStore::open(&db).expect("evidence");
    let bus: Arc<dyn Bus> =
        Arc::new(SledBus::open(&db, BusConfig::default(), committer.clone()).expect("bus"));
    let log =
        SledEventLog::open(&db, evidence, committer, &dir.join("keys"), 50).expect("event log");
    let mut out = std::io::stdout().lock();
    for i in start.. {
        publish(&*bus, "crash", &i, Meta::correlated(format!("c{i}")))
            .await
            .expect("publish");
        writeln!(out, "published {i}").unwrap();
        log.append("crashy", "Counted", &serde_json::json!({ "i": i }))
            .expect("append");
        if i % 3 == 0 {
            log.commit().await.expect("commit");
            writeln!(out, "committed {i}").unwrap();
        }
        out.flush().unwrap();
    }
}
