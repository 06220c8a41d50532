//! Live control of running audits: pause, resume, cancel. The stored run state is the
//! truth; this only wakes the executor that is working on a run right now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aura_proto::view::RunId;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Run,
    Pause,
    Cancel,
}

#[derive(Clone, Default)]
pub struct RunControl {
    runs: Arc<Mutex<HashMap<RunId, watch::Sender<Signal>>>>,
    /// Runs an executor is working on: one executor per run, however many step messages
    /// arrive (a resume while the previous executor is still draining, a redelivery).
    executing: Arc<Mutex<std::collections::HashSet<RunId>>>,
}

impl RunControl {
    /// Claims a run for an executor; `false` if another one has it.
    pub fn claim(&self, run: RunId) -> bool {
        self.executing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run)
    }

    pub fn release(&self, run: RunId) {
        self.executing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run);
    }

    /// The executor of `run` listens here; dropping the receiver ends interest.
    pub fn subscribe(&self, run: RunId) -> watch::Receiver<Signal> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.entry(run)
            .or_insert_with(|| watch::channel(Signal::Run).0)
            .subscribe()
    }

    pub fn send(&self, run: RunId, signal: Signal) {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = runs.get(&run) {
            let _ = tx.send(signal);
        }
    }

    /// Forgets a run whose executor is done.
    pub fn forget(&self, run: RunId) {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run);
    }
}
