//! The Report agent: writes each finished run's report as JSON (for programs) and
//! Markdown (for people) under `<data dir>/reports/run-N/`.

use std::fmt::Write as _;
use std::path::Path;

use aura_proto::view::{AgentKind, ControlResult, RunState, Timestamp, Verdict};
use serde::Serialize;

use super::messages::{OrchestratorMsg, ReportMsg};
use super::{Agent, AgentError, send};
use crate::bus::{Envelope, Meta};
use crate::run::{AttemptRecord, Phase, RunRecord};
use crate::services::Services;

pub struct ReportAgent;

impl Agent for ReportAgent {
    type Msg = ReportMsg;
    const KIND: AgentKind = AgentKind::Report;

    async fn handle(
        &self,
        msg: ReportMsg,
        env: &Envelope,
        svc: &Services,
    ) -> Result<(), AgentError> {
        let ReportMsg::Render { run } = msg;
        let Some(record) = svc.store.run(run)? else {
            return Ok(());
        };
        if record.phase == Phase::Reporting {
            let results = svc.store.results(run)?;
            let attempts = svc.store.attempts(run)?;
            let dir = svc.reports_dir.join(format!("run-{run}"));
            let (r, res, att, d) = (record.clone(), results, attempts, dir.clone());
            tokio::task::spawn_blocking(move || write_reports(&d, &r, &res, &att))
                .await
                .map_err(|e| AgentError::Failed(format!("report task failed: {e}")))?
                .map_err(|e| {
                    AgentError::Failed(format!("cannot write the report in {}: {e}", dir.display()))
                })?;
            svc.store
                .update_run(run, |r| r.report_dir = Some(dir.clone()))?;
            tracing::info!(run = %run, dir = %dir.display(), "report written");
        }
        send(
            &*svc.bus,
            AgentKind::Orchestrator,
            &OrchestratorMsg::Reported { run },
            Meta::caused_by(env),
        )
        .await?;
        Ok(())
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    run: &'a RunRecord,
    controls: &'a [ControlResult],
    attempts: &'a [AttemptRecord],
}

fn write_reports(
    dir: &Path,
    run: &RunRecord,
    results: &[ControlResult],
    attempts: &[AttemptRecord],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(&JsonReport {
        run,
        controls: results,
        attempts,
    })
    .map_err(std::io::Error::other)?;
    write_atomic(&dir.join("report.json"), &json)?;
    write_atomic(&dir.join("report.md"), markdown(run, results).as_bytes())
}

/// Write to a temporary file, then rename, so a reader never sees half a report.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

fn markdown(run: &RunRecord, results: &[ControlResult]) -> String {
    let mut s = String::new();
    let demo = if run.target_is_demo {
        " — includes the DEMO target (a simulated assistant, not a real system)"
    } else {
        ""
    };
    let _ = writeln!(s, "# AURA audit report: run {}\n", run.id);
    let _ = writeln!(
        s,
        "- Targets: {}{demo}",
        run.targets
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "- Policy: {}",
        run.selection
            .policy
            .as_deref()
            .unwrap_or("all applicable controls")
    );
    // Reports are written as the run ends: one not stopped early completes with it.
    let outcome = if run.state.is_finished() {
        run.state.label()
    } else {
        RunState::Completed.label()
    };
    let _ = writeln!(
        s,
        "- State: {outcome} (started {}, report written {})",
        crate::format_time(run.started),
        crate::format_time(Timestamp::now())
    );
    let _ = writeln!(
        s,
        "- Attempts: {} of {} (seed {})",
        run.attempts_done, run.attempts_total, run.seed
    );
    let c = &run.controls;
    let _ = writeln!(
        s,
        "- Controls: {} pass, {} fail, {} error, {} inconclusive, {} waived\n",
        c.pass, c.fail, c.error, c.inconclusive, c.waived
    );
    let _ = writeln!(
        s,
        "| Control | Target | Severity | Verdict | Attack success (95% CI) | Attempts p/f/e/i | Frameworks |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in results {
        let rate = r
            .rate
            .map(|x| {
                format!(
                    "{:.1}% ({:.1}–{:.1}%)",
                    x.value * 100.0,
                    x.low * 100.0,
                    x.high * 100.0
                )
            })
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            s,
            "| {} {} | {} | {} | **{}**{} | {} | {}/{}/{}/{} | {} |",
            r.control,
            r.title,
            r.target,
            r.severity,
            r.verdict,
            r.underlying
                .map(|u| format!(" (underlying: {u})"))
                .unwrap_or_default(),
            rate,
            r.attempts.pass,
            r.attempts.fail,
            r.attempts.error,
            r.attempts.inconclusive,
            r.frameworks.join(", ")
        );
    }
    let _ = writeln!(s);
    for r in results.iter().filter(|r| r.verdict != Verdict::Pass) {
        let _ = writeln!(
            s,
            "## {} on {} — {}\n\n{}\n",
            r.control, r.target, r.verdict, r.detail
        );
        if let Some(fix) = run
            .planned(&r.control, &r.target)
            .and_then(|p| p.remediation.as_deref())
        {
            let _ = writeln!(s, "Remediation: {fix}\n");
        }
    }
    s
}
