//! Runs an agent: feeds it its topic, restarts it after a failure with capped
//! exponential backoff, and reports state, heartbeat, tasks done, errors and queue depth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aura_proto::view::{AgentRow, AgentState, Timestamp};
use tokio::task::{JoinHandle, JoinSet};

use super::{Agent, AgentError, topic};
use crate::bus::Delivery;
use crate::services::Services;

/// An agent that ran this long without failing starts its backoff over.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// How long in-flight handlers get to finish when the daemon stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The row this agent reports, shared by its supervisor and its loop.
#[derive(Clone)]
struct Status {
    row: Arc<Mutex<AgentRow>>,
    svc: Services,
}

impl Status {
    fn update(&self, f: impl FnOnce(&mut AgentRow)) {
        let row = {
            let mut row = self.row.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut row);
            row.clone()
        };
        self.svc.view.agent(row);
    }
}

/// Backoff before restart number `failures` (1-based): doubles from `initial`, never above
/// `max`.
pub fn backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    initial.saturating_mul(factor).min(max)
}

/// Starts supervising an agent built by `factory` (called again on every restart).
pub fn spawn<A: Agent>(factory: impl Fn() -> A + Send + 'static, svc: Services) -> JoinHandle<()> {
    let status = Status {
        row: Arc::new(Mutex::new(AgentRow {
            kind: A::KIND,
            state: AgentState::Starting,
            last_heartbeat: Timestamp::now(),
            tasks_done: 0,
            errors: 0,
            queue_depth: 0,
            restarts: 0,
        })),
        svc: svc.clone(),
    };
    tokio::spawn(supervise(factory, svc, status))
}

async fn supervise<A: Agent>(
    factory: impl Fn() -> A + Send + 'static,
    svc: Services,
    status: Status,
) {
    let agents = svc.config.agents.clone();
    let mut failures = 0u32;
    loop {
        status.update(|r| r.state = AgentState::Starting);
        // Whatever a previous incarnation held will not be acked by it.
        svc.bus.release(topic(A::KIND));
        let agent = Arc::new(factory());
        let started = Instant::now();
        let outcome = tokio::spawn(run::<A>(agent, svc.clone(), status.clone())).await;
        if svc.cancel.is_cancelled() {
            status.update(|r| r.state = AgentState::Stopped);
            tracing::info!(agent = %A::KIND, "agent stopped");
            return;
        }
        let error = match outcome {
            Ok(Ok(())) => "the agent loop ended unexpectedly".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
            Err(e) => format!("task failed: {e}"),
        };
        if started.elapsed() >= HEALTHY_AFTER {
            failures = 0;
        }
        failures += 1;
        let wait = backoff(
            failures,
            agents.restart_backoff_initial,
            agents.restart_backoff_max,
        );
        tracing::error!(agent = %A::KIND, %error, retry_in_ms = wait.as_millis() as u64, "agent failed");
        status.update(|r| {
            r.state = AgentState::Failed {
                error: error.clone(),
                retry_in_ms: wait.as_millis() as u64,
            };
            r.errors += 1;
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = svc.cancel.cancelled() => {
                status.update(|r| r.state = AgentState::Stopped);
                return;
            }
        }
        status.update(|r| r.restarts += 1);
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

async fn run<A: Agent>(agent: Arc<A>, svc: Services, status: Status) -> Result<(), AgentError> {
    let topic = topic(A::KIND);
    agent.start(&svc).await?;
    status.update(|r| {
        r.state = AgentState::Running;
        r.last_heartbeat = Timestamp::now();
    });
    tracing::info!(agent = %A::KIND, "agent running");
    let mut handlers: JoinSet<(Delivery, Result<(), AgentError>)> = JoinSet::new();
    // What each running handler holds, so its message stays invisible while it works.
    let mut holding: HashMap<tokio::task::Id, Delivery> = HashMap::new();
    let mut heartbeat = tokio::time::interval(svc.config.agents.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let free = handlers.len() < A::PARALLEL;
        tokio::select! {
            _ = svc.cancel.cancelled() => {
                let _ = tokio::time::timeout(STOP_GRACE, async {
                    while let Some(done) = handlers.join_next().await {
                        if let Ok((d, r)) = done {
                            settle(&svc, &status, &d, r);
                        }
                    }
                }).await;
                handlers.abort_all();
                return Ok(());
            }
            delivery = svc.bus.receive(topic), if free => {
                let delivery = delivery?;
                match delivery.envelope.decode::<A::Msg>() {
                    Ok(msg) => {
                        tracing::debug!(agent = %A::KIND, id = delivery.envelope.id, ?msg, "message received");
                        let (agent, svc) = (agent.clone(), svc.clone());
                        let held = delivery.clone();
                        let handle = handlers.spawn(async move {
                            let r = agent.handle(msg, &delivery.envelope, &svc).await;
                            (delivery, r)
                        });
                        holding.insert(handle.id(), held);
                    }
                    Err(e) => settle(&svc, &status, &delivery, Err(e.into())),
                }
            }
            Some(done) = handlers.join_next_with_id() => {
                match done {
                    Ok((id, (d, r))) => {
                        holding.remove(&id);
                        settle(&svc, &status, &d, r)
                    }
                    Err(e) if e.is_panic() => {
                        return Err(AgentError::Failed(format!(
                            "a handler panicked: {}", panic_message(e.into_panic())
                        )));
                    }
                    Err(_) => {}
                }
            }
            _ = heartbeat.tick() => {
                for d in holding.values() {
                    svc.bus.extend(d);
                }
                let tick = agent.tick(&svc).await;
                let depth = svc.bus.stats(topic).depth;
                status.update(|r| {
                    r.last_heartbeat = Timestamp::now();
                    r.queue_depth = depth;
                    if let Err(e) = &tick {
                        if e.is_storage_failure() {
                            svc.store.committer().note_write_failure(e.to_string());
                        }
                        r.errors += 1;
                        r.state = AgentState::Degraded { reason: e.to_string() };
                    }
                });
            }
        }
    }
}

/// Acks or nacks a handled message and records the outcome.
fn settle(svc: &Services, status: &Status, d: &Delivery, result: Result<(), AgentError>) {
    match result {
        Ok(()) => {
            if let Err(e) = svc.bus.ack(d) {
                tracing::error!(error = %e, id = d.envelope.id, "could not ack");
            }
            status.update(|r| {
                r.tasks_done += 1;
                if matches!(r.state, AgentState::Degraded { .. }) {
                    r.state = AgentState::Running;
                }
            });
        }
        Err(AgentError::ShuttingDown) => {}
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(id = d.envelope.id, topic = %d.envelope.topic, error = %reason, "message failed");
            if e.is_storage_failure() {
                svc.store.committer().note_write_failure(reason.clone());
            }
            if let Err(e) = svc.bus.nack(d, &reason) {
                tracing::error!(error = %e, id = d.envelope.id, "could not nack");
            }
            status.update(|r| {
                r.errors += 1;
                r.state = AgentState::Degraded { reason };
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff(1, i, m), Duration::from_millis(100));
        assert_eq!(backoff(2, i, m), Duration::from_millis(200));
        assert_eq!(backoff(4, i, m), Duration::from_millis(800));
        assert_eq!(backoff(5, i, m), m);
        assert_eq!(backoff(500, i, m), m);
    }
}

#[cfg(test)]
mod restart_tests {
    use aura_proto::view::{AgentKind, AgentState};
    use aura_proto::wire::{Delta, Snapshot, Topic, Update};

    use super::super::{Agent, AgentError};
    use crate::bus::{Envelope, Meta, publish};
    use crate::services::{Services, testing};

    /// Panics on `"boom"`, succeeds otherwise.
    struct Fragile;

    impl Agent for Fragile {
        type Msg = String;
        const KIND: AgentKind = AgentKind::Learning;

        async fn handle(
            &self,
            msg: String,
            _env: &Envelope,
            _svc: &Services,
        ) -> Result<(), AgentError> {
            if msg == "boom" {
                panic!("fragile agent hit a bad message");
            }
            if msg == "error" {
                return Err(AgentError::Failed("could not do it".into()));
            }
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_panicking_agent_is_restarted_with_backoff_and_reports_each_state() {
        let dir = tempfile::tempdir().unwrap();
        let svc = testing::services(dir.path());
        let (snapshot, mut rx) = svc.view.subscribe(Topic::Agents).await.unwrap();
        assert!(matches!(
            snapshot,
            Update::Snapshot {
                state: Snapshot::Agents(_),
                ..
            }
        ));
        let handle = super::spawn(|| Fragile, svc.clone());
        let mut states = Vec::new();
        let wait = async {
            let mut sent_error = false;
            let mut sent_boom = false;
            loop {
                let Ok(Update::Delta {
                    delta: Delta::Agent(row),
                    ..
                }) = rx.recv().await
                else {
                    continue;
                };
                states.push((row.state.label(), row.restarts, row.errors));
                if row.state == AgentState::Running && !sent_error {
                    sent_error = true;
                    publish(&*svc.bus, "learning", &"error", Meta::default())
                        .await
                        .unwrap();
                }
                if matches!(row.state, AgentState::Degraded { .. }) && !sent_boom {
                    sent_boom = true;
                    publish(&*svc.bus, "learning", &"boom", Meta::default())
                        .await
                        .unwrap();
                }
                if row.restarts >= 1 && row.state == AgentState::Running {
                    return;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), wait)
            .await
            .expect("restarted in time");
        let labels: Vec<&str> = states.iter().map(|s| s.0).collect();
        assert!(labels.contains(&"degraded"), "{states:?}");
        assert!(labels.contains(&"failed"), "{states:?}");
        let last = states.last().unwrap();
        assert_eq!((last.0, last.1), ("running", 1), "{states:?}");
        // The message that crashes it is redelivered a bounded number of times, then
        // set aside as a dead letter: the agent does not crash forever.
        let dead = async {
            while svc.bus.stats("learning").dead_letters == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), dead)
            .await
            .expect("dead-lettered");
        svc.cancel.cancel();
        handle.await.unwrap();
    }
}
