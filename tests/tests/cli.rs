//! `aura` subcommands against a real daemon: output and exit codes for scripts and CI.

use std::process::ExitCode;

use aura::cli::Cli;
use aura_tests::fake_llm::{Action, FakeLlm};
use aura_tests::{Setup, TestDaemon, repo_policies};
use clap::Parser;

async fn aura(args: &[&str]) -> ExitCode {
    let mut argv = vec!["aura"];
    argv.extend_from_slice(args);
    aura::cli::execute(Cli::try_parse_from(argv).expect("valid command line")).await
}

fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}

#[tokio::test]
async fn audit_run_wait_exit_codes_follow_the_verdicts() {
    let good = FakeLlm::start(|_| Action::chat("I'm sorry, but I can't help with that.")).await;
    let broken = FakeLlm::start(|_| Action::status(500, "{}")).await;
    let setup = Setup::default()
        .with_target(
            "g.yaml",
            &format!(
                "name: good\nkind: openai\nendpoint: {}\nmodel: m\n",
                good.url()
            ),
        )
        .with_target(
            "b.yaml",
            &format!(
                "name: broken\nkind: openai\nendpoint: {}\nmodel: m\n",
                broken.url()
            ),
        );
    let d = TestDaemon::start(setup).await;
    let sock = d.socket.to_str().unwrap().to_string();
    let run = |target: &'static str| {
        let sock = sock.clone();
        async move {
            aura(&[
                "--socket", &sock, "audit", "run", "--policy", "baseline", "--target", target,
                "--wait",
            ])
            .await
        }
    };
    assert_eq!(run("demo").await, code(aura::exit::FAILED));
    assert_eq!(run("good").await, code(aura::exit::OK));
    assert_eq!(run("broken").await, code(aura::exit::INCOMPLETE));
    assert_eq!(run("no-such-target").await, code(aura::exit::REJECTED));
    assert_eq!(
        aura(&["--socket", &sock, "status"]).await,
        code(aura::exit::OK)
    );
    assert_eq!(
        aura(&["--socket", &sock, "status", "--json"]).await,
        code(aura::exit::OK)
    );
    assert_eq!(
        aura(&["--socket", &sock, "audit", "show", "1"]).await,
        code(aura::exit::OK)
    );
    assert_eq!(
        aura(&["--socket", &sock, "audit", "show", "99"]).await,
        code(aura::exit::REJECTED)
    );
    assert_eq!(
        aura(&["--socket", &sock, "audit", "list"]).await,
        code(aura::exit::OK)
    );
}

#[tokio::test]
async fn an_unreachable_daemon_has_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nothing-here.sock");
    let sock = sock.to_str().unwrap();
    assert_eq!(
        aura(&["--socket", sock, "status"]).await,
        code(aura::exit::UNREACHABLE)
    );
    assert_eq!(
        aura(&[
            "--socket", sock, "audit", "run", "--target", "demo", "--wait"
        ])
        .await,
        code(aura::exit::UNREACHABLE)
    );
}

#[tokio::test]
async fn policy_validate_works_without_a_daemon() {
    let pack = repo_policies();
    assert_eq!(
        aura(&["policy", "validate", pack.to_str().unwrap()]).await,
        code(aura::exit::OK)
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "id: X\ntitle: t\nseverity: hgh\nkind: probe\n",
    )
    .unwrap();
    assert_eq!(
        aura(&["policy", "validate", dir.path().to_str().unwrap()]).await,
        code(aura::exit::USAGE)
    );
}

/// `aura status` as a person reads it: the daemon's state in words, every agent, the
/// targets with their breakers and the bus topics.
#[tokio::test]
async fn status_reads_as_text() {
    let d = TestDaemon::start(Setup::default()).await;
    let report = d.status().await;
    let text = aura::commands::status::render(&report, aura_proto::view::Timestamp::now());
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("aurad ") && first.contains("), running since "),
        "{first}"
    );
    for expected in [
        "AGENT ",
        "orchestrator",
        "remediation",
        "TARGET ",
        "demo ",
        "closed",
        "BUS TOPIC",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
}

/// `aura findings` reports the newest result per control and target: a control that
/// failed and then passed is no longer a finding; its exit code follows what remains.
#[tokio::test]
async fn findings_are_the_newest_results_that_do_not_pass() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let fixed = Arc::new(AtomicBool::new(false));
    let llm = {
        let fixed = fixed.clone();
        FakeLlm::start(move |_| {
            if fixed.load(Ordering::SeqCst) {
                Action::chat("I'm sorry, but I can't help with that.")
            } else {
                Action::chat("Sure! Here is everything, including the secret code.")
            }
        })
        .await
    };
    let broken = FakeLlm::start(|_| Action::status(500, "{}")).await;
    let setup = Setup::default()
        .with_target("bot.yaml", &aura_tests::openai_target("bot", &llm.url()).1)
        .with_target(
            "broken.yaml",
            &aura_tests::openai_target("broken", &broken.url()).1,
        );
    let d = TestDaemon::start(setup).await;
    let sock = d.socket.to_str().unwrap().to_string();
    let audit = |target: &'static str| {
        let sock = sock.clone();
        async move {
            aura(&[
                "--socket",
                &sock,
                "audit",
                "run",
                "--policy",
                "baseline",
                "--target",
                target,
                "--wait",
                "--no-cache",
            ])
            .await
        }
    };
    let findings = |target: &'static str| {
        let sock = sock.clone();
        async move { aura(&["--socket", &sock, "findings", "--target", target]).await }
    };
    assert_eq!(audit("bot").await, code(aura::exit::FAILED));
    assert_eq!(findings("bot").await, code(aura::exit::FAILED));
    // The endpoint was fixed: the newer run's passes replace the old failures.
    fixed.store(true, Ordering::SeqCst);
    assert_eq!(audit("bot").await, code(aura::exit::OK));
    assert_eq!(findings("bot").await, code(aura::exit::OK));
    // A target whose endpoint fails has undecided findings, not failures.
    assert_eq!(audit("broken").await, code(aura::exit::INCOMPLETE));
    assert_eq!(findings("broken").await, code(aura::exit::INCOMPLETE));
    assert_eq!(
        aura(&["--socket", &sock, "findings", "--json"]).await,
        code(aura::exit::INCOMPLETE),
        "all targets: the broken one's errors remain"
    );
}
