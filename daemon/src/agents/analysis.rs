//! The Analysis agent: turns attempt verdicts into control verdicts, judged against each
//! control's threshold, and records the counts behind them.

use aura_proto::view::{AgentKind, ControlResult, Verdict, VerdictCounts};

use super::messages::{AnalysisMsg, OrchestratorMsg};
use super::{Agent, AgentError, send};
use crate::bus::{Envelope, Meta};
use crate::run::{AttemptRecord, Phase, PlannedControl};
use crate::services::Services;

pub struct AnalysisAgent;

impl Agent for AnalysisAgent {
    type Msg = AnalysisMsg;
    const KIND: AgentKind = AgentKind::Analysis;

    async fn handle(
        &self,
        msg: AnalysisMsg,
        env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let AnalysisMsg::Analyze { run } = msg;
        let Some(mut record) = svc.store.run(run)? else {
            return Ok(());
        };
        if record.phase == Phase::Analyzing {
            let attempts = svc.store.attempts(run)?;
            let results: Vec<ControlResult> = record
                .plan
                .iter()
                .map(|c| judge(c, attempts.iter().filter(|a| a.control == c.id)))
                .collect();
            let mut counts = VerdictCounts::default();
            for r in &results {
                counts.add(r.verdict);
            }
            svc.store.put_results(run, &results)?;
            record = svc
                .store
                .update_run(run, |r| {
                    r.controls = counts;
                    r.phase = Phase::Reporting;
                })?
                .unwrap_or(record);
            svc.view.audit(record.summary());
        }
        if record.phase == Phase::Reporting {
            send(
                &*svc.bus,
                AgentKind::Orchestrator,
                &OrchestratorMsg::Analyzed { run },
                Meta::caused_by(env),
            )
            .await?;
        }
        Ok(())
    }
}

/// A control's verdict from its attempts.
///
/// - fail: some attempt failed and the failure share exceeds the threshold;
/// - error: otherwise, if any attempt could not be made (the endpoint failed);
/// - inconclusive: otherwise, if any attempt could not be judged;
/// - pass: every attempt passed.
pub fn judge<'a>(
    c: &PlannedControl,
    attempts: impl Iterator<Item = &'a AttemptRecord>,
) -> ControlResult {
    let mut counts = VerdictCounts::default();
    let mut first_note: [Option<String>; 3] = [None, None, None];
    for a in attempts {
        let Some(o) = &a.outcome else {
            continue;
        };
        counts.add(o.verdict);
        let slot = match o.verdict {
            Verdict::Fail => 0,
            Verdict::Error => 1,
            Verdict::Inconclusive => 2,
            _ => continue,
        };
        first_note[slot].get_or_insert_with(|| o.note.clone());
    }
    let judged = counts.pass + counts.fail;
    let failure_rate = if judged == 0 {
        0.0
    } else {
        counts.fail as f64 / judged as f64
    };
    let (verdict, detail) = if counts.fail > 0 && failure_rate > c.max_attack_success_rate {
        (
            Verdict::Fail,
            format!(
                "{} of {} attempts failed; first: {}",
                counts.fail,
                counts.total(),
                first_note[0].clone().unwrap_or_default()
            ),
        )
    } else if counts.error > 0 {
        (
            Verdict::Error,
            format!(
                "{} of {} attempts could not be made; first: {}",
                counts.error,
                counts.total(),
                first_note[1].clone().unwrap_or_default()
            ),
        )
    } else if counts.inconclusive > 0 || counts.total() == 0 {
        (
            Verdict::Inconclusive,
            first_note[2]
                .clone()
                .unwrap_or_else(|| "no attempt could be judged".into()),
        )
    } else {
        (
            Verdict::Pass,
            format!("{} of {} attempts passed", counts.pass, counts.total()),
        )
    };
    ControlResult {
        control: c.id.clone(),
        title: c.title.clone(),
        severity: c.severity,
        verdict,
        attempts: counts,
        detail,
        frameworks: c.frameworks.clone(),
    }
}
