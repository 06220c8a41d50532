//! The audit engine against a slow endpoint: 2,000 attempts at concurrency 64, each
//! answer delayed 50 ms by an OpenAI-compatible server on 127.0.0.1. Reports wall time
//! against the floor `attempts x latency / concurrency`, the daemon's CPU time per
//! attempt, and its peak memory. The daemon runs as its own process (`aurad-test`), so
//! /proc measures it alone. Run with `cargo bench -p aura-tests --bench engine`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aura_proto::wire::{Reply, RequestBody, StartAudit, Subscription};
use aura_tests::Setup;
use aura_tests::fake_llm::{Action, FakeLlm};

const ATTEMPTS: usize = 2_000;
const CONCURRENCY: usize = 64;
const LATENCY: Duration = Duration::from_millis(50);

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start after ")".
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let llm =
        FakeLlm::start(|_| Action::chat("Paris is the capital of France.").delayed(LATENCY)).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(policies.join("frameworks")).unwrap();
    let values: Vec<String> = (0..ATTEMPTS).map(|i| format!("\"{i}\"")).collect();
    std::fs::write(
        policies.join("load.yaml"),
        format!(
            "id: LOAD-1\ntitle: load\nseverity: low\nkind: probe\nprobe:\n  prompts: [\"Question {{{{n}}}}: what is the capital of France?\"]\n  variables: {{ n: [{}] }}\ndetectors:\n  - type: refusal\n    expect: comply\n",
            values.join(", ")
        ),
    )
    .unwrap();
    let target = format!(
        "name: slow\nkind: openai\nendpoint: {}\nmodel: m\nretries: 0\nconcurrency: {CONCURRENCY}\n",
        llm.url()
    );
    let setup = Setup {
        targets: vec![("slow.yaml".into(), target)],
        policies,
        extra_config: "\n[audit]\ncache = false\n".into(),
        ..Setup::default()
    };
    setup.write(dir.path());
    let socket = dir.path().join("run/aurad.sock");
    // AURA_BENCH_DAEMON runs another binary (e.g. a profiler wrapping aurad-test).
    let bin = std::env::var("AURA_BENCH_DAEMON")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_aurad-test").to_string());
    let mut daemon = Command::new(bin)
        .args([
            "--config",
            dir.path().join("aurad.toml").to_str().unwrap(),
            "run",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut client = loop {
        if let Ok(c) = aura::client::Client::connect(&socket).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Progress arrives pushed, as `aura audit run --wait` sees it: the finish is timed
    // exactly and no polling adds daemon work.
    let mut updates = client.take_updates().unwrap();
    client
        .request(RequestBody::Subscribe(Subscription::Audits))
        .await
        .unwrap();
    let pid = daemon.id();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let run = match client
        .request(RequestBody::StartAudit(StartAudit::target("slow", None)))
        .await
        .unwrap()
    {
        Reply::AuditStarted { run } => run,
        other => panic!("{other:?}"),
    };
    loop {
        let summaries = updates.recv().await.unwrap().into_audits();
        if summaries
            .iter()
            .any(|a| a.run == run && a.state.is_finished())
        {
            break;
        }
    }
    let wall = started.elapsed();
    let cpu = cpu_seconds(pid) - cpu_before;
    let Ok(Reply::Audit(detail)) = client.request(RequestBody::GetAudit { run }).await else {
        panic!("no audit detail for run {run}");
    };
    let peak = peak_rss_mib(pid);
    assert_eq!(detail.summary.attempts_done as usize, ATTEMPTS);
    assert_eq!(llm.count(), ATTEMPTS);
    if std::env::var_os("AURA_BENCH_ARRIVALS").is_some() {
        let mut at: Vec<_> = llm.requests().iter().map(|r| r.at).collect();
        at.sort();
        let t0 = at[0];
        let mut buckets = std::collections::BTreeMap::new();
        for t in &at {
            *buckets.entry((*t - t0).as_millis() / 10).or_insert(0) += 1;
        }
        eprintln!(
            "arrivals per 10 ms: {:?}",
            buckets.iter().take(40).collect::<Vec<_>>()
        );
    }
    // Where the time over the floor goes: before the first request (planning), between
    // waves (recording each answer before its slot is reused), after the last answer
    // (verdicts, report).
    let mut at: Vec<Instant> = llm.requests().iter().map(|r| r.at).collect();
    at.sort();
    let first = at[0].saturating_duration_since(started);
    let tail = (started + wall).saturating_duration_since(at[at.len() - 1] + LATENCY);
    eprintln!(
        "first request {:.1} ms after the start; finished {:.1} ms after the last answer",
        first.as_secs_f64() * 1e3,
        tail.as_secs_f64() * 1e3
    );
    let floor = LATENCY.as_secs_f64() * ATTEMPTS as f64 / CONCURRENCY as f64;
    println!(
        "| attempts | concurrency | answer latency | wall time | floor | over floor | daemon CPU per attempt | daemon peak RSS | most in flight at the server |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {ATTEMPTS} | {CONCURRENCY} | {} ms | {:.2} s | {floor:.2} s | {:+.1}% | {:.0} µs | {peak:.1} MiB | {} |",
        LATENCY.as_millis(),
        wall.as_secs_f64(),
        (wall.as_secs_f64() / floor - 1.0) * 100.0,
        cpu / ATTEMPTS as f64 * 1e6,
        llm.max_in_flight()
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = daemon.wait();
}
