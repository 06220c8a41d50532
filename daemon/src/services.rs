//! What every agent and the server share: cheap to clone.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::aggregator::ViewHandle;
use crate::bus::Bus;
use crate::catalog::Catalog;
use crate::config::DaemonConfig;
use crate::store::Store;

#[derive(Clone)]
pub struct Services {
    pub config: Arc<DaemonConfig>,
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    pub view: ViewHandle,
    pub catalog: Catalog,
    pub reports_dir: PathBuf,
    /// Cancelled when the daemon stops; long work checks it between steps.
    pub cancel: CancellationToken,
}
