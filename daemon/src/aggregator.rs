//! The view state consoles see: one task owns it, everyone else sends it messages.
//!
//! State topics (daemon, agents, audits) keep a sequence number each. A subscriber gets a
//! snapshot and a broadcast receiver taken in the same step, so no change falls between
//! them; a receiver that lags is told so and re-snapshots (see `server::session`).
//! Alerts are a log: appended to the store under a lock so that sequence order and
//! broadcast order agree, then broadcast.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aura_proto::view::{
    AgentKind, AgentRow, Alert, AuditSummary, DaemonStatus, RunId, Severity, Timestamp,
};
use aura_proto::wire::{Delta, Snapshot, StatusReport, Topic, Update};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::eventlog::EventLog;
use crate::store::{Store, StoreError};

/// Capacity of each topic's broadcast ring. A subscriber further behind than this gets
/// `Lagged` and a fresh snapshot.
const TOPIC_CAPACITY: usize = 256;

/// How many finished runs the audits topic keeps.
const RECENT_AUDITS: usize = 20;

type DaemonPatch = Box<dyn FnOnce(&mut DaemonStatus) + Send>;

enum Cmd {
    Agent(AgentRow),
    Audit(AuditSummary),
    Daemon(DaemonPatch),
    AlertCounted(Severity),
    Subscribe {
        topic: Topic,
        reply: oneshot::Sender<(Update, broadcast::Receiver<Update>)>,
    },
    Status(oneshot::Sender<StatusReport>),
}

/// A cheap handle to the view state.
#[derive(Clone)]
pub struct ViewHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    events: Arc<dyn EventLog>,
    alerts_tx: broadcast::Sender<Alert>,
    /// Orders alerts, and holds the last sequence number given out.
    alerts_lock: Arc<Mutex<u64>>,
    store: Store,
}

/// Fields of an alert; the log assigns `seq` and `time`.
pub struct AlertDraft {
    pub severity: Severity,
    pub source: AgentKind,
    pub title: String,
    pub detail: String,
    pub run: Option<RunId>,
    pub control: Option<String>,
    pub target: Option<String>,
}

impl ViewHandle {
    pub fn agent(&self, row: AgentRow) {
        let _ = self.tx.send(Cmd::Agent(row));
    }

    pub fn audit(&self, summary: AuditSummary) {
        let _ = self.tx.send(Cmd::Audit(summary));
    }

    pub fn daemon(&self, patch: impl FnOnce(&mut DaemonStatus) + Send + 'static) {
        let _ = self.tx.send(Cmd::Daemon(Box::new(patch)));
    }

    /// Appends an alert to the log and tells subscribers.
    pub fn raise(&self, draft: AlertDraft) -> Result<Alert, StoreError> {
        let alert = Alert {
            seq: 0,
            time: Timestamp::now(),
            severity: draft.severity,
            source: draft.source,
            title: draft.title,
            detail: draft.detail,
            run: draft.run,
            control: draft.control,
            target: draft.target,
        };
        let alert = {
            let mut last = self.alerts_lock.lock().unwrap_or_else(|p| p.into_inner());
            let alert = match self.store.append_alert(alert.clone()) {
                Ok(a) => a,
                // The store cannot write (full disk): the alert still reaches every
                // console and the counts, with the next sequence number, so the
                // problem is seen; it is missing from the stored log only.
                Err(e) => {
                    tracing::error!(error = %e, "the alert log cannot be written; alerting live only");
                    Alert {
                        seq: *last + 1,
                        ..alert
                    }
                }
            };
            *last = alert.seq;
            let _ = self.alerts_tx.send(alert.clone());
            alert
        };
        let payload = serde_json::json!({
            "alert": alert.seq,
            "severity": alert.severity,
            "title": alert.title,
            "detail": alert.detail,
            "run": alert.run,
            "control": alert.control,
            "target": alert.target,
        });
        if let Err(e) = self
            .events
            .append(alert.source.name(), "AlertRaised", &payload)
        {
            tracing::error!(error = %e, "could not record an alert in the event log");
        }
        tracing::warn!(
            seq = alert.seq,
            severity = %alert.severity,
            source = %alert.source,
            title = %alert.title,
            "alert raised"
        );
        let _ = self.tx.send(Cmd::AlertCounted(alert.severity));
        Ok(alert)
    }

    /// A snapshot of a state topic and the receiver for the changes after it.
    pub async fn subscribe(&self, topic: Topic) -> Option<(Update, broadcast::Receiver<Update>)> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::Subscribe { topic, reply }).ok()?;
        rx.await.ok()
    }

    /// Live alerts; pair with [`Store::alerts_from`] for replay.
    pub fn alerts(&self) -> broadcast::Receiver<Alert> {
        self.alerts_tx.subscribe()
    }

    pub async fn status(&self) -> Option<StatusReport> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::Status(reply)).ok()?;
        rx.await.ok()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

struct TopicState {
    seq: u64,
    tx: broadcast::Sender<Update>,
}

impl TopicState {
    fn new() -> Self {
        Self {
            seq: 0,
            tx: broadcast::channel(TOPIC_CAPACITY).0,
        }
    }

    fn publish(&mut self, delta: Delta) {
        self.seq += 1;
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Update::Delta {
            seq: self.seq,
            delta,
        });
    }
}

struct Aggregator {
    daemon: DaemonStatus,
    agents: BTreeMap<AgentKind, AgentRow>,
    audits: BTreeMap<RunId, AuditSummary>,
    topics: [TopicState; 3],
}

impl Aggregator {
    fn topic(&mut self, t: Topic) -> &mut TopicState {
        match t {
            Topic::Daemon => &mut self.topics[0],
            Topic::Agents => &mut self.topics[1],
            // Log topics are not kept here; they never ask for a snapshot.
            Topic::Audits | Topic::Alerts | Topic::Events => &mut self.topics[2],
        }
    }

    fn snapshot(&self, t: Topic) -> Snapshot {
        match t {
            Topic::Daemon => Snapshot::Daemon(self.daemon.clone()),
            Topic::Agents => Snapshot::Agents(self.agents.values().cloned().collect()),
            Topic::Audits | Topic::Alerts | Topic::Events => {
                Snapshot::Audits(self.audits.values().rev().cloned().collect())
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Agent(row) => {
                if self.agents.get(&row.kind) != Some(&row) {
                    self.agents.insert(row.kind, row.clone());
                    self.topic(Topic::Agents).publish(Delta::Agent(row));
                }
            }
            Cmd::Audit(summary) => {
                self.audits.insert(summary.run, summary.clone());
                self.topic(Topic::Audits).publish(Delta::Audit(summary));
                self.trim_audits();
            }
            Cmd::Daemon(patch) => {
                patch(&mut self.daemon);
                let d = self.daemon.clone();
                self.topic(Topic::Daemon).publish(Delta::Daemon(d));
            }
            Cmd::AlertCounted(sev) => {
                self.daemon.alerts.add(sev);
                let d = self.daemon.clone();
                self.topic(Topic::Daemon).publish(Delta::Daemon(d));
            }
            Cmd::Subscribe { topic, reply } => {
                let state = self.snapshot(topic);
                let t = self.topic(topic);
                let update = Update::Snapshot { seq: t.seq, state };
                let _ = reply.send((update, t.tx.subscribe()));
            }
            Cmd::Status(reply) => {
                let _ = reply.send(StatusReport {
                    daemon: self.daemon.clone(),
                    agents: self.agents.values().cloned().collect(),
                    audits: self.audits.values().rev().cloned().collect(),
                    alerts: self.daemon.alerts.clone(),
                    topics: Vec::new(),
                    breakers: Vec::new(),
                });
            }
        }
    }

    /// Keeps unfinished runs and the most recent finished ones.
    fn trim_audits(&mut self) {
        let finished: Vec<RunId> = self
            .audits
            .values()
            .filter(|a| a.state.is_finished())
            .map(|a| a.run)
            .collect();
        if finished.len() > RECENT_AUDITS {
            for run in &finished[..finished.len() - RECENT_AUDITS] {
                self.audits.remove(run);
                self.topic(Topic::Audits).publish(Delta::AuditRemoved(*run));
            }
        }
    }
}

/// Starts the aggregator task, seeded from the store (recent runs, alert counts).
pub fn spawn(
    store: Store,
    events: Arc<dyn EventLog>,
    daemon: DaemonStatus,
) -> Result<ViewHandle, StoreError> {
    let mut daemon = daemon;
    daemon.alerts = store.alert_counts()?;
    let last_alert = store.next_alert_seq()?.saturating_sub(1);
    let audits = store
        .recent_runs(RECENT_AUDITS)?
        .into_iter()
        .map(|r| (r.id, r.summary()))
        .collect();
    let mut agg = Aggregator {
        daemon,
        agents: BTreeMap::new(),
        audits,
        topics: [TopicState::new(), TopicState::new(), TopicState::new()],
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            agg.handle(cmd);
        }
    });
    Ok(ViewHandle {
        tx,
        events,
        alerts_tx: broadcast::channel(TOPIC_CAPACITY).0,
        alerts_lock: Arc::new(Mutex::new(last_alert)),
        store,
    })
}
