//! Saving a policy file re-validates it: a valid change swaps the set, records the new
//! generation and starts the audits of the changed controls; an invalid change raises an
//! alert naming the file and line and keeps the previous set; editor save patterns and
//! bursts of saves are handled, a burst being one reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aura_proto::view::DaemonStatus;
use aura_proto::wire::{Reply, RequestBody};
use aura_tests::{Setup, TestDaemon, wait_for};

const T: Duration = Duration::from_secs(20);

/// A policies folder with the crosswalks and one control.
fn policies(dir: &Path) -> PathBuf {
    let p = dir.join("policies");
    std::fs::create_dir_all(p.join("frameworks")).unwrap();
    std::fs::copy(
        aura_tests::repo_policies().join("frameworks/owasp-llm-2025.yaml"),
        p.join("frameworks/owasp-llm-2025.yaml"),
    )
    .unwrap();
    std::fs::write(p.join("one.yaml"), control("HR-1", "first")).unwrap();
    p
}

fn control(id: &str, title: &str) -> String {
    format!(
        "id: {id}\ntitle: {title}\nseverity: low\nkind: probe\n\
         probe:\n  prompts: [\"What is the capital of France?\"]\n\
         detectors:\n  - type: refusal\n    expect: comply\n"
    )
}

async fn status(d: &TestDaemon) -> DaemonStatus {
    d.status().await.daemon
}

async fn start(extra: &str) -> (TestDaemon, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies(dir.path());
    let setup = Setup {
        policies: pol.clone(),
        extra_config: format!(
            "\n[policies]\ndebounce = \"200ms\"\nrescan_interval = \"1h\"\n{extra}"
        ),
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    (TestDaemon::start_in(dir, config).await, pol)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_change_reloads_and_starts_the_changed_controls() {
    let (d, pol) = start("").await;
    let g0 = status(&d).await.policy_generation;
    assert_eq!(g0, 1);
    std::fs::write(pol.join("two.yaml"), control("HR-2", "second")).unwrap();
    let s = wait_for("the reload", T, || async {
        let s = status(&d).await;
        (s.policy_generation > g0).then_some(s)
    })
    .await;
    assert_eq!(s.controls_loaded, 2);
    // The new control (on_change by default) was audited against the demo target.
    let client = d.client().await;
    let run = wait_for("the triggered audit", T, || async {
        match client
            .request(RequestBody::ListAudits { limit: 10 })
            .await
            .unwrap()
        {
            Reply::Audits(a) => a.into_iter().find(|a| a.state.is_finished()),
            _ => None,
        }
    })
    .await;
    match client
        .request(RequestBody::GetAudit { run: run.run })
        .await
        .unwrap()
    {
        Reply::Audit(detail) => {
            let ids: Vec<&str> = detail.controls.iter().map(|c| c.control.as_str()).collect();
            assert_eq!(ids, vec!["HR-2"], "only the changed control runs");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_change_alerts_with_file_and_line_and_keeps_the_set() {
    let (d, pol) = start("").await;
    let bad = pol.join("one.yaml");
    std::fs::write(&bad, "id: HR-1\ntitle: first\nseverity: hgh\nkind: probe\n").unwrap();
    let store = d.handle.services().store.clone();
    let alert = wait_for("the alert", T, || {
        let a = store
            .alerts_from(0, 100)
            .unwrap()
            .into_iter()
            .find(|a| a.title.contains("policy reload rejected"));
        std::future::ready(a)
    })
    .await;
    let place = format!("{}:3:11", bad.display());
    assert!(
        alert.title.contains(&place) || alert.detail.contains(&place),
        "{alert:?}"
    );
    assert!(alert.detail.contains("hgh"), "{}", alert.detail);
    let s = status(&d).await;
    assert_eq!(s.policy_generation, 1, "the previous set stays active");
    assert_eq!(s.controls_loaded, 1);
    assert!(
        s.policy_error
            .unwrap()
            .contains("previous policy set stays active")
    );
    // Fixing the file recovers.
    std::fs::write(&bad, control("HR-1", "first again")).unwrap();
    wait_for("recovery", T, || async {
        (status(&d).await.policy_generation == 2).then_some(())
    })
    .await;
    assert!(status(&d).await.policy_error.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_over_saves_deletions_and_a_burst_of_twenty_saves() {
    let (d, pol) = start("").await;
    // An editor's save: write a temporary file, then rename it over the original.
    let tmp = pol.join(".one.yaml.swp");
    std::fs::write(&tmp, control("HR-1", "renamed over")).unwrap();
    std::fs::rename(&tmp, pol.join("one.yaml")).unwrap();
    wait_for("the rename-over reload", T, || async {
        (status(&d).await.policy_generation == 2).then_some(())
    })
    .await;

    // Twenty saves in about 100 ms: one reload.
    for i in 0..20 {
        std::fs::write(
            pol.join("burst.yaml"),
            control("HR-B", &format!("save {i}")),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for("the burst reload", T, || async {
        (status(&d).await.controls_loaded == 2).then_some(())
    })
    .await;
    // A sentinel change after the burst: if the burst had caused two reloads, the
    // generation would now be 5, not 4.
    std::fs::write(pol.join("sentinel.yaml"), control("HR-S", "sentinel")).unwrap();
    let s = wait_for("the sentinel reload", T, || async {
        let s = status(&d).await;
        (s.controls_loaded == 3).then_some(s)
    })
    .await;
    assert_eq!(
        s.policy_generation, 4,
        "rename-over, burst and sentinel: one reload each"
    );

    // Deleting a file removes its control.
    std::fs::remove_file(pol.join("burst.yaml")).unwrap();
    wait_for("the deletion", T, || async {
        (status(&d).await.controls_loaded == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_periodic_rescan_catches_what_the_watcher_does_not_report() {
    // The watcher's quiet time is an hour here, so only the rescan can pick this up.
    let dir = tempfile::tempdir().unwrap();
    let pol = policies(dir.path());
    let setup = Setup {
        policies: pol.clone(),
        extra_config: "\n[policies]\ndebounce = \"1h\"\nrescan_interval = \"300ms\"\n".into(),
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;
    std::fs::write(pol.join("two.yaml"), control("HR-2", "second")).unwrap();
    wait_for("the rescan reload", T, || async {
        (status(&d).await.controls_loaded == 2).then_some(())
    })
    .await;
}
