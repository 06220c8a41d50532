//! Pause, resume and cancel over the protocol, against a real server that answers
//! slowly: a paused run stops sending (at most the attempts in flight finish), resumes
//! to completion without sending any attempt twice; a cancelled run ends as cancelled
//! and sends nothing more.

use std::collections::HashMap;
use std::time::Duration;

use aura_proto::view::{RunId, RunState, Verdict};
use aura_proto::wire::{ErrorCode, Reply, RequestBody, StartAudit};
use aura_tests::audit::{self, policies_with, probe};
use aura_tests::fake_llm::{Action, FakeLlm, Recorded};
use aura_tests::{Setup, TestDaemon, wait_for};

const T: Duration = Duration::from_secs(30);
const CONCURRENCY: usize = 2;
const MANY: usize = 40;

fn controls() -> Vec<(&'static str, String)> {
    let values: Vec<String> = (1..=MANY).map(|i| format!("\"{i}\"")).collect();
    let comply = "  - type: refusal\n    expect: comply\n";
    vec![
        (
            "many.yaml",
            probe(
                "T-MANY",
                &["Question {{n}}: what is {{n}} plus one?"],
                &format!("    variables:\n      n: [{}]\n", values.join(", ")),
                comply,
            ),
        ),
        (
            "few.yaml",
            probe(
                "T-FEW",
                &["What is the capital of France?", "What is 2 + 2?"],
                "",
                comply,
            ),
        ),
        (
            "six.yaml",
            probe(
                "T-SIX",
                &["One?", "Two?", "Three?", "Four?", "Five?", "Six?"],
                "",
                comply,
            ),
        ),
    ]
}

/// A daemon with a slow target (`delay` per answer, concurrency 2) and a quick one.
async fn setup(delay: Duration) -> (TestDaemon, FakeLlm, FakeLlm) {
    let slow = FakeLlm::start(move |_| Action::chat("Here is the answer.").delayed(delay)).await;
    let quick = FakeLlm::start(|_| Action::chat("Here is the answer.")).await;
    let dir = tempfile::tempdir().unwrap();
    let target = |name: &str, llm: &FakeLlm| {
        (
            format!("{name}.yaml"),
            format!(
                "name: {name}\nkind: openai\nendpoint: {}\nmodel: m\nretries: 0\nconcurrency: {CONCURRENCY}\n",
                llm.url()
            ),
        )
    };
    let setup = Setup {
        targets: vec![target("slow", &slow), target("quick", &quick)],
        policies: policies_with(dir.path(), &controls()),
        extra_config: "\n[audit]\ncache = false\n".into(),
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    (TestDaemon::start_in(dir, config).await, slow, quick)
}

async fn start_many(d: &TestDaemon) -> RunId {
    audit::start(
        d,
        StartAudit {
            targets: vec!["slow".into()],
            controls: vec!["T-MANY".into()],
            ..StartAudit::default()
        },
    )
    .await
}

/// Audits the quick target to the end: real work that takes its time, during which a
/// paused or cancelled run must stay put.
async fn meanwhile(d: &TestDaemon) {
    let run = audit::start(
        d,
        StartAudit {
            targets: vec!["quick".into()],
            controls: vec!["T-FEW".into()],
            ..StartAudit::default()
        },
    )
    .await;
    let detail = audit::finished(d, run, T).await;
    assert_eq!(audit::verdict(&detail, "T-FEW"), Verdict::Pass);
}

async fn control(d: &TestDaemon, body: RequestBody) -> Result<(), aura_proto::wire::ApiError> {
    match d.client().await.request(body).await {
        Ok(Reply::Done) => Ok(()),
        Ok(other) => panic!("unexpected reply {other:?}"),
        Err(aura::client::ClientError::Api(e)) => Err(e),
        Err(e) => panic!("request failed: {e:?}"),
    }
}

/// How many distinct requests were sent more than once.
fn sent_twice(reqs: &[Recorded]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in reqs {
        *seen.entry(r.body.to_string()).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(b, n)| format!("{n}x {b}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_run_stops_sending_and_resumes_to_completion() {
    let (d, slow, quick) = setup(Duration::from_millis(50)).await;
    let run = start_many(&d).await;
    wait_for("some requests", T, || {
        std::future::ready((slow.count() >= 6).then_some(()))
    })
    .await;
    control(&d, RequestBody::PauseAudit { run }).await.unwrap();
    let at_pause = slow.count();
    assert_eq!(audit::detail(&d, run).await.summary.state, RunState::Paused);
    // Pausing again is a no-op.
    control(&d, RequestBody::PauseAudit { run }).await.unwrap();

    // The attempts in flight finish; then everything sent has been answered and counted.
    let settled = wait_for("the attempts in flight to finish", T, || async {
        let s = audit::detail(&d, run).await.summary;
        (s.attempts_done as usize == slow.count()).then_some(s)
    })
    .await;
    assert_eq!(settled.state, RunState::Paused);
    assert!(
        slow.count() <= at_pause + CONCURRENCY,
        "{} requests after pausing at {at_pause}",
        slow.count()
    );
    assert!((settled.attempts_done as usize) < MANY, "{settled:?}");

    // While another audit runs to its end, the paused one sends nothing.
    meanwhile(&d).await;
    let still = audit::detail(&d, run).await.summary;
    assert_eq!(still.state, RunState::Paused);
    assert_eq!(still.attempts_done, settled.attempts_done);
    assert_eq!(slow.count(), settled.attempts_done as usize);
    assert_eq!(quick.count(), 2);

    control(&d, RequestBody::ResumeAudit { run }).await.unwrap();
    let detail = audit::finished(&d, run, T).await;
    assert_eq!(detail.summary.state, RunState::Completed);
    assert_eq!(detail.summary.attempts_done as usize, MANY);
    let c = audit::control(&detail, "T-MANY");
    assert_eq!(c.verdict, Verdict::Pass, "{c:#?}");
    assert_eq!(c.attempts.pass as usize, MANY);
    // Every attempt was sent exactly once across the pause.
    let reqs = slow.requests();
    assert_eq!(reqs.len(), MANY);
    assert!(sent_twice(&reqs).is_empty(), "{:#?}", sent_twice(&reqs));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_run_ends_as_cancelled_and_sends_nothing_more() {
    let (d, slow, _quick) = setup(Duration::from_millis(50)).await;
    let run = start_many(&d).await;
    wait_for("some requests", T, || {
        std::future::ready((slow.count() >= 4).then_some(()))
    })
    .await;
    control(&d, RequestBody::CancelAudit { run }).await.unwrap();
    let at_cancel = slow.count();
    let s = audit::detail(&d, run).await.summary;
    assert_eq!(s.state, RunState::Cancelled);
    assert!(s.finished.is_some());

    meanwhile(&d).await;
    let s = audit::detail(&d, run).await.summary;
    assert_eq!(s.state, RunState::Cancelled);
    assert!((s.attempts_done as usize) < MANY, "{s:?}");
    assert!(
        slow.count() <= at_cancel + CONCURRENCY,
        "{} requests after cancelling at {at_cancel}",
        slow.count()
    );
    // A finished run cannot be resumed, paused or cancelled again.
    for body in [
        RequestBody::ResumeAudit { run },
        RequestBody::PauseAudit { run },
        RequestBody::CancelAudit { run },
    ] {
        let e = control(&d, body).await.expect_err("refused");
        assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
        assert!(e.message.contains("cancelled"), "{}", e.message);
    }
    let e = control(&d, RequestBody::PauseAudit { run: RunId(999) })
        .await
        .expect_err("no such run");
    assert_eq!(e.code, ErrorCode::NotFound);
}

/// Resuming while the paused run still has attempts in flight must not start a second
/// executor next to the first: no attempt may be sent twice.
///
/// Fails today: `control_run` (agents/orchestrator.rs) answers a resume of a run in
/// phase Executing by both signalling the running executor (which turns its Pause back
/// into Run and carries on) and publishing a new `AuditMsg::Execute`, which the Audit
/// agent (PARALLEL = 4) handles with a second `execute` on the same run; both load every
/// attempt without an outcome and send it, so each pending attempt goes out twice.
#[tokio::test(flavor = "multi_thread")]
async fn resuming_before_the_attempts_in_flight_finish_sends_nothing_twice() {
    let (d, slow, _quick) = setup(Duration::from_millis(300)).await;
    let run = audit::start(
        &d,
        StartAudit {
            targets: vec!["slow".into()],
            controls: vec!["T-SIX".into()],
            ..StartAudit::default()
        },
    )
    .await;
    wait_for("the first requests", T, || {
        std::future::ready((slow.count() >= CONCURRENCY).then_some(()))
    })
    .await;
    control(&d, RequestBody::PauseAudit { run }).await.unwrap();
    control(&d, RequestBody::ResumeAudit { run }).await.unwrap();
    let detail = audit::finished(&d, run, T).await;
    assert_eq!(detail.summary.state, RunState::Completed);
    let reqs = slow.requests();
    let twice = sent_twice(&reqs);
    assert!(twice.is_empty(), "{} sent twice: {twice:#?}", twice.len());
    assert_eq!(reqs.len(), 6);
}

/// A paused run stays paused across a daemon restart (nothing is sent by itself), and
/// resumes to completion on request, still sending no attempt twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_run_stays_paused_across_a_restart() {
    let (d, slow, quick) = setup(Duration::from_millis(50)).await;
    let run = start_many(&d).await;
    wait_for("some requests", T, || {
        std::future::ready((slow.count() >= 4).then_some(()))
    })
    .await;
    control(&d, RequestBody::PauseAudit { run }).await.unwrap();
    wait_for("the attempts in flight to finish", T, || async {
        let s = audit::detail(&d, run).await.summary;
        (s.attempts_done as usize == slow.count()).then_some(())
    })
    .await;
    let sent = slow.count();

    let dir = d.stop().await;
    let config = aurad::DaemonConfig::load(
        Some(&dir.path().join("aurad.toml")),
        aurad::config::Overrides::default(),
    )
    .unwrap();
    let d = TestDaemon::start_in(dir, config).await;
    meanwhile(&d).await;
    assert_eq!(quick.count(), 2);
    let s = audit::detail(&d, run).await.summary;
    assert_eq!(s.state, RunState::Paused);
    assert_eq!(
        slow.count(),
        sent,
        "a paused run sends nothing after a restart"
    );

    control(&d, RequestBody::ResumeAudit { run }).await.unwrap();
    let detail = audit::finished(&d, run, T).await;
    assert_eq!(detail.summary.state, RunState::Completed);
    assert_eq!(audit::verdict(&detail, "T-MANY"), Verdict::Pass);
    let reqs = slow.requests();
    assert_eq!(reqs.len(), MANY);
    assert!(sent_twice(&reqs).is_empty(), "{:#?}", sent_twice(&reqs));
}
