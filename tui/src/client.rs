//! A connection to the daemon: handshake, requests matched to responses by id, and
//! subscription updates on a channel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aura_proto::codec::FramedConn;
use aura_proto::handshake::{HandshakeReply, Hello, Welcome};
use aura_proto::paths::PathEnv;
use aura_proto::wire::{ApiError, ClientFrame, Reply, Request, RequestBody, ServerFrame, Update};
use aura_proto::{MAGIC, PROTOCOL_VERSION};
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ToFsName};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the daemon at {path}: {message}")]
    Unreachable { path: PathBuf, message: String },
    #[error("{0}")]
    Incompatible(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the daemon closed the connection")]
    Disconnected,
    #[error("{}", .0.message)]
    Api(ApiError),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Reply, ApiError>>>>>;

pub struct Client {
    pub welcome: Welcome,
    out: mpsc::Sender<ClientFrame>,
    pending: Pending,
    next_id: AtomicU64,
    updates: Option<mpsc::Receiver<Update>>,
}

/// The socket to use: the given one, else the first default candidate that exists.
pub fn resolve_socket(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    let env = PathEnv::from_process(root);
    let candidates = env.socket_candidates(&env.default_data_dir());
    candidates
        .iter()
        .find(|p| p.exists())
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| env.default_data_dir().join(aura_proto::paths::SOCKET_FILE))
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        let unreachable = |message: String| ClientError::Unreachable {
            path: path.to_path_buf(),
            message,
        };
        let name = path
            .to_fs_name::<GenericFilePath>()
            .map_err(|e| unreachable(e.to_string()))?;
        let mut stream = Stream::connect(name)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        stream
            .write_all(&MAGIC)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut conn = FramedConn::new(stream);
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            client: concat!("aura ", env!("CARGO_PKG_VERSION")).to_string(),
        };
        conn.send(&hello)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let welcome = match conn.expect::<HandshakeReply>().await {
            Ok(HandshakeReply::Welcome(w)) => w,
            Ok(HandshakeReply::Incompatible { message }) => {
                return Err(ClientError::Incompatible(message));
            }
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        };
        let (out_tx, out_rx) = mpsc::channel(64);
        let (upd_tx, upd_rx) = mpsc::channel(1024);
        let pending: Pending = Arc::default();
        tokio::spawn(io_loop(conn, out_rx, upd_tx, pending.clone()));
        Ok(Self {
            welcome,
            out: out_tx,
            pending,
            next_id: AtomicU64::new(1),
            updates: Some(upd_rx),
        })
    }

    /// Sends a request and waits for its response.
    pub async fn request(&self, body: RequestBody) -> Result<Reply, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        self.out
            .send(ClientFrame::Request(Request { id, body }))
            .await
            .map_err(|_| ClientError::Disconnected)?;
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(api)) => Err(ClientError::Api(api)),
            Err(_) => Err(ClientError::Disconnected),
        }
    }

    /// Subscription updates; can be taken once.
    pub fn take_updates(&mut self) -> Option<mpsc::Receiver<Update>> {
        self.updates.take()
    }
}

async fn io_loop(
    mut conn: FramedConn<Stream>,
    mut out: mpsc::Receiver<ClientFrame>,
    updates: mpsc::Sender<Update>,
    pending: Pending,
) {
    loop {
        tokio::select! {
            frame = out.recv() => {
                let Some(frame) = frame else { break };
                if conn.send(&frame).await.is_err() { break; }
            }
            incoming = conn.recv::<ServerFrame>() => match incoming {
                Ok(Some(ServerFrame::Response(r))) => {
                    let waiter = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&r.id);
                    match waiter {
                        Some(tx) => { let _ = tx.send(r.result); }
                        // Id 0: the daemon is closing this connection, and says why.
                        None => if let Err(e) = r.result { eprintln!("aura: {}", e.message); },
                    }
                }
                Ok(Some(ServerFrame::Update(u))) => {
                    // A closed receiver only means nobody watches updates.
                    let _ = updates.send(u).await;
                }
                Ok(Some(ServerFrame::Pong(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    // Dropping the waiters tells every pending request that the connection is gone.
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
}
