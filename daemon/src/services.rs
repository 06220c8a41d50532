//! What every agent and the server share: cheap to clone.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::aggregator::ViewHandle;
use crate::bus::Bus;
use crate::catalog::Catalog;
use crate::checks::read_index::ReadIndex;
use crate::config::DaemonConfig;
use crate::eventlog::EventLog;
use crate::evidence::EvidenceStore;
use crate::generate::writer::PromptWriter;
use crate::judge::Judge;
use crate::kb::KnowledgeStore;
use crate::provider::ResponseCache;
use crate::runctl::RunControl;
use crate::store::Store;

#[derive(Clone)]
pub struct Services {
    pub config: Arc<DaemonConfig>,
    pub store: Store,
    pub evidence: EvidenceStore,
    pub bus: Arc<dyn Bus>,
    pub runs: RunControl,
    /// The tamper-evident record of every state change.
    pub events: Arc<dyn EventLog>,
    pub kb: Arc<dyn KnowledgeStore>,
    /// Target answers by request digest (`[audit] cache`); the Monitor sweeps it.
    pub cache: Option<ResponseCache>,
    /// Where to resume reading transcript files that only grew.
    pub read_index: ReadIndex,
    /// The daemon's own LLM as a judge (Audit agent), when `[llm]` is configured.
    pub judge: Option<Arc<Judge>>,
    /// The daemon's own LLM writing probes (Testing agent), when `[llm]` is configured.
    pub prompt_writer: Option<Arc<PromptWriter>>,
    pub view: ViewHandle,
    pub catalog: Catalog,
    pub reports_dir: PathBuf,
    /// Cancelled when the daemon stops; long work checks it between steps.
    pub cancel: CancellationToken,
}

impl Services {
    /// Records a state change in the event log. Not durable until the next flush of the
    /// store (which every step that changes state awaits); a failure is logged and
    /// alerted by the Monitor, and never stops the change itself.
    pub fn record(&self, actor: &str, kind: &str, payload: serde_json::Value) {
        if let Err(e) = self.events.append(actor, kind, &payload) {
            tracing::error!(error = %e, kind, "could not record an event");
        }
    }

    /// Prompts of attacks that succeeded before, against any target, newest first: the
    /// knowledge base's memory, offered to probe controls as extra seeds.
    pub fn learned_attacks(&self) -> Vec<String> {
        let now = aura_proto::view::Timestamp::now();
        self.kb
            .recent("attack", 200)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.confidence_at(now) >= 0.3)
            .map(|e| e.text)
            .collect()
    }
}

#[cfg(test)]
pub mod testing {
    //! Real services on a temp dir, for unit tests of the parts that need them.

    use std::sync::Arc;

    use aura_proto::view::{DaemonState, DaemonStatus, Timestamp};
    use tokio_util::sync::CancellationToken;

    use super::Services;
    use crate::bus::{BusConfig, SledBus};
    use crate::catalog::Catalog;
    use crate::config::{DaemonConfig, Overrides};
    use crate::eventlog::SledEventLog;
    use crate::evidence::EvidenceStore;
    use crate::kb::{HashedEmbedder, SledKnowledge};
    use crate::runctl::RunControl;
    use crate::store::Store;
    use crate::targets::TargetDefaults;

    pub fn services(dir: &std::path::Path) -> Services {
        let overrides = Overrides {
            data_dir: Some(dir.to_path_buf()),
            ..Overrides::default()
        };
        let mut config = DaemonConfig::load(Some(&dir.join("missing.toml")), overrides)
            .unwrap_or_else(|_| {
                DaemonConfig::load(
                    None,
                    Overrides {
                        data_dir: Some(dir.to_path_buf()),
                        ..Overrides::default()
                    },
                )
                .unwrap()
            });
        config.agents.restart_backoff_initial = std::time::Duration::from_millis(20);
        config.agents.restart_backoff_max = std::time::Duration::from_millis(100);
        config.agents.heartbeat_interval = std::time::Duration::from_millis(50);
        let store = Store::open(&dir.join("db")).unwrap();
        let evidence = EvidenceStore::open(store.db()).unwrap();
        let events: Arc<dyn crate::eventlog::EventLog> = Arc::new(
            SledEventLog::open(
                store.db(),
                evidence.clone(),
                store.committer().clone(),
                &dir.join("keys"),
                100,
            )
            .unwrap(),
        );
        let bus = Arc::new(
            SledBus::open(store.db(), BusConfig::default(), store.committer().clone()).unwrap(),
        );
        let kb = Arc::new(
            SledKnowledge::open(store.db(), &dir.join("kb"), Arc::new(HashedEmbedder), 90.0)
                .unwrap(),
        );
        let view = crate::aggregator::spawn(
            store.clone(),
            events.clone(),
            DaemonStatus {
                version: "test".into(),
                host: "h".into(),
                pid: 1,
                state: DaemonState::Running,
                started: Timestamp::now(),
                data_dir: String::new(),
                socket: String::new(),
                controls_loaded: 0,
                policy_files: 0,
                policy_error: None,
                policy_generation: 0,
                targets: vec![],
                alerts: Default::default(),
            },
        )
        .unwrap();
        Services {
            catalog: Catalog::new(TargetDefaults::from_config(&config.audit, None)),
            config: Arc::new(config),
            store,
            evidence,
            bus,
            runs: RunControl::default(),
            events,
            kb,
            cache: None,
            read_index: Default::default(),
            judge: None,
            prompt_writer: None,
            view,
            reports_dir: dir.join("reports"),
            cancel: CancellationToken::new(),
        }
    }
}
