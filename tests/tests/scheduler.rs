//! Scheduled audits: controls run when their schedule fires, overdue ones run at start,
//! and riskier targets go first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aura_proto::view::AuditSummary;
use aura_proto::wire::{Reply, RequestBody};
use aura_tests::{Setup, TestDaemon, wait_for};
use aurad::evidence::Payload;

const T: Duration = Duration::from_secs(30);

fn policies(dir: &Path, schedule: &str) -> PathBuf {
    let p = dir.join("policies");
    std::fs::create_dir_all(p.join("frameworks")).unwrap();
    std::fs::write(
        p.join("scheduled.yaml"),
        format!(
            "id: SCH-1\ntitle: scheduled\nseverity: low\nkind: probe\nschedule: \"{schedule}\"\n\
             probe:\n  prompts: [\"What is the capital of France?\"]\n\
             detectors:\n  - type: refusal\n    expect: comply\n"
        ),
    )
    .unwrap();
    p
}

async fn audits(d: &TestDaemon) -> Vec<AuditSummary> {
    match d
        .client()
        .await
        .request(RequestBody::ListAudits { limit: 100 })
        .await
        .unwrap()
    {
        Reply::Audits(a) => a,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_that_fires_starts_its_controls() {
    let dir = tempfile::tempdir().unwrap();
    // Every second (six fields: seconds first).
    let setup = Setup {
        policies: policies(dir.path(), "* * * * * *"),
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;
    let runs = wait_for("two scheduled runs", T, || async {
        let a = audits(&d).await;
        (a.len() >= 2).then_some(a)
    })
    .await;
    assert!(runs.iter().all(|r| r.targets == vec!["demo".to_string()]));
    let events = d.handle.services().events.read(1, 10_000).unwrap();
    let started: Vec<_> = events.iter().filter(|e| e.kind == "AuditStarted").collect();
    assert!(started.len() >= 2);
}

/// A minimal-risk and a high-risk demo target.
fn two_tiers() -> Vec<(String, String)> {
    vec![
        (
            "a.yaml".into(),
            "name: a-minimal\nkind: demo\nrisk_tier: minimal\n".into(),
        ),
        (
            "b.yaml".into(),
            "name: b-high\nkind: demo\nrisk_tier: high\n".into(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn overdue_controls_run_at_start_riskiest_targets_first() {
    let dir = tempfile::tempdir().unwrap();
    // Daily at 03:00: never run, so overdue.
    let setup = Setup {
        policies: policies(dir.path(), "0 3 * * *"),
        targets: two_tiers(),
        catch_up: true,
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;
    let runs = wait_for("the catch-up runs", T, || async {
        let a = audits(&d).await;
        (a.len() >= 2 && a.iter().all(|r| r.state.is_finished())).then_some(a)
    })
    .await;
    let first = runs.iter().min_by_key(|r| r.run).unwrap();
    assert_eq!(
        first.targets,
        vec!["b-high".to_string()],
        "the high-risk target goes first: {runs:?}"
    );
    // A second start finds nothing overdue.
    let dir = d.stop().await;
    let setup = Setup {
        policies: dir.path().join("policies"),
        targets: two_tiers(),
        catch_up: true,
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;
    let catch_ups = wait_for("the second catch-up", T, || async {
        let events = d.handle.services().events.read(1, 100_000).unwrap();
        let c: Vec<_> = events
            .into_iter()
            .filter(|e| e.kind == "ScheduleCatchUp")
            .collect();
        (c.len() == 2).then_some(c)
    })
    .await;
    let payload = |r: &aura_ledger::EventRecord| -> serde_json::Value {
        match d.handle.services().events.payload(r) {
            Payload::Present(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    let first = payload(&catch_ups[0]);
    assert_eq!(first["overdue"][0]["target"], "b-high");
    let second = payload(&catch_ups[1]);
    assert_eq!(
        second["overdue"],
        serde_json::json!([]),
        "nothing is overdue any more"
    );
    assert_eq!(audits(&d).await.len(), 2);
}
