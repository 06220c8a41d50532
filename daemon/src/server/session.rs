//! One client connection: handshake, then requests and subscriptions until either side
//! closes. Every protocol error gets a sentence back before the connection closes.

use std::time::Duration;

use aura_proto::codec::{CodecError, FramedConn};
use aura_proto::handshake::{HandshakeReply, Hello, Welcome, version_mismatch_message};
use aura_proto::view::Role;
use aura_proto::wire::{
    ApiError, ClientFrame, ErrorCode, Reply, Request, RequestBody, Response, ServerFrame,
    Subscription, Topic, Update,
};
use aura_proto::{MAGIC, PROTOCOL_VERSION};
use interprocess::local_socket::tokio::Stream;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::access::Peer;
use crate::agents::start_audit;
use crate::run::Requester;
use crate::services::Services;
use aura_proto::view::AuditDetail;

/// Time a client has to send the magic and its hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames queued for a client before its subscriptions slow down (and then lag).
const OUTBOUND: usize = 256;

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
        subs: Vec::new(),
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

struct Session {
    svc: Services,
    peer: Peer,
    role: Role,
    subs: Vec<(Topic, AbortHandle)>,
}

impl Session {
    async fn run(mut self, mut conn: FramedConn<Stream>, stop: CancellationToken) {
        let (out_tx, mut out_rx) = mpsc::channel::<ServerFrame>(OUTBOUND);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                frame = out_rx.recv() => {
                    let Some(frame) = frame else { break };
                    if conn.send(&frame).await.is_err() { break; }
                }
                incoming = conn.recv::<ClientFrame>() => match incoming {
                    Ok(Some(ClientFrame::Ping(n))) => {
                        if conn.send(&ServerFrame::Pong(n)).await.is_err() { break; }
                    }
                    Ok(Some(ClientFrame::Request(req))) => {
                        let resp = self.handle(req, &out_tx).await;
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
        for (_, h) in self.subs {
            h.abort();
        }
    }

    async fn handle(&mut self, req: Request, out: &mpsc::Sender<ServerFrame>) -> Response {
        let result = self.dispatch(req.body, out).await;
        Response { id: req.id, result }
    }

    async fn dispatch(
        &mut self,
        body: RequestBody,
        out: &mpsc::Sender<ServerFrame>,
    ) -> Result<Reply, ApiError> {
        let svc = self.svc.clone();
        let svc = &svc;
        let internal =
            |e: crate::store::StoreError| ApiError::new(ErrorCode::Internal, e.to_string());
        match body {
            RequestBody::Status => svc
                .view
                .status()
                .await
                .map(Reply::Status)
                .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the daemon is stopping")),
            RequestBody::Subscribe(sub) => {
                let topic = sub.topic();
                self.unsubscribe(topic);
                let task = match sub {
                    Subscription::Alerts { from } => {
                        tokio::spawn(forward_alerts(svc.clone(), from, out.clone()))
                    }
                    _ => tokio::spawn(forward_state(svc.clone(), topic, out.clone())),
                };
                self.subs.push((topic, task.abort_handle()));
                Ok(Reply::Subscribed(topic))
            }
            RequestBody::Unsubscribe(topic) => {
                self.unsubscribe(topic);
                Ok(Reply::Unsubscribed(topic))
            }
            RequestBody::StartAudit(req) => {
                if self.role != Role::Operator {
                    return Err(ApiError::new(
                        ErrorCode::Forbidden,
                        format!(
                            "this connection is a viewer (uid {}); starting an audit needs an \
                             operator: add the uid to access.operator_uids in aurad.toml",
                            self.peer
                                .uid
                                .map(|u| u.to_string())
                                .unwrap_or_else(|| "unknown".into())
                        ),
                    ));
                }
                let requester = Requester {
                    uid: self.peer.uid,
                    role: self.role,
                };
                start_audit(svc, req, requester)
                    .await
                    .map(|run| Reply::AuditStarted { run })
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

    fn unsubscribe(&mut self, topic: Topic) {
        self.subs.retain(|(t, h)| {
            if *t == topic {
                h.abort();
                false
            } else {
                true
            }
        });
    }
}

/// Snapshot, then deltas; after a lag, `Lagged` and a fresh snapshot.
async fn forward_state(svc: Services, topic: Topic, out: mpsc::Sender<ServerFrame>) {
    loop {
        let Some((snapshot, mut rx)) = svc.view.subscribe(topic).await else {
            return;
        };
        if out.send(ServerFrame::Update(snapshot)).await.is_err() {
            return;
        }
        loop {
            match rx.recv().await {
                Ok(update) => {
                    if out.send(ServerFrame::Update(update)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let lagged = Update::Lagged { topic, missed };
                    if out.send(ServerFrame::Update(lagged)).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Replays the alert log from a cursor, then follows it live. A lag is repaired from the
/// store, so a subscriber never misses an alert.
async fn forward_alerts(svc: Services, from: Option<u64>, out: mpsc::Sender<ServerFrame>) {
    let mut live = svc.view.alerts();
    let store = svc.store.clone();
    let mut next = match from {
        Some(f) => f,
        None => store.next_alert_seq().unwrap_or(1),
    };
    loop {
        // Replay whatever is stored from `next` on.
        loop {
            let batch = match store.alerts_from(next, 256) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the alert log");
                    return;
                }
            };
            if batch.is_empty() {
                break;
            }
            for a in batch {
                next = a.seq + 1;
                if out
                    .send(ServerFrame::Update(Update::Alert(a)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        loop {
            match live.recv().await {
                Ok(a) if a.seq < next => {}
                Ok(a) => {
                    next = a.seq + 1;
                    if out
                        .send(ServerFrame::Update(Update::Alert(a)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
