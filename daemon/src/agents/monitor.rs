//! The Monitor agent: watches the daemon itself on every tick: bus queue depths, storage
//! write failures (a full or read-only disk), waivers that expired, and it saves the
//! knowledge index now and then. Problems become alerts; the daemon keeps running.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aura_proto::view::{AgentKind, Severity, Timestamp};

use super::messages::NoMessages;
use super::{Agent, AgentError, topic};
use crate::aggregator::AlertDraft;
use crate::bus::Envelope;
use crate::services::Services;

#[derive(Default)]
pub struct MonitorAgent {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The storage error last alerted on, so one failure is one alert.
    storage_error: Option<String>,
    /// Waivers already alerted as expired (file and control), this process.
    expired: BTreeSet<String>,
    last_persist: Option<Instant>,
    last_retention: Option<Instant>,
}

/// A queue deeper than this makes the monitor report itself degraded.
const DEEP_QUEUE: u64 = 10_000;
/// A failed write keeps storage "failing" this long, so a disk that stays full is one
/// alert, not one per retried message.
const STORAGE_QUIET: Duration = Duration::from_secs(600);
const PERSIST_EVERY: Duration = Duration::from_secs(600);

fn alert(svc: &Services, severity: Severity, title: String, detail: String) {
    if let Err(e) = svc.view.raise(AlertDraft {
        severity,
        source: AgentKind::Monitor,
        title,
        detail,
        run: None,
        control: None,
        target: None,
    }) {
        tracing::error!(error = %e, "could not raise an alert");
    }
}

impl Agent for MonitorAgent {
    type Msg = NoMessages;
    const KIND: AgentKind = AgentKind::Monitor;

    async fn handle(
        &self,
        msg: NoMessages,
        _env: &Envelope,
        _svc: &Services,
    ) -> Result<(), AgentError> {
        match msg {}
    }

    async fn tick(&self, svc: &Services) -> Result<(), AgentError> {
        // Storage: a flush or a write that failed (disk full, read-only) is alerted once,
        // and again only after storage has worked for a while.
        let storage = svc.store.committer().failure(STORAGE_QUIET);
        let new_storage_error = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let changed = storage != st.storage_error;
            st.storage_error = storage.clone();
            changed.then_some(storage.clone()).flatten()
        };
        if let Some(e) = new_storage_error {
            alert(
                svc,
                Severity::Critical,
                "storage cannot write to disk".into(),
                format!(
                    "{e}. Audit results are not being saved until this is fixed: free disk space or fix permissions, then restart aurad if writes do not resume (the store may refuse writes until it is reopened)."
                ),
            );
        }
        // Waivers that expired stop applying; say so once.
        let now = Timestamp::now();
        let policies = svc.catalog.policies();
        for w in policies.waivers.iter().filter(|w| w.expired(now)) {
            let key = format!("{}|{}", w.file.display(), w.control.value);
            let first = self
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .expired
                .insert(key);
            if first {
                alert(
                    svc,
                    Severity::Medium,
                    format!("waiver for {} expired", w.control.value),
                    format!(
                        "{} (approved by {}) expired on {}; the control's results count again. Renew or remove it.",
                        w.file.display(),
                        w.approver,
                        crate::format_date(w.expires)
                    ),
                );
                svc.record(
                    "monitor",
                    "WaiverExpired",
                    serde_json::json!({ "control": w.control.value, "file": w.file }),
                );
            }
        }
        // Housekeeping: payloads nobody stored and attempts of runs finished longer ago
        // than their retention, expired cache entries and remembered verdicts of records
        // no window reaches; swept hourly, or at half the shortest retention.
        let payloads = svc.config.events.payload_retention;
        let attempts = svc.config.audit.attempt_retention;
        let cache_ttl = svc.cache.is_some().then_some(svc.config.audit.cache_ttl);
        let every = payloads
            .into_iter()
            .chain(attempts)
            .chain(cache_ttl)
            .map(|d| d / 2)
            .min()
            .unwrap_or(Duration::from_secs(3600))
            .clamp(Duration::from_millis(100), Duration::from_secs(3600));
        let due = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let due = st.last_retention.is_none_or(|t| t.elapsed() >= every);
            if due {
                st.last_retention = Some(Instant::now());
            }
            due
        };
        if due {
            sweep(svc, payloads, attempts).await;
        }
        // The knowledge index, saved now and then (and at shutdown).
        let due = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let due = st.last_persist.is_none_or(|t| t.elapsed() >= PERSIST_EVERY);
            if due {
                st.last_persist = Some(Instant::now());
            }
            due
        };
        if due {
            let kb = svc.kb.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || kb.persist()).await {
                tracing::warn!(error = %e, "could not save the knowledge index");
            }
        }
        let deep: Vec<String> = AgentKind::ALL
            .iter()
            .filter_map(|k| {
                let depth = svc.bus.stats(topic(*k)).depth;
                (depth > DEEP_QUEUE).then(|| format!("{k}: {depth}"))
            })
            .collect();
        if let Some(e) = storage {
            return Err(AgentError::Failed(format!("storage: {e}")));
        }
        if deep.is_empty() {
            Ok(())
        } else {
            Err(AgentError::Failed(format!(
                "queues backing up: {}",
                deep.join(", ")
            )))
        }
    }
}

/// One housekeeping sweep; failures are logged and the next sweep tries again.
async fn sweep(svc: &Services, payloads: Option<Duration>, attempts: Option<Duration>) {
    // Verdicts remembered for records older than the longest runtime window (or for a
    // control since edited) will never be asked for again.
    let longest = svc
        .catalog
        .policies()
        .controls
        .iter()
        .filter_map(|c| c.runtime.as_ref().map(|r| r.value.window))
        .max()
        .unwrap_or_default();
    let before = Timestamp::now()
        .0
        .saturating_sub(longest.as_millis() as u64);
    let db = svc.store.db().clone();
    match tokio::task::spawn_blocking(move || {
        crate::checks::record_memo::forget_before(&db, before)
    })
    .await
    {
        Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "remembered record verdicts expired"),
        Ok(Err(e)) => tracing::error!(error = %e, "record memo sweep failed"),
        _ => {}
    }
    if let Some(cache) = svc.cache.clone() {
        match tokio::task::spawn_blocking(move || cache.sweep_expired()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "expired cache entries removed"),
            Ok(Err(e)) => tracing::error!(error = %e, "cache sweep failed"),
            _ => {}
        }
    }
    let before =
        |keep: Duration| Timestamp(Timestamp::now().0.saturating_sub(keep.as_millis() as u64));
    if let Some(keep) = payloads {
        let cutoff = before(keep);
        let ev = svc.evidence.clone();
        match tokio::task::spawn_blocking(move || ev.purge_older_than(cutoff)).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!(purged = n, "payloads past retention purged");
                svc.record(
                    "monitor",
                    "PayloadsPurged",
                    serde_json::json!({ "count": n, "older_than": cutoff }),
                );
            }
            Ok(Err(e)) => tracing::error!(error = %e, "payload retention sweep failed"),
            _ => {}
        }
    }
    if let Some(keep) = attempts {
        let cutoff = before(keep);
        let store = svc.store.clone();
        match tokio::task::spawn_blocking(move || store.prune_attempts(cutoff)).await {
            Ok(Ok((runs, n))) if runs > 0 => {
                tracing::info!(runs, attempts = n, "attempts past retention removed");
                svc.record(
                    "monitor",
                    "AttemptsPruned",
                    serde_json::json!({ "runs": runs, "attempts": n, "finished_before": cutoff }),
                );
            }
            Ok(Err(e)) => tracing::error!(error = %e, "attempt retention sweep failed"),
            _ => {}
        }
    }
}
