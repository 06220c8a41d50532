//! Request round trips over the daemon's socket: `Status` from 1 and from 32 concurrent
//! clients; p50 and p99. Run with `cargo bench -p aura-tests --bench socket_rtt`.
//!
//! The daemon runs on its own 2-thread runtime and the clients on another, in one
//! process, so the numbers include framing, bincode, the socket and the daemon's
//! request path, but no process start-up.

use std::time::{Duration, Instant};

use aura_proto::wire::{Reply, RequestBody};
use aura_tests::{Setup, TestDaemon};

const WARMUP: usize = 200;
const REQUESTS_PER_CLIENT: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let daemon_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let daemon = daemon_rt.block_on(TestDaemon::start(Setup::default()));
    let socket = daemon.socket.clone();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| clients | requests | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    for clients in [1usize, 32] {
        let socket = socket.clone();
        let mut all = client_rt.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let socket = socket.clone();
                tasks.push(tokio::spawn(async move {
                    let c = aura::client::Client::connect(&socket).await.unwrap();
                    for _ in 0..WARMUP {
                        c.request(RequestBody::Status).await.unwrap();
                    }
                    let mut lat = Vec::with_capacity(REQUESTS_PER_CLIENT);
                    for _ in 0..REQUESTS_PER_CLIENT {
                        let t = Instant::now();
                        let r = c.request(RequestBody::Status).await.unwrap();
                        lat.push(t.elapsed());
                        assert!(matches!(r, Reply::Status(_)));
                    }
                    lat
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        });
        all.sort();
        println!(
            "| {clients} | {} | {:.0} µs | {:.0} µs | {:.0} µs |",
            all.len(),
            percentile(&all, 0.50).as_secs_f64() * 1e6,
            percentile(&all, 0.99).as_secs_f64() * 1e6,
            all.last().unwrap().as_secs_f64() * 1e6,
        );
    }
    daemon_rt.block_on(async move { daemon.stop().await });
}
