//! Running the daemon as an operator would: systemd notifications, signals, JSON logs,
//! waivers, payload retention, and storage that fails under it.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use aura_proto::view::{DaemonStatus, Verdict};
use aura_proto::wire::{Reply, RequestBody, StartAudit};
use aura_tests::{Setup, TestDaemon, wait_for};

const T: Duration = Duration::from_secs(30);

async fn status_at(socket: &Path) -> Option<DaemonStatus> {
    let c = aura::client::Client::connect(socket).await.ok()?;
    match c.request(RequestBody::Status).await.ok()? {
        Reply::Status(s) => Some(s.daemon),
        _ => None,
    }
}

fn notifications(sock: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_signals_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("aurad.toml");
    Setup::default().write(dir.path());
    let socket = dir.path().join("run/aurad.sock");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aurad-test"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "json",
            "--log-level",
            "info",
            "run",
        ])
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let mut seen = Vec::new();
    wait_for("READY=1", T, || {
        seen.extend(notifications(&notify));
        std::future::ready(
            seen.iter()
                .any(|m| m.lines().any(|l| l == "READY=1"))
                .then_some(()),
        )
    })
    .await;
    let g1 = wait_for("the daemon to answer", T, || async {
        status_at(&socket).await
    })
    .await
    .policy_generation;
    // SIGHUP reloads through the same path as the first load.
    let pid = child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_for("the reload", T, || async {
        status_at(&socket)
            .await
            .filter(|s| s.policy_generation > g1)
    })
    .await;
    wait_for("RELOADING=1", T, || {
        seen.extend(notifications(&notify));
        std::future::ready(seen.iter().any(|m| m.contains("RELOADING=1")).then_some(()))
    })
    .await;
    // SIGTERM stops in order: STOPPING=1, exit 0, socket gone, lock released.
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    seen.extend(notifications(&notify));
    assert!(seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
    assert!(!socket.exists(), "the socket is removed");
    let lock = std::fs::File::open(dir.path().join("data/aurad.lock")).unwrap();
    lock.try_lock().expect("the data dir lock is released");
    let lines = logs.join().unwrap();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            !l.contains('\u{1b}'),
            "no colours when stderr is not a terminal: {l}"
        );
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v.get("level").is_some(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("daemon ready")));
}

fn policies_with(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let p = dir.join("policies");
    std::fs::create_dir_all(p.join("frameworks")).unwrap();
    for f in std::fs::read_dir(aura_tests::repo_policies().join("frameworks")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, p.join("frameworks").join(f.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        aura_tests::repo_policies().join("baseline.yaml"),
        p.join("baseline.yaml"),
    )
    .unwrap();
    for (name, text) in extra {
        let f = p.join(name);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }
    p
}

async fn audit(d: &TestDaemon, control: &str) -> aura_proto::view::AuditDetail {
    let client = d.client().await;
    let mut req = StartAudit::target("demo", None);
    req.controls = vec![control.into()];
    let run = match client.request(RequestBody::StartAudit(req)).await.unwrap() {
        Reply::AuditStarted { run } => run,
        other => panic!("{other:?}"),
    };
    wait_for("the run", T, || async {
        match client.request(RequestBody::GetAudit { run }).await.unwrap() {
            Reply::Audit(a) if a.summary.state.is_finished() => Some(a),
            _ => None,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiver_reports_waived_with_the_verdict_and_an_expired_one_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let waiver = "control: AURA-B01\ntargets: [demo]\njustification: The demo leaks by design.\napprover: qa@example.com\nexpires: 2099-12-31\n";
    let pol = policies_with(dir.path(), &[("waivers/b01.yaml", waiver)]);
    let setup = Setup {
        policies: pol.clone(),
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;
    let r = audit(&d, "AURA-B01").await;
    let c = &r.controls[0];
    assert_eq!(c.verdict, Verdict::Waived, "{c:?}");
    assert_eq!(
        c.underlying,
        Some(Verdict::Fail),
        "the underlying verdict is kept"
    );
    assert!(c.detail.contains("qa@example.com"), "{}", c.detail);
    let store = d.handle.services().store.clone();
    assert!(
        store
            .alerts_from(0, 100)
            .unwrap()
            .iter()
            .all(|a| a.control.as_deref() != Some("AURA-B01")),
        "no alert for a waived control"
    );

    // The waiver expires: it stops applying, and the Monitor says so.
    std::fs::write(
        pol.join("waivers/b01.yaml"),
        waiver.replace("2099-12-31", "2020-01-31"),
    )
    .unwrap();
    wait_for("the expiry alert", T, || {
        let found = store
            .alerts_from(0, 100)
            .unwrap()
            .into_iter()
            .find(|a| a.title.contains("waiver for AURA-B01 expired"));
        std::future::ready(found)
    })
    .await;
    let r = audit(&d, "AURA-B01").await;
    assert_eq!(r.controls[0].verdict, Verdict::Fail);
}

/// A reload applies targets and policies only; an edited aurad.toml is reported (valid:
/// restart to apply; invalid: named with the reason), never silently ignored.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_reports_an_edited_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        policies: policies_with(dir.path(), &[]),
        ..Setup::default()
    };
    let config = setup.write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;
    let file = d.dir.path().join("aurad.toml");
    let store = d.handle.services().store.clone();
    let alert = |needle: &'static str| {
        let store = store.clone();
        move || {
            let found = store
                .alerts_from(0, 100)
                .unwrap()
                .into_iter()
                .find(|a| a.title.contains(needle));
            std::future::ready(found)
        }
    };

    // Unchanged: a reload says nothing about it.
    d.handle.reload("test").await;
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{original}\n# a comment\n")).unwrap();
    d.handle.reload("test").await;
    let a = wait_for(
        "the restart alert",
        T,
        alert("changed; restart aurad to apply it"),
    )
    .await;
    assert!(a.detail.contains("read at start"), "{}", a.detail);
    assert_eq!(
        store.alerts_from(0, 100).unwrap().len(),
        1,
        "only the edit is reported"
    );

    std::fs::write(&file, format!("{original}\n[audit]\ncach = true\n")).unwrap();
    d.handle.reload("test").await;
    let a = wait_for("the invalid-file alert", T, alert("is invalid")).await;
    assert!(a.detail.contains("cach"), "names the bad key: {}", a.detail);
}

#[tokio::test(flavor = "multi_thread")]
async fn payloads_past_retention_are_purged_and_verify_as_purged() {
    let setup = Setup {
        extra_config: "\n[events]\npayload_retention = \"1s\"\n".into(),
        ..Setup::default()
    };
    let d = TestDaemon::start(setup).await;
    audit(&d, "AURA-B03").await;
    let events = d.handle.services().events.clone();
    wait_for("a retention sweep", T, || {
        let purged = events
            .read(1, 100_000)
            .unwrap()
            .iter()
            .any(|r| r.kind == "PayloadsPurged");
        std::future::ready(purged.then_some(()))
    })
    .await;
    let client = d.client().await;
    let entries = match client
        .request(RequestBody::ReadEvents {
            from: 1,
            limit: 10_000,
            payloads: true,
        })
        .await
        .unwrap()
    {
        Reply::Events(e) => e,
        other => panic!("{other:?}"),
    };
    assert!(
        entries.iter().any(|e| e.purged),
        "some payloads were purged"
    );
    let payloads: Vec<Option<Vec<u8>>> = entries
        .iter()
        .map(|e| e.payload.clone().map(String::into_bytes))
        .collect();
    let items = entries.iter().zip(payloads.iter()).map(|(e, p)| {
        let check = match (p, e.purged) {
            (Some(b), _) => Some(aura_ledger::PayloadCheck::Bytes(b.as_slice())),
            (None, true) => Some(aura_ledger::PayloadCheck::Purged),
            _ => None,
        };
        (&e.record, check)
    });
    let v = aura_ledger::verify(
        items,
        &events.checkpoints().unwrap(),
        Some(&events.public_key()),
    )
    .unwrap();
    assert!(v.purged_payloads > 0);
}

/// Attempts of finished runs are removed after `[audit] attempt_retention`; the run and
/// its control results stay readable, and the removal is on the record.
#[tokio::test(flavor = "multi_thread")]
async fn attempts_past_retention_are_removed_and_results_stay() {
    let setup = Setup {
        extra_config: "\n[audit]\nattempt_retention = \"1s\"\n".into(),
        ..Setup::default()
    };
    let d = TestDaemon::start(setup).await;
    let before = audit(&d, "AURA-B03").await;
    let run = before.summary.run;
    let store = d.handle.services().store.clone();
    assert!(!store.attempts(run).unwrap().is_empty());
    wait_for("the attempts to be removed", T, || {
        let pruned = store.run(run).unwrap().is_some_and(|r| r.attempts_pruned);
        std::future::ready(pruned.then_some(()))
    })
    .await;
    assert!(store.attempts(run).unwrap().is_empty());
    let events = d.handle.services().events.read(1, 100_000).unwrap();
    assert!(events.iter().any(|r| r.kind == "AttemptsPruned"));
    let client = d.client().await;
    let after = match client.request(RequestBody::GetAudit { run }).await.unwrap() {
        Reply::Audit(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(after.controls, before.controls, "results are kept");
}

/// Mounts a tmpfs (root only); `None` when this host does not allow it.
fn tmpfs(dir: &Path, options: &str) -> Option<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(dir)
        .status()
        .ok()?
        .success();
    ok.then_some(())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ro");
    std::fs::create_dir(&data).unwrap();
    if tmpfs(&data, "ro,size=1m").is_none() {
        eprintln!("skipped: mounting a read-only tmpfs needs root (CI runs as root)");
        return;
    }
    let _guard = Unmount(data.clone());
    let mut config = Setup::default().write(dir.path());
    config.data_dir = data.join("aura");
    let err = aurad::DaemonBuilder::new(config)
        .start()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(&data.display().to_string()) && err.to_lowercase().contains("read-only"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_raises_an_alert_and_the_daemon_stays_up() {
    full_disk(false).await;
}

/// As above, with a tree created after start: sled then refuses the agents' inserts
/// rather than a flush, and the failure reaches the Monitor through the agent that hit
/// it.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_seen_by_an_insert_raises_the_alert_too() {
    full_disk(true).await;
}

async fn full_disk(new_tree: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("small");
    std::fs::create_dir(&data).unwrap();
    if tmpfs(&data, "size=24m").is_none() {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let _guard = Unmount(data.clone());
    let mut config = Setup::default().write(dir.path());
    config.data_dir = data.join("aura");
    let d = TestDaemon::start_in(dir, config).await;
    if new_tree {
        d.handle.services().store.db().open_tree("late").unwrap();
    }
    // Fill the disk, then make the daemon write.
    let filler = data.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 1 << 20];
        while f.write_all(&block).is_ok() {}
    }
    let store = d.handle.services().store.clone();
    let client = d.client().await;
    // The whole pack: enough writes to need new space.
    let _ = client
        .request(RequestBody::StartAudit(StartAudit::target("demo", None)))
        .await;
    let view = d.handle.view().clone();
    wait_for("the storage alert", T, || async {
        let s = view.status().await?;
        (s.alerts.critical > 0).then_some(())
    })
    .await;
    // Still serving.
    assert!(matches!(
        client.request(RequestBody::Status).await,
        Ok(Reply::Status(_))
    ));
    let _ = store;
    std::fs::remove_file(&filler).unwrap();
}
