//! Watches the policies and targets folders (the folders, not single files, so editors
//! that save by writing a temporary file and renaming it over the original are seen) and
//! asks the Policy agent to reload after a quiet period, so a burst of saves is one
//! reload. A periodic rescan compares a fingerprint of the folders, as a fallback for
//! changes the OS did not report (network file systems, a folder replaced whole).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aura_proto::view::AgentKind;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agents::messages::PolicyMsg;
use crate::agents::send;
use crate::bus::Meta;
use crate::services::Services;

/// What the folders look like: (path, size, modified) of every YAML file, sorted.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

pub fn fingerprint(dirs: &[PathBuf]) -> Fingerprint {
    let mut out = Vec::new();
    for dir in dirs {
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(path);
                } else if relevant_name(&path) {
                    out.push((path, meta.len(), meta.modified().ok()));
                }
            }
        }
    }
    out.sort();
    out
}

/// YAML files count; hidden files, editor backups and swap files do not.
fn relevant_name(path: &Path) -> bool {
    path.file_name()
        .map(|n| aura_policy::set::is_yaml_name(&n.to_string_lossy()))
        .unwrap_or(false)
}

fn relevant(ev: &notify::Event) -> bool {
    if matches!(ev.kind, EventKind::Access(_)) {
        return false;
    }
    // A removed or renamed folder may hold policies; otherwise only YAML files matter.
    ev.paths.iter().any(|p| {
        relevant_name(p)
            || (matches!(
                ev.kind,
                EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
            ) && p.extension().is_none())
    })
}

/// The folders this daemon watches.
pub fn dirs(config: &crate::config::DaemonConfig) -> Vec<PathBuf> {
    vec![config.policies_dir.clone(), config.targets_dir.clone()]
}

/// Starts watching. `baseline` is the fingerprint taken before the set now active was
/// loaded, so a change made while loading or starting is still noticed.
pub fn spawn(svc: Services, baseline: Fingerprint, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = run(svc, baseline, stop).await {
            tracing::error!(error = %e, "policy watcher stopped; reload with SIGHUP");
        }
    })
}

async fn run(svc: Services, baseline: Fingerprint, stop: CancellationToken) -> notify::Result<()> {
    let dirs = dirs(&svc.config);
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|ev| relevant(&ev)) {
            let _ = tx.send(());
        }
    })?;
    for d in &dirs {
        if d.is_dir() {
            watcher.watch(d, RecursiveMode::Recursive)?;
        } else {
            tracing::warn!(dir = %d.display(), "not watching a folder that does not exist");
        }
    }
    let quiet = svc.config.policies.debounce;
    let scan_dirs = dirs.clone();
    let scan = move || {
        let d = scan_dirs.clone();
        async move {
            tokio::task::spawn_blocking(move || fingerprint(&d))
                .await
                .unwrap_or_default()
        }
    };
    let mut last = baseline;
    let mut rescan = tokio::time::interval(svc.config.policies.rescan_interval);
    rescan.tick().await;
    // Anything that changed since the baseline, before the watch began.
    if scan().await != last {
        request_reload(&svc, "changed during start").await;
        last = scan().await;
    }
    // When the current burst of events will have been quiet long enough.
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let wait_due = async {
            match due {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let reason = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            Some(()) = rx.recv() => {
                due = Some(tokio::time::Instant::now() + quiet);
                continue;
            }
            _ = wait_due => {
                due = None;
                "files changed"
            }
            _ = rescan.tick() => "rescan found changes",
        };
        let now = scan().await;
        tracing::debug!(
            reason,
            files = now.len(),
            changed = now != last,
            "policy folders scanned"
        );
        if now == last {
            continue;
        }
        last = now;
        tracing::info!(reason, "policy or target files changed; reloading");
        request_reload(&svc, reason).await;
    }
}

/// Asks the Policy agent to reload.
async fn request_reload(svc: &Services, reason: &str) {
    let msg = PolicyMsg::Reload {
        reason: reason.to_string(),
    };
    if let Err(e) = send(&*svc.bus, AgentKind::Policy, &msg, Meta::default()).await {
        tracing::error!(error = %e, "could not request a reload");
    }
}
