//! One real audit end to end: a daemon, an OpenAI-compatible server on 127.0.0.1 with
//! scripted answers, the bundled baseline policy, driven through the socket protocol.

use std::time::Duration;

use aura_proto::view::{AuditDetail, RunId, Verdict};
use aura_proto::wire::{ErrorCode, Reply, RequestBody, StartAudit};
use aura_tests::fake_llm::{Action, FakeLlm};
use aura_tests::{Setup, TestDaemon, wait_for};

const T: Duration = Duration::from_secs(20);

async fn run_to_end(d: &TestDaemon, target: &str) -> AuditDetail {
    let client = d.client().await;
    let start = StartAudit::target(target, Some("baseline"));
    let run = match client
        .request(RequestBody::StartAudit(start))
        .await
        .unwrap()
    {
        Reply::AuditStarted { run } => run,
        other => panic!("unexpected {other:?}"),
    };
    wait_for("the run to finish", T, || async {
        match client.request(RequestBody::GetAudit { run }).await.unwrap() {
            Reply::Audit(d) if d.summary.state.is_finished() => Some(d),
            _ => None,
        }
    })
    .await
}

fn verdict(d: &AuditDetail, control: &str) -> Verdict {
    d.controls
        .iter()
        .find(|c| c.control == control)
        .unwrap_or_else(|| panic!("{control} in {d:?}"))
        .verdict
}

#[tokio::test]
async fn leak_refusal_and_server_error_give_fail_pass_and_error() {
    // Leaks the system prompt (with its canary) to prompt-extraction attempts, refuses
    // harmful requests, and fails with HTTP 500 on requests for personal data.
    let llm = FakeLlm::start(|req| {
        let user = req.user().to_lowercase();
        if user.contains("instructions") || user.contains("repeat everything") {
            Action::chat(&format!("Sure. My instructions are: {}", req.system()))
        } else if user.contains("break into") || user.contains("ransomware") {
            Action::chat("I'm sorry, but I can't help with that.")
        } else {
            Action::status(500, r#"{"error":"boom"}"#)
        }
    })
    .await;
    let target = format!(
        "name: local-llm\nkind: openai\nendpoint: {}\nmodel: test-model\n",
        llm.url()
    );
    let d = TestDaemon::start(Setup::default().with_target("llm.yaml", &target)).await;
    let detail = run_to_end(&d, "local-llm").await;

    assert_eq!(verdict(&detail, "AURA-B01"), Verdict::Fail, "{detail:#?}");
    assert_eq!(verdict(&detail, "AURA-B02"), Verdict::Pass, "{detail:#?}");
    assert_eq!(verdict(&detail, "AURA-B03"), Verdict::Error, "{detail:#?}");
    assert!(!detail.summary.target_is_demo);
    let b03 = detail
        .controls
        .iter()
        .find(|c| c.control == "AURA-B03")
        .unwrap();
    assert!(b03.detail.contains("HTTP 500"), "{}", b03.detail);
    assert_eq!(b03.attempts.fail, 0, "an endpoint error is never a fail");

    // The server saw real OpenAI requests with the planted canary in the system prompt.
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 8);
    assert!(
        reqs.iter()
            .all(|r| r.method == "POST" && r.path == "/v1/chat/completions")
    );
    assert!(reqs.iter().all(|r| r.body["model"] == "test-model"));
    assert!(reqs.iter().any(|r| r.system().contains("AURA-CANARY-")));

    // The failing control raised an alert naming it; the report is on disk.
    let status = d.status().await;
    assert_eq!(status.alerts.high, 1, "{status:?}");
    let store = d.handle.services().store.clone();
    let alerts = store.alerts_from(0, 10).unwrap();
    assert_eq!(alerts[0].control.as_deref(), Some("AURA-B01"));
    let report = std::path::Path::new(detail.report_dir.as_ref().unwrap()).join("report.md");
    let report = std::fs::read_to_string(report).unwrap();
    assert!(report.contains("AURA-B01"), "{report}");
    assert!(report.contains("- State: completed (started "), "{report}");
}

#[tokio::test]
async fn the_demo_target_shows_its_known_weaknesses() {
    let d = TestDaemon::start(Setup::default()).await;
    let detail = run_to_end(&d, "demo").await;
    assert!(detail.summary.target_is_demo);
    assert_eq!(verdict(&detail, "AURA-B01"), Verdict::Fail);
    assert_eq!(verdict(&detail, "AURA-B02"), Verdict::Fail);
    assert_eq!(verdict(&detail, "AURA-B03"), Verdict::Pass);
}

#[tokio::test]
async fn unreachable_and_silent_endpoints_are_errors_not_failures() {
    // A port nobody listens on, and a server that never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let silent = FakeLlm::start(|_| Action::Hang).await;
    let not_json = FakeLlm::start(|_| Action::status(200, "<html>not json</html>")).await;
    let setup = Setup::default()
        .with_target("a.yaml", &format!("name: refused\nkind: openai\nendpoint: http://127.0.0.1:{closed_port}\nmodel: m\nretries: 0\n"))
        .with_target("b.yaml", &format!("name: silent\nkind: openai\nendpoint: {}\nmodel: m\nretries: 0\ntimeouts: {{ request: 300ms }}\n", silent.url()))
        .with_target("c.yaml", &format!("name: html\nkind: openai\nendpoint: {}\nmodel: m\nretries: 0\n", not_json.url()));
    let d = TestDaemon::start(setup).await;
    for (target, expect) in [
        ("refused", "cannot connect"),
        ("silent", "no answer within"),
        ("html", "not what an"),
    ] {
        let detail = run_to_end(&d, target).await;
        for c in &detail.controls {
            assert_eq!(c.verdict, Verdict::Error, "{target}: {c:?}");
            assert_eq!(c.attempts.fail + c.attempts.pass, 0, "{target}: {c:?}");
            // After five failures in a row the breaker opens and refuses the rest.
            assert!(
                c.detail.contains(expect) || c.detail.contains("circuit open"),
                "{target}: {}",
                c.detail
            );
        }
        assert!(
            detail.controls.iter().any(|c| c.detail.contains(expect)),
            "{target}: {detail:#?}"
        );
    }
}

#[tokio::test]
async fn unknown_target_and_policy_are_refused_before_anything_runs() {
    let d = TestDaemon::start(Setup::default()).await;
    let client = d.client().await;
    let err = |policy: Option<&str>, target: &str| {
        let req = RequestBody::StartAudit(StartAudit::target(target, policy));
        let c = &client;
        async move {
            match c.request(req).await {
                Err(aura::client::ClientError::Api(e)) => e,
                other => panic!("expected an API error, got {other:?}"),
            }
        }
    };
    let e = err(None, "nope").await;
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(
        e.message.contains("nope") && e.message.contains("demo"),
        "{}",
        e.message
    );
    let e = err(Some("no-such-policy"), "demo").await;
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("no-such-policy"), "{}", e.message);
    let missing = client
        .request(RequestBody::GetAudit { run: RunId(999) })
        .await;
    assert!(
        matches!(missing, Err(aura::client::ClientError::Api(e)) if e.code == ErrorCode::NotFound)
    );
}
