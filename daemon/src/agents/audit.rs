//! The Audit agent: executes a run's pending attempts against all its targets at once,
//! each target within its own limits, judges each answer with the control's detectors,
//! and checkpoints completed attempts (answer in the evidence store, verdict in the
//! attempt record) durably before counting them. A run resumed after a crash sends only
//! the attempts that were not checkpointed: at most those in flight at the crash.
//!
//! A critical control's failure raises its alert at once. Pause lets the attempts in
//! flight finish and stops; cancel abandons them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use aura_proto::view::{AgentKind, RunState, Severity, Timestamp, Verdict};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::messages::{AuditMsg, OrchestratorMsg};
use super::orchestrator::raise_failure;
use super::{Agent, AgentError, send};
use crate::bus::{Envelope, Meta};
use crate::detectors::{self, Detector, Input};
use crate::provider::Provider;
use crate::run::{AttemptOutcome, AttemptRecord, Phase, RunRecord};
use crate::runctl::Signal;
use crate::services::Services;

pub struct AuditAgent;

impl Agent for AuditAgent {
    type Msg = AuditMsg;
    const KIND: AgentKind = AgentKind::Audit;
    /// Runs proceed side by side.
    const PARALLEL: usize = 4;

    async fn handle(
        &self,
        msg: AuditMsg,
        env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let AuditMsg::Execute { run } = msg;
        let Some(record) = svc.store.run(run)? else {
            return Ok(());
        };
        if record.state.is_finished() || record.state == RunState::Paused {
            return Ok(());
        }
        if record.phase == Phase::Executing {
            // One executor per run: a second Execute (a resume while the first is still
            // draining) leaves the run to the one working on it.
            if !svc.runs.claim(run) {
                return Ok(());
            }
            let mut record = record;
            let finish = loop {
                let result = execute(svc, record).await;
                svc.runs.release(run);
                let finish = result?;
                // Resumed while finishing a pause: carry on, unless another executor
                // already took the run over.
                let resumed = svc
                    .store
                    .run(run)?
                    .filter(|r| r.state == RunState::Running && r.phase == Phase::Executing);
                match (finish, resumed) {
                    (Finish::Paused, Some(r)) if svc.runs.claim(run) => record = r,
                    (f, _) => break f,
                }
            };
            match finish {
                Finish::Done => {}
                Finish::Paused | Finish::Cancelled => return Ok(()),
            }
        }
        let Some(record) = svc.store.run(run)? else {
            return Ok(());
        };
        if record.phase == Phase::Analyzing {
            send(
                &*svc.bus,
                AgentKind::Orchestrator,
                &OrchestratorMsg::Executed { run },
                Meta::caused_by(env),
            )
            .await?;
        }
        Ok(())
    }
}

enum Finish {
    Done,
    Paused,
    Cancelled,
}

/// What one target needs during execution.
struct Lane {
    provider: Arc<Provider>,
    limit: usize,
    in_flight: usize,
    queue: VecDeque<AttemptRecord>,
}

async fn execute(svc: &Services, mut record: RunRecord) -> Result<Finish, AgentError> {
    let run = record.id;
    let mut signal = svc.runs.subscribe(run);
    let registry = svc.catalog.targets();
    let mut detectors: HashMap<(String, String), Arc<Vec<Detector>>> = HashMap::new();
    for p in &record.plan {
        let compiled = p
            .detectors
            .iter()
            .map(|d| Detector::compile(d, svc.judge.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(AgentError::Failed)?;
        detectors.insert((p.id.clone(), p.target.clone()), Arc::new(compiled));
    }
    let canaries: Arc<Vec<String>> = Arc::new(record.canaries.values().cloned().collect());
    let mut lanes: BTreeMap<String, Lane> = BTreeMap::new();
    let mut pending = 0u32;
    for a in svc
        .store
        .attempts(run)?
        .into_iter()
        .filter(|a| a.outcome.is_none())
    {
        if !lanes.contains_key(&a.target) {
            let entry = registry.get(&a.target).ok_or_else(|| {
                AgentError::Failed(format!("target `{}` is no longer configured", a.target))
            })?;
            let provider = entry.provider.clone().map_err(AgentError::Failed)?;
            let own = entry.spec.concurrency.max(1);
            let limit = record.concurrency.map_or(own, |c| c.min(own)).max(1) as usize;
            lanes.insert(
                a.target.clone(),
                Lane {
                    provider,
                    limit,
                    in_flight: 0,
                    queue: VecDeque::new(),
                },
            );
        }
        pending += 1;
        if let Some(lane) = lanes.get_mut(&a.target) {
            lane.queue.push_back(a);
        }
    }
    record.attempts_done = record.attempts_total.saturating_sub(pending);
    let use_cache = !record.no_cache && svc.config.audit.cache;
    let mut in_flight: JoinSet<(String, AttemptRecord)> = JoinSet::new();
    let mut stopping: Option<Signal> = None;
    // Completed attempts go to the checkpoint writer; a lane's slot is given back only
    // once its attempt is durable, so at most `limit` attempts per target are ever
    // unrecorded (and could be sent again after a crash), while sending never waits for
    // a flush.
    let (to_writer, from_loop) = mpsc::unbounded_channel::<(String, AttemptRecord)>();
    let (durable_tx, mut durable) = mpsc::unbounded_channel::<(String, usize)>();
    let writer = tokio::spawn(checkpoint_writer(
        svc.clone(),
        record.clone(),
        from_loop,
        durable_tx,
    ));
    let mut unrecorded = 0usize;
    let outcome = loop {
        if stopping.is_none() && !svc.cancel.is_cancelled() {
            for (name, lane) in lanes.iter_mut() {
                while lane.in_flight < lane.limit {
                    let Some(attempt) = lane.queue.pop_front() else {
                        break;
                    };
                    lane.in_flight += 1;
                    let key = (attempt.control.clone(), attempt.target.clone());
                    let ds = detectors.get(&key).cloned().unwrap_or_default();
                    let (p, c, n) = (lane.provider.clone(), canaries.clone(), name.clone());
                    in_flight
                        .spawn(async move { (n, attempt_one(p, attempt, ds, c, use_cache).await) });
                }
            }
        }
        if in_flight.is_empty() && unrecorded == 0 {
            break None;
        }
        tokio::select! {
            done = in_flight.join_next(), if !in_flight.is_empty() => {
                let Some(done) = done else { continue };
                let (lane, attempt) = done.map_err(|e| AgentError::Failed(format!("attempt task failed: {e}")))?;
                unrecorded += 1;
                if to_writer.send((lane, attempt)).is_err() {
                    break Some(Err(AgentError::Failed("the checkpoint writer stopped".into())));
                }
            }
            Some((lane, n)) = durable.recv() => {
                unrecorded -= n;
                if let Some(l) = lanes.get_mut(&lane) {
                    l.in_flight -= n;
                }
            }
            _ = svc.cancel.cancelled() => {
                in_flight.abort_all();
                break Some(Err(AgentError::ShuttingDown));
            }
            changed = signal.changed() => {
                if changed.is_ok() {
                    match *signal.borrow_and_update() {
                        Signal::Cancel => {
                            in_flight.abort_all();
                            tracing::info!(run = %run, "audit cancelled");
                            break Some(Ok(Finish::Cancelled));
                        }
                        Signal::Pause => stopping = Some(Signal::Pause),
                        Signal::Run => stopping = None,
                    }
                }
            }
        }
    };
    // Whatever completed is recorded before anything else happens.
    drop(to_writer);
    let written = writer
        .await
        .map_err(|e| AgentError::Failed(format!("checkpoint writer failed: {e}")))?;
    let record = written?;
    if let Some(early) = outcome {
        return early;
    }
    if stopping == Some(Signal::Pause)
        || svc
            .store
            .run(run)?
            .is_some_and(|r| r.state == RunState::Paused)
    {
        tracing::info!(run = %run, done = record.attempts_done, "audit paused");
        return Ok(Finish::Paused);
    }
    let done = record.attempts_done;
    let record = svc
        .store
        .update_run(run, |r| {
            r.phase = Phase::Analyzing;
            r.attempts_done = done;
        })?
        .unwrap_or(record);
    svc.store.flush().await?;
    svc.view.audit(record.summary());
    svc.runs.forget(run);
    Ok(Finish::Done)
}

/// Records completed attempts in batches (answers to the evidence store, outcomes to
/// the attempt records, one flush per batch), tells the loop which lanes' attempts are
/// durable, keeps the run's progress visible, and alerts critical failures at once.
async fn checkpoint_writer(
    svc: Services,
    mut record: RunRecord,
    mut rx: mpsc::UnboundedReceiver<(String, AttemptRecord)>,
    durable: mpsc::UnboundedSender<(String, usize)>,
) -> Result<RunRecord, AgentError> {
    let mut last_view = std::time::Instant::now();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Answers tend to arrive together; let the ones just behind join this flush.
        tokio::task::yield_now().await;
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut per_lane: BTreeMap<String, usize> = BTreeMap::new();
        let mut attempts = Vec::with_capacity(batch.len());
        for (lane, mut a) in batch {
            if let Some(o) = a.outcome.as_mut()
                && let Some(text) = o.full_text.take()
            {
                o.response = Some(svc.evidence.put(text.as_bytes())?);
            }
            *per_lane.entry(lane).or_default() += 1;
            attempts.push(a);
        }
        svc.store.put_attempts(&attempts)?;
        svc.store.flush().await?;
        record.attempts_done += attempts.len() as u32;
        for (lane, n) in per_lane {
            let _ = durable.send((lane, n));
        }
        for a in &attempts {
            alert_if_critical(&svc, &mut record, a)?;
        }
        // Progress for consoles and the stored run, at most ten times a second.
        if last_view.elapsed() >= std::time::Duration::from_millis(100) {
            let done = record.attempts_done;
            svc.store
                .update_run(record.id, |r| r.attempts_done = done)?;
            svc.view.audit(record.summary());
            last_view = std::time::Instant::now();
        }
    }
    let done = record.attempts_done;
    svc.store
        .update_run(record.id, |r| r.attempts_done = done)?;
    svc.store.flush().await?;
    svc.view.audit(record.summary());
    Ok(record)
}

/// A failed attempt of a critical control is alerted now, once per control and target.
fn alert_if_critical(
    svc: &Services,
    record: &mut RunRecord,
    a: &AttemptRecord,
) -> Result<(), AgentError> {
    if a.outcome
        .as_ref()
        .is_none_or(|o| o.verdict != Verdict::Fail)
    {
        return Ok(());
    }
    let Some(p) = record.planned(&a.control, &a.target) else {
        return Ok(());
    };
    if p.severity != Severity::Critical {
        return Ok(());
    }
    let key = format!("{}@{}", a.control, a.target);
    if record.alerted.contains(&key) {
        return Ok(());
    }
    let note = a
        .outcome
        .as_ref()
        .map(|o| o.note.clone())
        .unwrap_or_default();
    raise_failure(
        svc,
        record,
        &a.control,
        &a.target,
        p.severity,
        &format!("{} (critical; raised during the run): {note}", p.title),
    )?;
    record.alerted.insert(key.clone());
    svc.store.update_run(record.id, |r| {
        r.alerted.insert(key.clone());
    })?;
    Ok(())
}

/// One attempt: ask (through traffic control), then judge. A target error is an
/// `error` verdict, never `fail`.
async fn attempt_one(
    provider: Arc<Provider>,
    mut attempt: AttemptRecord,
    detectors: Arc<Vec<Detector>>,
    canaries: Arc<Vec<String>>,
    use_cache: bool,
) -> AttemptRecord {
    let outcome = match provider
        .call(&attempt.request, &attempt.request_digest, use_cache)
        .await
    {
        Ok(called) => {
            let reply = &called.reply;
            let input = Input {
                request: &attempt.request,
                response: &reply.text,
                latency: reply.latency,
                tool_calls: &reply.tool_calls,
                canaries: &canaries,
            };
            let mut outcomes = Vec::with_capacity(detectors.len());
            for d in detectors.iter() {
                outcomes.push(d.evaluate(input).await);
            }
            let (verdict, note) = detectors::combine(&outcomes);
            let decision = attempt
                .variant
                .group
                .as_ref()
                .map(|_| detectors::decision(&reply.text));
            AttemptOutcome {
                verdict,
                response: None,
                excerpt: detectors::clip(&reply.text, 300),
                full_text: Some(reply.text.clone()),
                note,
                decision,
                latency_ms: reply.latency.as_millis() as u64,
                from_cache: called.from_cache,
                sent: called.sent,
                finished: Timestamp::now(),
            }
        }
        Err(e) => AttemptOutcome {
            verdict: Verdict::Error,
            response: None,
            excerpt: String::new(),
            full_text: None,
            note: e.to_string(),
            decision: None,
            latency_ms: 0,
            from_cache: false,
            sent: 0,
            finished: Timestamp::now(),
        },
    };
    attempt.outcome = Some(outcome);
    attempt
}
