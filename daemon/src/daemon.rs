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
use crate::config::{DaemonConfig, Overrides};
use crate::datadir::{DataDir, DataDirError};
use crate::eventlog::{EventLog, SledEventLog};
use crate::evidence::{Digest, EvidenceStore};
use crate::generate::writer::PromptWriter;
use crate::judge::Judge;
use crate::kb::{Embedder, HashedEmbedder, HttpEmbedder, KnowledgeStore, SledKnowledge};
use crate::llm::DaemonLlm;
use crate::provider::ResponseCache;
use crate::runctl::RunControl;
use crate::server::{Server, socket};
use crate::services::Services;
use crate::store::{Store, StoreError};
use crate::systemd;
use crate::targets::TargetDefaults;
use crate::watcher;
use aura_proto::view::Severity;

/// The knowledge base with the configured embedder.
fn open_kb(
    config: &DaemonConfig,
    db: &sled::Db,
    dir: &std::path::Path,
) -> Result<SledKnowledge, StartError> {
    let embedder: Arc<dyn Embedder> = match &config.knowledge.embeddings {
        None => Arc::new(HashedEmbedder),
        Some(e) => {
            let key = match &e.api_key {
                Some(s) => match (&s.env, &s.file) {
                    (Some(v), None) => Some(std::env::var(v).map_err(|_| {
                        StartError::Config(format!(
                            "knowledge.embeddings: the API key variable {v} is not set"
                        ))
                    })?),
                    (None, Some(f)) => Some(
                        std::fs::read_to_string(f)
                            .map(|k| k.trim().to_string())
                            .map_err(|err| {
                                StartError::Config(format!(
                                    "knowledge.embeddings: cannot read {}: {err}",
                                    f.display()
                                ))
                            })?,
                    ),
                    _ => {
                        return Err(StartError::Config(
                            "knowledge.embeddings.api_key needs exactly one of env or file".into(),
                        ));
                    }
                },
                None => None,
            };
            Arc::new(
                HttpEmbedder::new(
                    &e.endpoint,
                    &e.model,
                    key,
                    e.dimensions,
                    std::time::Duration::from_secs(30),
                )
                .map_err(StartError::Config)?,
            )
        }
    };
    let half_life = config.knowledge.half_life.as_secs_f32() / 86_400.0;
    SledKnowledge::open(db, dir, embedder, half_life).map_err(|e| StartError::Config(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Events(#[from] crate::eventlog::EventLogError),
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
            bus: BusConfig::from(&config.bus),
            config,
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
        let evidence = EvidenceStore::open(store.db())?;
        let events: Arc<dyn EventLog> = Arc::new(SledEventLog::open(
            store.db(),
            evidence.clone(),
            store.committer().clone(),
            &data_dir.path().join("keys"),
            config.events.checkpoint_every,
        )?);
        let bus: Arc<dyn Bus> = Arc::new(SledBus::open(
            store.db(),
            self.bus,
            store.committer().clone(),
        )?);
        let kb: Arc<dyn KnowledgeStore> =
            Arc::new(open_kb(&config, store.db(), &data_dir.path().join("kb"))?);
        let socket_path = socket::choose_path(&config);
        let view = aggregator::spawn(
            store.clone(),
            events.clone(),
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
        events.append(
            "daemon",
            "DaemonStarted",
            &serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "data_dir": config.data_dir,
                "public_key": aura_ledger::format_public_key(&events.public_key()),
            }),
        )?;
        let cache = if config.audit.cache {
            Some(ResponseCache::open(
                store.db(),
                evidence.clone(),
                config.audit.cache_ttl,
            )?)
        } else {
            None
        };
        let catalog = Catalog::new(TargetDefaults::from_config(&config.audit, cache.clone()));
        let baseline = {
            let d = watcher::dirs(&config);
            tokio::task::spawn_blocking(move || watcher::fingerprint(&d))
                .await
                .unwrap_or_default()
        };
        {
            let (c, cfg, v, e) = (
                catalog.clone(),
                config.clone(),
                view.clone(),
                events.clone(),
            );
            let _ = tokio::task::spawn_blocking(move || c.reload(&cfg, &v, &*e, "start")).await;
        }
        let llm = match &config.llm {
            None => None,
            Some(cfg) => match DaemonLlm::from_config(cfg, &config.audit, cache.clone()) {
                Ok(llm) => Some(llm),
                Err(e) => {
                    tracing::error!(error = %e, "the daemon's LLM is unavailable; judge detectors will be inconclusive and probe generation skipped");
                    let _ = view.raise(AlertDraft {
                        severity: Severity::Medium,
                        source: AgentKind::Analysis,
                        title: "The daemon's LLM is unavailable".into(),
                        detail: e,
                        run: None,
                        control: None,
                        target: None,
                    });
                    None
                }
            },
        };
        let judge = llm.as_ref().map(|l| Arc::new(Judge::new(l.audit.clone())));
        let prompt_writer = llm
            .as_ref()
            .map(|l| Arc::new(PromptWriter::new(l.testing.clone())));
        let svc = Services {
            config: config.clone(),
            store,
            evidence,
            bus,
            runs: RunControl::default(),
            events: events.clone(),
            kb,
            cache,
            read_index: Default::default(),
            judge,
            prompt_writer,
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
            supervisor::spawn(agents::MonitorAgent::default, svc.clone()),
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
        let scheduler = config.scheduler.enabled.then(|| {
            crate::scheduler::spawn(svc.clone(), config.scheduler.catch_up, server_stop.clone())
        });
        let checkpointer = crate::eventlog::spawn_checkpointer(
            events.clone(),
            config.events.checkpoint_interval,
            server_stop.clone(),
        );
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
                config_digest: config
                    .file
                    .as_ref()
                    .and_then(|f| std::fs::read(f).ok())
                    .map(|b| Digest::of(&b)),
                svc,
                shutdown: CancellationToken::new(),
                socket: socket_path,
            },
            server_stop,
            server,
            watcher,
            checkpointer,
            scheduler,
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
    checkpointer: JoinHandle<()>,
    scheduler: Option<JoinHandle<()>>,
    agents: Vec<JoinHandle<()>>,
    data_dir: DataDir,
}

/// A cheap handle to a running daemon.
#[derive(Clone)]
pub struct DaemonHandle {
    svc: Services,
    shutdown: CancellationToken,
    socket: PathBuf,
    /// The config file as read at start, to notice edits on reload.
    config_digest: Option<Digest>,
}

impl DaemonHandle {
    /// Asks the daemon to stop; [`Daemon::wait`] then stops it in order.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Re-reads targets and policies through the Policy agent.
    pub async fn reload(&self, reason: &str) {
        systemd::reloading();
        self.check_config_file();
        let msg = PolicyMsg::Reload {
            reason: reason.to_string(),
        };
        if let Err(e) = agents::send(&*self.svc.bus, AgentKind::Policy, &msg, Meta::default()).await
        {
            tracing::error!(error = %e, "could not request a reload");
        }
        systemd::ready("reloaded");
    }

    /// The daemon's own settings (aurad.toml) are read at start only; a reload that finds
    /// the file edited says whether the edit is valid and that a restart applies it,
    /// rather than leaving the operator to think it took effect.
    fn check_config_file(&self) {
        let Some(file) = &self.svc.config.file else {
            return;
        };
        let digest = std::fs::read(file).ok().map(|b| Digest::of(&b));
        if digest == self.config_digest {
            return;
        }
        let shown = file.display().to_string();
        let (severity, title, detail, valid) =
            match DaemonConfig::load(Some(file), Overrides::default()) {
                Err(e) => (
                    Severity::Medium,
                    format!("{shown} is invalid; the daemon runs on as started"),
                    e.to_string(),
                    false,
                ),
                Ok(_) => (
                    Severity::Low,
                    format!("{shown} changed; restart aurad to apply it"),
                    "a reload applies targets and policies; the daemon's own settings are read at start"
                        .to_string(),
                    true,
                ),
            };
        tracing::warn!(file = %shown, valid, "{title}: {detail}");
        self.svc.record(
            "daemon",
            "ConfigFileChanged",
            serde_json::json!({ "file": shown, "valid": valid, "detail": detail }),
        );
        let _ = self.svc.view.raise(AlertDraft {
            severity,
            source: AgentKind::Policy,
            title,
            detail,
            run: None,
            control: None,
            target: None,
        });
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
        let _ = self.checkpointer.await;
        if let Some(s) = self.scheduler {
            let _ = s.await;
        }
        svc.cancel.cancel();
        for a in self.agents {
            let _ = a.await;
        }
        svc.record(
            "daemon",
            "DaemonStopped",
            serde_json::json!({ "pid": std::process::id() }),
        );
        if let Err(e) = svc.events.checkpoint() {
            tracing::error!(error = %e, "could not sign the final checkpoint");
        }
        if let Err(e) = svc.kb.persist() {
            tracing::error!(error = %e, "could not save the knowledge index");
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
