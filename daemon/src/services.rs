//! What every agent and the server share: cheap to clone.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::aggregator::ViewHandle;
use crate::bus::Bus;
use crate::catalog::Catalog;
use crate::config::DaemonConfig;
use crate::evidence::EvidenceStore;
use crate::judge::Judge;
use crate::runctl::RunControl;
use crate::store::Store;

#[derive(Clone)]
pub struct Services {
    pub config: Arc<DaemonConfig>,
    pub store: Store,
    pub evidence: EvidenceStore,
    pub bus: Arc<dyn Bus>,
    pub runs: RunControl,
    /// The daemon's own LLM judge, when configured.
    pub judge: Option<Arc<Judge>>,
    pub view: ViewHandle,
    pub catalog: Catalog,
    pub reports_dir: PathBuf,
    /// Cancelled when the daemon stops; long work checks it between steps.
    pub cancel: CancellationToken,
}

impl Services {
    /// Prompts of attacks that succeeded before, against any target, newest first: the
    /// knowledge base's memory, offered to probe controls as extra seeds.
    pub fn learned_attacks(&self) -> Vec<String> {
        Vec::new()
    }
}
