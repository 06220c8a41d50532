//! One client connection: handshake, then requests and subscriptions until either side
//! closes. Every protocol error gets a sentence back before the connection closes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use crate::evidence::Payload;
use crate::provider::{Breaker, BreakerState};

/// How `aura status` names the circuit breaker of the daemon's own LLM (`[llm]`).
pub const LLM_BREAKER: &str = "[llm]";
use aura_proto::codec::{CodecError, FramedConn};
use aura_proto::handshake::{HandshakeReply, Hello, Welcome, version_mismatch_message};
use aura_proto::view::{Alert, Role};
use aura_proto::wire::{
    ApiError, ClientFrame, ErrorCode, Reply, RequestBody, Response, ServerFrame, Subscription,
    Topic, Update,
};
use aura_proto::wire::{BreakerRow, EventEntry, KnowledgeHit, TopicRow};
use aura_proto::{MAGIC, PROTOCOL_VERSION};
use interprocess::local_socket::tokio::Stream;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;
use tokio_stream::{StreamExt as _, StreamMap};
use tokio_util::sync::CancellationToken;

use super::access::Peer;
use crate::agents::messages::PolicyMsg;
use crate::agents::{control_run, send, start_audit};
use crate::bus::Meta;
use crate::run::Requester;
use crate::runctl::Signal;
use crate::services::Services;
use aura_proto::view::AgentKind;
use aura_proto::view::AuditDetail;

/// Time a client has to send the magic and its hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(
    mut stream: Stream,
    svc: Services,
    peer: Peer,
    role: Role,
    stop: CancellationToken,
) {
    let mut magic = [0u8; 4];
    let got = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut magic)).await;
    let mut conn = FramedConn::new(stream);
    match got {
        Ok(Ok(_)) if magic == MAGIC => {}
        Ok(Ok(_)) => {
            tracing::debug!(?peer, "wrong magic");
            let _ = incompatible(&mut conn, "this is an AURA daemon socket and the client did not start with the AURA magic bytes").await;
            return;
        }
        _ => return,
    }
    let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.expect::<Hello>()).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let _ = incompatible(&mut conn, &format!("malformed hello: {e}")).await;
            return;
        }
        Err(_) => return,
    };
    if hello.protocol != PROTOCOL_VERSION {
        let msg = version_mismatch_message(hello.protocol, PROTOCOL_VERSION, &server_name());
        tracing::info!(client = %hello.client, client_protocol = hello.protocol, "incompatible client");
        let _ = incompatible(&mut conn, &msg).await;
        return;
    }
    let welcome = HandshakeReply::Welcome(Welcome {
        protocol: PROTOCOL_VERSION,
        server: server_name(),
        role,
        host: hostname(),
    });
    if conn.send(&welcome).await.is_err() {
        return;
    }
    tracing::debug!(client = %hello.client, ?peer, %role, "client attached");
    Session {
        svc,
        peer,
        role,
        subs: StreamMap::new(),
    }
    .run(conn, stop)
    .await;
}

async fn incompatible(conn: &mut FramedConn<Stream>, message: &str) -> Result<(), CodecError> {
    conn.send(&HandshakeReply::Incompatible {
        message: message.to_string(),
    })
    .await
}

pub fn server_name() -> String {
    concat!("aurad ", env!("CARGO_PKG_VERSION")).to_string()
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A subscription's frames, polled inside the session's own task: dropping the session
/// (closed, failed, or aborted at shutdown) drops them, so nothing outlives it.
type Feed = Pin<Box<dyn futures::Stream<Item = ServerFrame> + Send>>;

struct Session {
    svc: Services,
    peer: Peer,
    role: Role,
    subs: StreamMap<Topic, Feed>,
}

impl Session {
    fn actor(&self) -> String {
        match self.peer.uid {
            Some(uid) => format!("{}:uid={uid}", self.role),
            None => format!("{}:uid=unknown", self.role),
        }
    }

    /// Records the request in the event log (who, with what role) and refuses it unless
    /// the connection is an operator's.
    fn require_operator(&self, what: &str) -> Result<(), ApiError> {
        let allowed = self.role == Role::Operator;
        self.svc.record(
            &self.actor(),
            if allowed { "OperatorRequested" } else { "RequestRefused" },
            serde_json::json!({ "request": what, "uid": self.peer.uid, "pid": self.peer.pid, "role": self.role.to_string() }),
        );
        if allowed {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this connection is a viewer (uid {}); {what} needs an operator: add the uid \
                 to access.operator_uids in aurad.toml",
                self.peer
                    .uid
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "unknown".into())
            ),
        ))
    }

    async fn run(mut self, mut conn: FramedConn<Stream>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some((_, frame)) = self.subs.next(), if !self.subs.is_empty() => {
                    if conn.send(&frame).await.is_err() { break; }
                }
                incoming = conn.recv::<ClientFrame>() => match incoming {
                    Ok(Some(ClientFrame::Ping(n))) => {
                        if conn.send(&ServerFrame::Pong(n)).await.is_err() { break; }
                    }
                    Ok(Some(ClientFrame::Request(req))) => {
                        let result = self.dispatch(req.body).await;
                        let resp = Response { id: req.id, result };
                        if conn.send(&ServerFrame::Response(resp)).await.is_err() { break; }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, peer = ?self.peer, "bad frame; closing");
                        // Id 0 is never a request's: it answers the connection itself.
                        let resp = Response {
                            id: 0,
                            result: Err(ApiError::new(ErrorCode::BadRequest, format!("closing the connection: {e}"))),
                        };
                        let _ = conn.send(&ServerFrame::Response(resp)).await;
                        break;
                    }
                },
            }
        }
    }

    async fn dispatch(&mut self, body: RequestBody) -> Result<Reply, ApiError> {
        let svc = self.svc.clone();
        let svc = &svc;
        let internal =
            |e: crate::store::StoreError| ApiError::new(ErrorCode::Internal, e.to_string());
        match body {
            RequestBody::Status => {
                let mut report = svc.view.status().await.ok_or_else(|| {
                    ApiError::new(ErrorCode::Unavailable, "the daemon is stopping")
                })?;
                report.topics = AgentKind::ALL
                    .iter()
                    .map(|k| {
                        let s = svc.bus.stats(k.name());
                        TopicRow {
                            topic: k.name().to_string(),
                            depth: s.depth,
                            in_flight: s.in_flight,
                            redeliveries: s.redeliveries,
                            dead_letters: s.dead_letters,
                            expired: s.expired,
                        }
                    })
                    .collect();
                let row = |name: &str, b: &Breaker| BreakerRow {
                    target: name.to_string(),
                    state: match b.state() {
                        BreakerState::Closed => "closed",
                        BreakerState::Open => "open",
                        BreakerState::HalfOpen => "half-open",
                    }
                    .to_string(),
                    consecutive_failures: b.consecutive_failures(),
                };
                let targets = svc.catalog.targets();
                report.breakers = targets
                    .entries()
                    .filter_map(|e| Some(row(e.spec.name(), e.provider.as_ref().ok()?.breaker())))
                    .collect();
                // The daemon's own LLM, under the name its config section has.
                if let Some(j) = &svc.judge {
                    report.breakers.push(row(LLM_BREAKER, j.breaker()));
                }
                Ok(Reply::Status(report))
            }
            RequestBody::ReadEvents {
                from,
                limit,
                payloads,
            } => {
                let records = svc
                    .events
                    .read(from, limit.clamp(1, 10_000) as usize)
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
                Ok(Reply::Events(
                    records
                        .into_iter()
                        .map(|record| {
                            let (payload, purged) = if payloads {
                                match svc.events.payload(&record) {
                                    Payload::Present(b) => {
                                        (Some(String::from_utf8_lossy(&b).into_owned()), false)
                                    }
                                    Payload::Purged => (None, true),
                                    _ => (None, false),
                                }
                            } else {
                                (None, false)
                            };
                            EventEntry {
                                record,
                                payload,
                                purged,
                            }
                        })
                        .collect(),
                ))
            }
            RequestBody::EventCheckpoints => Ok(Reply::Checkpoints {
                checkpoints: svc
                    .events
                    .checkpoints()
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
                public_key: aura_ledger::format_public_key(&svc.events.public_key()),
            }),
            RequestBody::SearchKnowledge(q) => {
                let query = crate::kb::Query {
                    text: q.text,
                    tags: q.tags,
                    kind: q.kind,
                    min_confidence: q.min_confidence,
                    limit: q.limit.max(1) as usize,
                };
                let hits = svc
                    .kb
                    .search(&query)
                    .await
                    .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
                Ok(Reply::Knowledge(
                    hits.into_iter()
                        .map(|h| KnowledgeHit {
                            id: h.entry.id,
                            text: h.entry.text,
                            kind: h.entry.kind,
                            tags: h.entry.tags,
                            source: h.entry.source,
                            confidence: h.confidence,
                            score: h.score,
                            created: h.entry.created,
                        })
                        .collect(),
                ))
            }
            RequestBody::Subscribe(sub) => {
                let topic = sub.topic();
                let feed = match sub {
                    Subscription::Alerts { from } => alert_feed(svc.clone(), from),
                    Subscription::Events { from } => event_feed(svc.clone(), from),
                    _ => state_feed(svc.clone(), topic),
                };
                // Replaces an earlier subscription to the same topic.
                self.subs.insert(topic, feed);
                Ok(Reply::Subscribed(topic))
            }
            RequestBody::Unsubscribe(topic) => {
                self.subs.remove(&topic);
                Ok(Reply::Unsubscribed(topic))
            }
            RequestBody::StartAudit(req) => {
                self.require_operator("starting an audit")?;
                let requester = Requester {
                    uid: self.peer.uid,
                    role: self.role,
                    via: "operator".into(),
                };
                start_audit(svc, req, requester)
                    .await
                    .map(|run| Reply::AuditStarted { run })
            }
            RequestBody::PauseAudit { run } => {
                self.require_operator("pausing an audit")?;
                control_run(svc, run, Signal::Pause)
                    .await
                    .map(|()| Reply::Done)
            }
            RequestBody::ResumeAudit { run } => {
                self.require_operator("resuming an audit")?;
                control_run(svc, run, Signal::Run)
                    .await
                    .map(|()| Reply::Done)
            }
            RequestBody::CancelAudit { run } => {
                self.require_operator("cancelling an audit")?;
                control_run(svc, run, Signal::Cancel)
                    .await
                    .map(|()| Reply::Done)
            }
            RequestBody::Reload => {
                self.require_operator("reloading policies")?;
                let msg = PolicyMsg::Reload {
                    reason: format!("request from uid {:?}", self.peer.uid),
                };
                send(&*svc.bus, AgentKind::Policy, &msg, Meta::default())
                    .await
                    .map(|_| Reply::Done)
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
            }
            RequestBody::GetAudit { run } => {
                let record = svc.store.run(run).map_err(internal)?.ok_or_else(|| {
                    ApiError::new(ErrorCode::NotFound, format!("no audit run {run}"))
                })?;
                let controls = svc.store.results(run).map_err(internal)?;
                Ok(Reply::Audit(AuditDetail {
                    summary: record.summary(),
                    controls,
                    report_dir: record.report_dir.map(|p| p.display().to_string()),
                }))
            }
            RequestBody::ListAudits { limit } => {
                let runs = svc
                    .store
                    .recent_runs(limit.min(1000) as usize)
                    .map_err(internal)?;
                Ok(Reply::Audits(runs.iter().map(|r| r.summary()).collect()))
            }
        }
    }
}

struct EventFeed {
    svc: Services,
    live: broadcast::Receiver<aura_ledger::EventRecord>,
    next: u64,
    replaying: bool,
    batch: VecDeque<aura_ledger::EventRecord>,
}

/// Replays the event log from a cursor, then follows it; a gap or a lag is filled from
/// the store, so a subscriber sees every record, in order.
fn event_feed(svc: Services, from: Option<u64>) -> Feed {
    let live = svc.events.subscribe();
    let next = from.unwrap_or_else(|| svc.events.last_seq() + 1).max(1);
    let state = EventFeed {
        svc,
        live,
        next,
        replaying: true,
        batch: VecDeque::new(),
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(r) = st.batch.pop_front() {
                if r.seq < st.next {
                    continue;
                }
                st.next = r.seq + 1;
                return Some((ServerFrame::Update(Update::Event(r)), st));
            }
            if st.replaying {
                match st.svc.events.read(st.next, 512) {
                    Ok(b) if b.is_empty() => st.replaying = false,
                    Ok(b) => st.batch.extend(b),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the event log");
                        return None;
                    }
                }
                continue;
            }
            match st.live.recv().await {
                Ok(r) if r.seq < st.next => {}
                Ok(r) if r.seq == st.next => st.batch.push_back(r),
                // A gap: read what is missing from the store.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => st.replaying = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }))
}

enum StateFeed {
    Subscribe,
    Live(broadcast::Receiver<Update>),
}

/// Snapshot, then deltas; after a lag, `Lagged` and a fresh snapshot.
fn state_feed(svc: Services, topic: Topic) -> Feed {
    Box::pin(futures::stream::unfold(
        StateFeed::Subscribe,
        move |state| {
            let svc = svc.clone();
            async move {
                match state {
                    StateFeed::Subscribe => {
                        let (snapshot, rx) = svc.view.subscribe(topic).await?;
                        Some((ServerFrame::Update(snapshot), StateFeed::Live(rx)))
                    }
                    StateFeed::Live(mut rx) => match rx.recv().await {
                        Ok(update) => Some((ServerFrame::Update(update), StateFeed::Live(rx))),
                        Err(broadcast::error::RecvError::Lagged(missed)) => Some((
                            ServerFrame::Update(Update::Lagged { topic, missed }),
                            StateFeed::Subscribe,
                        )),
                        Err(broadcast::error::RecvError::Closed) => None,
                    },
                }
            }
        },
    ))
}

struct AlertFeed {
    svc: Services,
    live: broadcast::Receiver<Alert>,
    /// The seq of the next alert to send.
    next: u64,
    /// Replaying stored alerts (at start, and after a lag) rather than following live.
    replaying: bool,
    batch: VecDeque<Alert>,
}

/// Replays the alert log from a cursor, then follows it live. A lag is repaired from the
/// store, so a subscriber never misses an alert.
fn alert_feed(svc: Services, from: Option<u64>) -> Feed {
    let live = svc.view.alerts();
    let next = from.unwrap_or_else(|| svc.store.next_alert_seq().unwrap_or(1));
    let state = AlertFeed {
        svc,
        live,
        next,
        replaying: true,
        batch: VecDeque::new(),
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(a) = st.batch.pop_front() {
                st.next = a.seq + 1;
                return Some((ServerFrame::Update(Update::Alert(a)), st));
            }
            if st.replaying {
                match st.svc.store.alerts_from(st.next, 256) {
                    Ok(b) if b.is_empty() => st.replaying = false,
                    Ok(b) => st.batch.extend(b),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the alert log");
                        return None;
                    }
                }
                continue;
            }
            match st.live.recv().await {
                Ok(a) if a.seq < st.next => {}
                Ok(a) => st.batch.push_back(a),
                Err(broadcast::error::RecvError::Lagged(_)) => st.replaying = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }))
}
