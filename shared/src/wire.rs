//! Everything sent after the handshake.

use aura_ledger::{Checkpoint, EventRecord};
use serde::{Deserialize, Serialize};

use crate::view::{
    AgentRow, Alert, AlertCounts, AuditDetail, AuditSummary, DaemonStatus, RunId, Timestamp,
};

/// Client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    Request(Request),
    /// Liveness probe; answered by `ServerFrame::Pong` with the same number.
    Ping(u64),
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    Response(Response),
    Update(Update),
    Pong(u64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in the response. Unique per connection.
    pub id: u64,
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Daemon, agents, audits and alert counts in one reply.
    Status,
    /// Start pushing [`Update`]s for a topic. Answered by `Reply::Subscribed`, after which
    /// the first `Update` of a state topic is a `Snapshot`.
    Subscribe(Subscription),
    Unsubscribe(Topic),
    /// Operator only.
    StartAudit(StartAudit),
    GetAudit {
        run: RunId,
    },
    /// The most recent runs first, at most `limit`.
    ListAudits {
        limit: u32,
    },
    /// Operator only. A paused run finishes the attempts in flight and starts no more.
    PauseAudit {
        run: RunId,
    },
    /// Operator only.
    ResumeAudit {
        run: RunId,
    },
    /// Operator only. Attempts in flight are abandoned; what completed is kept.
    CancelAudit {
        run: RunId,
    },
    /// Re-read targets and policies now (as SIGHUP does). Operator only.
    Reload,
    /// Event log records from `from` on, at most `limit` (capped by the daemon), with
    /// their payloads when asked.
    ReadEvents {
        from: u64,
        limit: u32,
        payloads: bool,
    },
    /// Every signed checkpoint of the event log, and the public key that verifies them.
    EventCheckpoints,
    /// Knowledge base search.
    SearchKnowledge(KnowledgeQuery),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeQuery {
    pub text: String,
    /// Entries must carry every one of these tags.
    pub tags: Vec<String>,
    pub kind: Option<String>,
    /// Entries whose current (decayed) confidence is below this are left out.
    pub min_confidence: f32,
    pub limit: u32,
}

/// What to audit. Targets are the named ones plus every target carrying one of `tags`;
/// controls are those of `policy` (a policy file's name or a control id), narrowed to
/// `controls` when given, that apply to each target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartAudit {
    pub targets: Vec<String>,
    pub tags: Vec<String>,
    pub policy: Option<String>,
    pub controls: Vec<String>,
    /// Makes generated variants (mutators, sampling) reproducible; default: random.
    pub seed: Option<u64>,
    /// Send every request even when an identical one was answered before.
    pub no_cache: bool,
    /// At most this many attempts in flight per target (never above the target's own).
    pub concurrency: Option<u32>,
}

impl StartAudit {
    /// An audit of one target with the given policy.
    pub fn target(target: impl Into<String>, policy: Option<&str>) -> Self {
        Self {
            targets: vec![target.into()],
            policy: policy.map(str::to_string),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub result: Result<Reply, ApiError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Status(StatusReport),
    Subscribed(Topic),
    Unsubscribed(Topic),
    AuditStarted {
        run: RunId,
    },
    Audit(AuditDetail),
    Audits(Vec<AuditSummary>),
    /// The request was carried out; nothing to return.
    Done,
    Events(Vec<EventEntry>),
    Checkpoints {
        checkpoints: Vec<Checkpoint>,
        /// `aura-ed25519:<hex>`.
        public_key: String,
    },
    Knowledge(Vec<KnowledgeHit>),
}

/// An event log record and, when asked for, its payload (JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEntry {
    pub record: EventRecord,
    pub payload: Option<String>,
    /// The payload was removed by retention (not the same as missing or altered).
    pub purged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeHit {
    pub id: u64,
    pub text: String,
    pub kind: String,
    pub tags: Vec<String>,
    pub source: String,
    /// Confidence after decay.
    pub confidence: f32,
    /// Cosine similarity to the query.
    pub score: f32,
    pub created: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub daemon: DaemonStatus,
    pub agents: Vec<AgentRow>,
    pub audits: Vec<AuditSummary>,
    pub alerts: AlertCounts,
    pub topics: Vec<TopicRow>,
    pub breakers: Vec<BreakerRow>,
}

/// One bus topic's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRow {
    pub topic: String,
    pub depth: u64,
    pub in_flight: u64,
    pub redeliveries: u64,
    pub dead_letters: u64,
    pub expired: u64,
}

/// One target's circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerRow {
    pub target: String,
    /// `closed`, `open` or `half-open`.
    pub state: String,
    pub consecutive_failures: u32,
}

/// A failed request. `code` is for programs, `message` is a sentence for a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    BadRequest,
    /// The connection's role may not do this.
    Forbidden,
    NotFound,
    /// Conflicts with current state (e.g. already running).
    Conflict,
    /// The daemon is starting or stopping.
    Unavailable,
    Internal,
}

/// What to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subscription {
    Daemon,
    Agents,
    Audits,
    /// The alert log from `from` (a [`crate::view::Alert::seq`]) on; `None` sends only
    /// alerts raised after subscribing. A reconnecting client passes its last seq + 1.
    Alerts {
        from: Option<u64>,
    },
    /// The event log from `from` on, then live; `None` sends only new records.
    Events {
        from: Option<u64>,
    },
}

impl Subscription {
    pub fn topic(self) -> Topic {
        match self {
            Subscription::Daemon => Topic::Daemon,
            Subscription::Agents => Topic::Agents,
            Subscription::Audits => Topic::Audits,
            Subscription::Alerts { .. } => Topic::Alerts,
            Subscription::Events { .. } => Topic::Events,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    Daemon,
    Agents,
    Audits,
    Alerts,
    Events,
}

/// Pushed to subscribers.
///
/// State topics (daemon, agents, audits): one `Snapshot`, then `Delta`s. `seq` counts
/// changes per topic: a snapshot carries the seq of the last change it includes, each
/// delta carries the next one. A delta *replaces* the row it names (or removes it). A
/// client that sees a gap, or gets `Lagged`, drops its copy and waits for the fresh
/// `Snapshot` the server sends right after `Lagged`.
///
/// Log topics (alerts): `Alert` records in seq order, replayed from the cursor given at
/// subscription and then live; never a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Update {
    Snapshot {
        seq: u64,
        state: Snapshot,
    },
    Delta {
        seq: u64,
        delta: Delta,
    },
    /// The client fell `missed` changes behind; a fresh snapshot follows.
    Lagged {
        topic: Topic,
        missed: u64,
    },
    Alert(Alert),
    Event(EventRecord),
}

impl Update {
    /// The audit runs an update describes: every run of an audits snapshot, or the one
    /// run a delta changed; none for anything else.
    pub fn into_audits(self) -> Vec<AuditSummary> {
        match self {
            Update::Snapshot {
                state: Snapshot::Audits(list),
                ..
            } => list,
            Update::Delta {
                delta: Delta::Audit(a),
                ..
            } => vec![a],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Snapshot {
    Daemon(DaemonStatus),
    Agents(Vec<AgentRow>),
    Audits(Vec<AuditSummary>),
}

impl Snapshot {
    pub fn topic(&self) -> Topic {
        match self {
            Snapshot::Daemon(_) => Topic::Daemon,
            Snapshot::Agents(_) => Topic::Agents,
            Snapshot::Audits(_) => Topic::Audits,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Delta {
    Daemon(DaemonStatus),
    Agent(AgentRow),
    Audit(AuditSummary),
    AuditRemoved(RunId),
}

impl Delta {
    pub fn topic(&self) -> Topic {
        match self {
            Delta::Daemon(_) => Topic::Daemon,
            Delta::Agent(_) => Topic::Agents,
            Delta::Audit(_) | Delta::AuditRemoved(_) => Topic::Audits,
        }
    }
}
