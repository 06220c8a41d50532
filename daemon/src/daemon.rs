//! The daemon's lifecycle: a builder that starts the parts in order, a cheap handle, and
//! an ordered stop.
//!
//! Start: data dir lock, store, bus, view state, policies and targets, agents, socket;
//! then `READY=1`. Stop (SIGTERM, SIGINT, or [`DaemonHandle::shutdown`]): `STOPPING=1`,
//! stop accepting clients, stop the agents (runs are checkpointed per attempt; what is
//! in flight is redone after the next start), flush the store, remove the socket, release
//! the lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aura_proto::view::{AgentKind, DaemonState, DaemonStatus, Timestamp};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agents::messages::PolicyMsg;
use crate::agents::{self, supervisor};
use crate::aggregator::AlertDraft;
use crate::aggregator::{self, ViewHandle};
use crate::bus::{Bus, BusConfig, Meta, SledBus};
use crate::catalog::Catalog;
use crate::config::DaemonConfig;
use crate::datadir::{DataDir, DataDirError};
use crate::evidence::EvidenceStore;
use crate::judge::Judge;
use crate::provider::ResponseCache;
use crate::runctl::RunControl;
use crate::server::{Server, socket};
use crate::services::Services;
use crate::store::{Store, StoreError};
use crate::systemd;
use crate::targets::TargetDefaults;
use crate::watcher;
use aura_proto::view::Severity;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the message bus: {0}")]
    Bus(#[from] crate::bus::BusError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
}

pub struct DaemonBuilder {
    config: DaemonConfig,
    bus: BusConfig,
}

impl DaemonBuilder {
    pub fn new(config: DaemonConfig) -> Self {
        Self {
            config,
            bus: BusConfig::default(),
        }
    }

    pub fn bus_config(mut self, bus: BusConfig) -> Self {
        self.bus = bus;
        self
    }

    /// Starts every part. Returns once the socket accepts clients.
    pub async fn start(self) -> Result<Daemon, StartError> {
        crate::tls::install_provider();
        let config = Arc::new(self.config);
        let data_dir = DataDir::open(&config.data_dir)?;
        let db_path = data_dir.db_path();
        let store = tokio::task::spawn_blocking(move || Store::open(&db_path))
            .await
            .map_err(|e| StoreError::Open {
                path: config.data_dir.display().to_string(),
                message: e.to_string(),
            })??;
        let bus: Arc<dyn Bus> = Arc::new(SledBus::open(store.db(), self.bus)?);
        let socket_path = socket::choose_path(&config);
        let view = aggregator::spawn(
            store.clone(),
            DaemonStatus {
                version: env!("CARGO_PKG_VERSION").to_string(),
                host: crate::server::hostname(),
                pid: std::process::id(),
                state: DaemonState::Starting,
                started: Timestamp::now(),
                data_dir: config.data_dir.display().to_string(),
                socket: socket_path.display().to_string(),
                controls_loaded: 0,
                policy_files: 0,
                policy_error: None,
                policy_generation: 0,
                targets: Vec::new(),
                alerts: Default::default(),
            },
        )?;
        let evidence = EvidenceStore::open(store.db())?;
        let cache = if config.audit.cache {
            Some(ResponseCache::open(
                store.db(),
                evidence.clone(),
                config.audit.cache_ttl,
            )?)
        } else {
            None
        };
        let catalog = Catalog::new(TargetDefaults::from_config(&config.audit, cache));
        let baseline = {
            let d = watcher::dirs(&config);
            tokio::task::spawn_blocking(move || watcher::fingerprint(&d))
                .await
                .unwrap_or_default()
        };
        {
            let (c, cfg, v) = (catalog.clone(), config.clone(), view.clone());
            let _ = tokio::task::spawn_blocking(move || c.reload(&cfg, &v, "start")).await;
        }
        let judge = match &config.judge {
            None => None,
            Some(j) => match Judge::from_config(j, config.audit.max_response_bytes) {
                Ok(judge) => Some(Arc::new(judge)),
                Err(e) => {
                    tracing::error!(error = %e, "judge unavailable; judge detectors will be inconclusive");
                    let _ = view.raise(AlertDraft {
                        severity: Severity::Medium,
                        source: AgentKind::Analysis,
                        title: "LLM judge unavailable".into(),
                        detail: e,
                        run: None,
                        control: None,
                        target: None,
                    });
                    None
                }
            },
        };
        let svc = Services {
            config: config.clone(),
            store,
            evidence,
            bus,
            runs: RunControl::default(),
            judge,
            view: view.clone(),
            catalog,
            reports_dir: data_dir.reports_dir(),
            cancel: CancellationToken::new(),
        };
        let agents = vec![
            supervisor::spawn(|| agents::OrchestratorAgent, svc.clone()),
            supervisor::spawn(|| agents::PolicyAgent, svc.clone()),
            supervisor::spawn(|| agents::TestingAgent, svc.clone()),
            supervisor::spawn(|| agents::AuditAgent, svc.clone()),
            supervisor::spawn(|| agents::AnalysisAgent, svc.clone()),
            supervisor::spawn(|| agents::LearningAgent, svc.clone()),
            supervisor::spawn(|| agents::MonitorAgent, svc.clone()),
            supervisor::spawn(|| agents::ReportAgent, svc.clone()),
            supervisor::spawn(|| agents::RemediationAgent, svc.clone()),
        ];
        let group = config
            .access
            .socket_group
            .as_deref()
            .map(socket::resolve_group)
            .transpose()?;
        let listener = match socket::bind(&socket_path, group) {
            Ok(l) => l,
            Err(e) => {
                svc.cancel.cancel();
                for a in agents {
                    let _ = a.await;
                }
                return Err(e.into());
            }
        };
        let server_stop = CancellationToken::new();
        let watcher = watcher::spawn(svc.clone(), baseline, server_stop.clone());
        let server = tokio::spawn(
            Server::new(socket_path.clone(), listener).run(svc.clone(), server_stop.clone()),
        );
        view.daemon(|d| d.state = DaemonState::Running);
        systemd::ready(&format!("listening on {}", socket_path.display()));
        tracing::info!(
            socket = %socket_path.display(),
            data_dir = %config.data_dir.display(),
            "daemon ready"
        );
        Ok(Daemon {
            handle: DaemonHandle {
                svc,
                shutdown: CancellationToken::new(),
                socket: socket_path,
            },
            server_stop,
            server,
            watcher,
            agents,
            data_dir,
        })
    }
}

/// A running daemon. Dropping it without [`Daemon::stop`] leaves tasks running.
pub struct Daemon {
    handle: DaemonHandle,
    server_stop: CancellationToken,
    server: JoinHandle<()>,
    watcher: JoinHandle<()>,
    agents: Vec<JoinHandle<()>>,
    data_dir: DataDir,
}

/// A cheap handle to a running daemon.
#[derive(Clone)]
pub struct DaemonHandle {
    svc: Services,
    shutdown: CancellationToken,
    socket: PathBuf,
}

impl DaemonHandle {
    /// Asks the daemon to stop; [`Daemon::wait`] then stops it in order.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Re-reads targets and policies through the Policy agent.
    pub async fn reload(&self, reason: &str) {
        systemd::reloading();
        let msg = PolicyMsg::Reload {
            reason: reason.to_string(),
        };
        if let Err(e) = agents::send(&*self.svc.bus, AgentKind::Policy, &msg, Meta::default()).await
        {
            tracing::error!(error = %e, "could not request a reload");
        }
        systemd::ready("reloaded");
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn view(&self) -> &ViewHandle {
        &self.svc.view
    }

    pub fn services(&self) -> &Services {
        &self.svc
    }
}

impl Daemon {
    pub fn handle(&self) -> DaemonHandle {
        self.handle.clone()
    }

    pub fn socket_path(&self) -> &Path {
        &self.handle.socket
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Waits for SIGTERM or SIGINT (stop) and SIGHUP (reload), or a handle's shutdown.
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let handle = self.handle();
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!(signal = "SIGTERM", "stopping"); break; }
                _ = int.recv() => { tracing::info!(signal = "SIGINT", "stopping"); break; }
                _ = hup.recv() => { tracing::info!(signal = "SIGHUP", "reloading"); handle.reload("SIGHUP").await; }
                _ = handle.shutdown.cancelled() => break,
            }
        }
        self.stop().await;
        Ok(())
    }

    /// Waits until a handle asks for shutdown, then stops in order.
    pub async fn wait(self) {
        self.handle.shutdown.cancelled().await;
        self.stop().await;
    }

    /// The ordered stop.
    pub async fn stop(self) {
        systemd::stopping();
        let svc = &self.handle.svc;
        svc.view.daemon(|d| d.state = DaemonState::Stopping);
        self.server_stop.cancel();
        let _ = self.server.await;
        let _ = self.watcher.await;
        svc.cancel.cancel();
        for a in self.agents {
            let _ = a.await;
        }
        if let Err(e) = svc.store.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
        match std::fs::remove_file(&self.handle.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "could not remove the socket"),
        }
        tracing::info!("daemon stopped");
        drop(self.data_dir);
    }
}
