//! A daemon killed with SIGKILL in the middle of a 300-attempt run resumes it after a
//! restart: the run completes, and the server's own record shows that no completed
//! attempt was sent twice (only attempts in flight at the crash, at most the
//! concurrency, may be). The daemon runs as a separate process (the `aurad-test`
//! binary) so it can really be killed; the server lives in the test and outlives it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aura::client::Client;
use aura_proto::view::{AuditDetail, RunState, Verdict};
use aura_proto::wire::{Reply, RequestBody, StartAudit};
use aura_tests::audit::{policies_with, probe};
use aura_tests::fake_llm::{Action, FakeLlm};
use aura_tests::{Setup, wait_for};

const ATTEMPTS: usize = 300;
const CONCURRENCY: usize = 4;
const T: Duration = Duration::from_secs(60);

/// A daemon process, killed (SIGKILL) when dropped so a failing test leaves nothing.
struct DaemonProcess {
    child: Child,
}

impl DaemonProcess {
    fn spawn(config: &Path, log: &Path) -> Self {
        let log = File::options().create(true).append(true).open(log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aurad-test"));
        cmd.arg("--config")
            .arg(config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Nothing from the test's environment may redirect it.
        for var in [
            "AURA_CONFIG",
            "AURA_DATA_DIR",
            "AURA_SOCKET",
            "AURA_POLICIES_DIR",
            "AURA_TARGETS_DIR",
            "AURA_LOG",
            "AURA_LOG_FORMAT",
            "NOTIFY_SOCKET",
        ] {
            cmd.env_remove(var);
        }
        Self {
            child: cmd.spawn().expect("the aurad-test binary starts"),
        }
    }

    /// SIGKILL: no shutdown, no flush, no cleanup.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(socket: &Path) -> Client {
    wait_for("the daemon's socket", T, || async {
        Client::connect(socket).await.ok()
    })
    .await
}

async fn get(client: &Client, run: aura_proto::view::RunId) -> AuditDetail {
    match client.request(RequestBody::GetAudit { run }).await.unwrap() {
        Reply::Audit(d) => d,
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_run_then_restart_completes_without_resending_completed_attempts() {
    let llm =
        FakeLlm::start(|_| Action::chat("Here is the answer.").delayed(Duration::from_millis(20)))
            .await;
    // 30 prompts x 10 values: 300 distinct requests.
    let prompts: Vec<String> = (1..=30)
        .map(|i| format!("Question {i} about item {{{{n}}}}: what is it?"))
        .collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let control = probe(
        "T-CRASH",
        &prompts,
        "    variables:\n      n: [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\", \"j\"]\n",
        "  - type: refusal\n    expect: comply\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        targets: vec![(
            "llm.yaml".into(),
            format!(
                "name: llm\nkind: openai\nendpoint: {}\nmodel: m\nretries: 0\nconcurrency: {CONCURRENCY}\n",
                llm.url()
            ),
        )],
        policies: policies_with(dir.path(), &[("crash.yaml", control)]),
        // Every attempt must reach the server, so a re-send is visible.
        extra_config: "\n[audit]\ncache = false\n".into(),
        ..Setup::default()
    };
    setup.write(dir.path());
    let config: PathBuf = dir.path().join("aurad.toml");
    let socket = dir.path().join("run/aurad.sock");
    let log = dir.path().join("aurad.log");
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut daemon = DaemonProcess::spawn(&config, &log);
    let client = connect(&socket).await;
    let run = match client
        .request(RequestBody::StartAudit(StartAudit::target("llm", None)))
        .await
        .unwrap()
    {
        Reply::AuditStarted { run } => run,
        other => panic!("unexpected reply {other:?}"),
    };
    wait_for("a third of the attempts to reach the server", T, || {
        std::future::ready((llm.count() >= 100).then_some(()))
    })
    .await;
    daemon.kill();
    drop(client);
    let before_kill = llm.count();
    assert!(
        before_kill < ATTEMPTS,
        "the kill came after the run: {before_kill}"
    );

    // Start again on the same data dir and socket; the run resumes by itself.
    let _daemon = DaemonProcess::spawn(&config, &log);
    let client = connect(&socket).await;
    let detail = wait_for("the resumed run to finish", T, || async {
        let d = get(&client, run).await;
        d.summary.state.is_finished().then_some(d)
    })
    .await;
    assert_eq!(
        detail.summary.state,
        RunState::Completed,
        "{}",
        daemon_log()
    );
    assert_eq!(detail.summary.attempts_total as usize, ATTEMPTS);
    assert_eq!(detail.summary.attempts_done as usize, ATTEMPTS);
    let c = detail
        .controls
        .iter()
        .find(|c| c.control == "T-CRASH")
        .unwrap();
    assert_eq!(c.verdict, Verdict::Pass, "{c:#?}");
    assert_eq!(c.attempts.pass as usize, ATTEMPTS, "{c:?}");

    // The server's record: every attempt arrived, and only the few in flight at the
    // crash arrived twice.
    let reqs = llm.requests();
    assert!(
        reqs.len() > before_kill,
        "the restarted daemon sent the rest"
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &reqs {
        *seen.entry(r.body.to_string()).or_default() += 1;
    }
    assert_eq!(seen.len(), ATTEMPTS, "every attempt was sent");
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(b, _)| b)
        .collect();
    assert!(
        twice.len() <= CONCURRENCY && seen.values().all(|n| *n <= 2),
        "{} attempts sent twice (at most {CONCURRENCY} were in flight): {twice:#?}",
        twice.len()
    );
    assert_eq!(reqs.len(), ATTEMPTS + twice.len());
}
