//! What every agent and the server share: cheap to clone.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::aggregator::ViewHandle;
use crate::bus::Bus;
use crate::catalog::Catalog;
use crate::config::DaemonConfig;
use crate::eventlog::EventLog;
use crate::evidence::EvidenceStore;
use crate::judge::Judge;
use crate::kb::KnowledgeStore;
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
    /// The daemon's own LLM judge, when configured.
    pub judge: Option<Arc<Judge>>,
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
