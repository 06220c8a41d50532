//! The local socket server: accepts clients, maps peer credentials to a role, and runs
//! one session per connection. A misbehaving client ends its own session only.

pub mod access;
mod session;
pub mod socket;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::traits::StreamCommon;
use interprocess::local_socket::traits::tokio::Listener as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::services::Services;
use access::{Peer, role_for};
pub use session::{hostname, server_name};

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 256;

pub struct Server {
    pub path: PathBuf,
    listener: Listener,
}

impl Server {
    pub fn new(path: PathBuf, listener: Listener) -> Self {
        Self { path, listener }
    }

    /// Accepts until `stop` is cancelled, then closes every session.
    pub async fn run(self, svc: Services, stop: CancellationToken) {
        // SAFETY: geteuid has no preconditions.
        let daemon_uid = unsafe { libc::geteuid() };
        let live = Arc::new(AtomicUsize::new(0));
        let mut sessions = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                a = self.listener.accept() => a,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            };
            let stream = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "connection refused: too many clients"
                );
                continue;
            }
            let peer = match stream.peer_creds() {
                Ok(c) => Peer {
                    uid: c.euid(),
                    gid: c.egid(),
                    pid: c.pid(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "no peer credentials; treating as viewer");
                    Peer::default()
                }
            };
            let role = role_for(&peer, &svc.config.access, daemon_uid);
            let (svc, stop, live) = (svc.clone(), stop.clone(), live.clone());
            live.fetch_add(1, Ordering::Relaxed);
            sessions.spawn(async move {
                session::serve(stream, svc, peer, role, stop).await;
                live.fetch_sub(1, Ordering::Relaxed);
            });
        }
        drop(self.listener);
        sessions.shutdown().await;
    }
}
