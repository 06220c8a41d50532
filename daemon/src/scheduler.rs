//! Scheduled audits: every control with a `schedule` (cron, UTC) runs against the
//! targets it applies to when its schedule fires, through `tokio-cron-scheduler`. The
//! jobs follow the active policy set: a reload replaces them.
//!
//! Risk-based priority: when several audits start at once, targets of a higher EU AI Act
//! risk tier go first and their step messages travel at high priority; at start, controls
//! whose last run is older than their schedule's previous firing (overdue, e.g. after
//! downtime) run first, the most overdue of the riskiest targets before the rest.

use std::collections::{BTreeMap, BTreeSet};

use aura_policy::target::RiskTier;
use aura_policy::{Control, PolicySet, TargetSpec};
use aura_proto::view::{Role, Timestamp};
use aura_proto::wire::StartAudit;
use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::agents::start_audit_with;
use crate::bus::Priority;
use crate::run::Requester;
use crate::services::Services;

pub fn spawn(svc: Services, catch_up: bool, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = run(svc, catch_up, stop).await {
            tracing::error!(error = %e, "scheduler stopped; scheduled audits will not run");
        }
    })
}

async fn run(svc: Services, catch_up: bool, stop: CancellationToken) -> Result<(), String> {
    let mut sched = JobScheduler::new().await.map_err(|e| e.to_string())?;
    sched.start().await.map_err(|e| e.to_string())?;
    let mut policies = svc.catalog.subscribe();
    if catch_up {
        let set = policies.borrow().clone();
        start_overdue(&svc, &set).await;
    }
    // Jobs only send the firing schedule here; this task, which ends with the daemon,
    // holds the services (the scheduler's own tasks may outlive a stop).
    let (fired_tx, mut fired) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut jobs = Vec::new();
    loop {
        for id in jobs.drain(..) {
            let _ = sched.remove(&id).await;
        }
        let set = policies.borrow_and_update().clone();
        let schedules: BTreeSet<String> = set
            .controls
            .iter()
            .filter_map(|c| c.schedule.as_ref().map(|s| s.value.clone()))
            .collect();
        for expr in schedules {
            let (tx, e2) = (fired_tx.clone(), expr.clone());
            let job = Job::new_async_tz(
                aura_policy::schedule::six_fields(&expr),
                Utc,
                move |_id, _lock| {
                    let _ = tx.send(e2.clone());
                    Box::pin(async {})
                },
            );
            match job {
                Ok(job) => match sched.add(job).await {
                    Ok(id) => jobs.push(id),
                    Err(e) => tracing::warn!(schedule = %expr, error = %e, "cannot schedule"),
                },
                Err(e) => tracing::warn!(schedule = %expr, error = %e, "cannot schedule"),
            }
        }
        tracing::debug!(jobs = jobs.len(), "schedules installed");
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = sched.shutdown().await;
                    return Ok(());
                }
                Some(expr) = fired.recv() => fire(&svc, &expr).await,
                changed = policies.changed() => {
                    if changed.is_err() {
                        let _ = sched.shutdown().await;
                        return Ok(());
                    }
                    break;
                }
            }
        }
    }
}

fn rank(tier: RiskTier) -> u8 {
    match tier {
        RiskTier::High => 0,
        RiskTier::Limited => 1,
        RiskTier::Minimal => 2,
    }
}

/// Starts the controls of one schedule, riskiest targets first.
async fn fire(svc: &Services, expr: &str) {
    let set = svc.catalog.policies();
    let due: Vec<&Control> = set
        .controls
        .iter()
        .filter(|c| c.schedule.as_ref().is_some_and(|s| s.value == expr))
        .collect();
    let plan = per_target(svc, &due);
    start(svc, plan, "scheduler").await;
}

/// (target spec, control ids) for every target the controls apply to, riskiest first.
fn per_target(svc: &Services, controls: &[&Control]) -> Vec<(TargetSpec, Vec<String>)> {
    let registry = svc.catalog.targets();
    let mut out: Vec<(TargetSpec, Vec<String>)> = Vec::new();
    for entry in registry.entries() {
        if entry.spec.kind.answers_prompts() && entry.provider.is_err() {
            continue;
        }
        let ids: Vec<String> = controls
            .iter()
            .filter(|c| c.applies_to(&entry.spec))
            .map(|c| c.id().to_string())
            .collect();
        if !ids.is_empty() {
            out.push((entry.spec.clone(), ids));
        }
    }
    out.sort_by_key(|(t, _)| rank(t.risk_tier));
    out
}

async fn start(svc: &Services, plan: Vec<(TargetSpec, Vec<String>)>, via: &str) {
    for (target, controls) in plan {
        let req = StartAudit {
            targets: vec![target.name().to_string()],
            controls,
            ..StartAudit::default()
        };
        let who = Requester {
            uid: None,
            role: Role::Operator,
            via: via.into(),
        };
        let priority = if target.risk_tier == RiskTier::High {
            Priority::High
        } else {
            Priority::Normal
        };
        match start_audit_with(svc, req, who, priority).await {
            Ok(run) => {
                tracing::info!(run = %run, target = target.name(), via, "scheduled audit started")
            }
            Err(e) => {
                tracing::warn!(target = target.name(), error = %e.message, "scheduled audit not started")
            }
        }
    }
}

/// When a scheduled control last ran against each target, from the stored results.
fn last_runs(svc: &Services) -> BTreeMap<(String, String), Timestamp> {
    let mut out = BTreeMap::new();
    for r in svc.store.recent_runs(500).unwrap_or_default() {
        for p in &r.plan {
            let e = out
                .entry((p.id.clone(), p.target.clone()))
                .or_insert(r.started);
            if r.started > *e {
                *e = r.started;
            }
        }
    }
    out
}

/// The schedule's latest firing at or before now, in ms.
fn previous_firing(expr: &str) -> Option<Timestamp> {
    let cron = aura_policy::schedule::parse(expr).ok()?;
    let prev = cron.find_previous_occurrence(&Utc::now(), true).ok()?;
    Some(Timestamp(prev.timestamp_millis().max(0) as u64))
}

/// Starts overdue controls: riskiest targets first, and within a target the most
/// overdue controls lead the run.
async fn start_overdue(svc: &Services, set: &PolicySet) {
    let last = last_runs(svc);
    let registry = svc.catalog.targets();
    let mut plan: Vec<(TargetSpec, Vec<(u64, String)>)> = Vec::new();
    for entry in registry.entries() {
        if entry.spec.kind.answers_prompts() && entry.provider.is_err() {
            continue;
        }
        let mut overdue = Vec::new();
        for c in set.controls.iter().filter(|c| c.applies_to(&entry.spec)) {
            let Some(prev) = c.schedule.as_ref().and_then(|s| previous_firing(&s.value)) else {
                continue;
            };
            let ran = last
                .get(&(c.id().to_string(), entry.spec.name().to_string()))
                .copied();
            if ran.is_none_or(|t| t < prev) {
                let age = Timestamp::now().0.saturating_sub(ran.map_or(0, |t| t.0));
                overdue.push((age, c.id().to_string()));
            }
        }
        if !overdue.is_empty() {
            overdue.sort_by_key(|b| std::cmp::Reverse(b.0));
            plan.push((entry.spec.clone(), overdue));
        }
    }
    plan.sort_by_key(|(t, _)| rank(t.risk_tier));
    let plan: Vec<(TargetSpec, Vec<String>)> = plan
        .into_iter()
        .map(|(t, ids)| (t, ids.into_iter().map(|(_, id)| id).collect()))
        .collect();
    // On the record either way: an auditor can see that missed schedules were caught up.
    let overdue: Vec<serde_json::Value> = plan
        .iter()
        .map(|(t, ids)| serde_json::json!({ "target": t.name(), "controls": ids }))
        .collect();
    svc.record(
        "scheduler",
        "ScheduleCatchUp",
        serde_json::json!({ "overdue": overdue }),
    );
    start(svc, plan, "scheduler (overdue)").await;
}
