//! `aura audit run|show|list`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use aura_proto::view::{AuditDetail, AuditSummary, RunId, RunState, Verdict};
use aura_proto::wire::{Reply, RequestBody, StartAudit, Subscription};

use super::{connect, fail, print_json};
use crate::cli::RunArgs;
use crate::client::{Client, ClientError};
use crate::exit;
use crate::format::audit_line;

pub async fn run(socket: &Path, args: RunArgs) -> ExitCode {
    let mut client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Subscribe before starting, so no progress is missed.
    let mut updates = if args.wait {
        let rx = client.take_updates();
        if let Err(e) = client
            .request(RequestBody::Subscribe(Subscription::Audits))
            .await
        {
            return fail(&e);
        }
        rx
    } else {
        None
    };
    let start = StartAudit {
        targets: args.targets.clone(),
        tags: args.tags.clone(),
        policy: args.policy.clone(),
        controls: args.controls.clone(),
        seed: args.seed,
        no_cache: args.no_cache,
        concurrency: args.concurrency,
    };
    let what = describe(&args);
    let run = match client.request(RequestBody::StartAudit(start)).await {
        Ok(Reply::AuditStarted { run }) => run,
        Ok(other) => {
            return fail(&ClientError::Protocol(format!(
                "unexpected reply {other:?}"
            )));
        }
        Err(e) => return fail(&e),
    };
    if !args.wait {
        if args.json {
            println!("{{\"run\": {run}}}");
        } else {
            println!("started audit run {run} of {what}");
        }
        return exit::code(exit::OK);
    }
    let Some(updates) = updates.as_mut() else {
        return fail(&ClientError::Disconnected);
    };
    if !args.json {
        eprintln!("started audit run {run} of {what}");
    }
    let live = std::io::stderr().is_terminal() && !args.json;
    let mut last_done = u32::MAX;
    loop {
        let Some(update) = updates.recv().await else {
            return fail(&ClientError::Disconnected);
        };
        let summaries = update.into_audits();
        let Some(a) = summaries.into_iter().find(|a| a.run == run) else {
            continue;
        };
        if !args.json && a.attempts_done != last_done && a.attempts_total > 0 {
            last_done = a.attempts_done;
            if live {
                eprint!("\r{}   ", audit_line(&a));
            } else {
                eprintln!("{}", audit_line(&a));
            }
        }
        if a.state.is_finished() {
            if live {
                eprintln!();
            }
            break;
        }
    }
    finish(&client, run, args.json).await
}

/// Prints a finished run and returns the exit code its verdicts call for.
async fn finish(client: &Client, run: RunId, json: bool) -> ExitCode {
    let detail = match get(client, run).await {
        Ok(d) => d,
        Err(code) => return code,
    };
    if json {
        let _ = print_json(&detail);
    } else {
        print!("{}", render(&detail));
    }
    exit::code(verdict_code(&detail))
}

pub(crate) async fn get(client: &Client, run: RunId) -> Result<AuditDetail, ExitCode> {
    match client.request(RequestBody::GetAudit { run }).await {
        Ok(Reply::Audit(d)) => Ok(d),
        Ok(other) => Err(fail(&ClientError::Protocol(format!(
            "unexpected reply {other:?}"
        )))),
        Err(e) => Err(fail(&e)),
    }
}

/// 0 all pass, 1 any fail, 4 nothing failed but something was not decided.
pub fn verdict_code(d: &AuditDetail) -> u8 {
    if let RunState::Failed { .. } | RunState::Cancelled = d.summary.state {
        return exit::INCOMPLETE;
    }
    let c = &d.summary.controls;
    if c.fail > 0 {
        exit::FAILED
    } else if c.error > 0 || c.inconclusive > 0 || c.total() == 0 {
        exit::INCOMPLETE
    } else {
        exit::OK
    }
}

pub fn render(d: &AuditDetail) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let a = &d.summary;
    let demo = if a.target_is_demo {
        " (DEMO target: a simulated assistant, not a real system)"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "audit run {} of {}{demo}: {}",
        a.run,
        a.targets.join(", "),
        a.state.label()
    );
    if let RunState::Failed { reason } = &a.state {
        let _ = writeln!(s, "  reason: {reason}");
    }
    for c in &d.controls {
        let mark = match c.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::Skipped => "SKIPPED",
            Verdict::Waived => "WAIVED",
        };
        let target = if a.targets.len() > 1 {
            format!(" @{}", c.target)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {mark:<12} {:<10} {:<8} {}{target}",
            c.control, c.severity, c.title
        );
        let rate = c
            .rate
            .map(|r| {
                format!(
                    "attack success {:.1}% (95% CI {:.1}-{:.1}%, limit {:.1}%), ",
                    r.value * 100.0,
                    r.low * 100.0,
                    r.high * 100.0,
                    c.threshold * 100.0
                )
            })
            .unwrap_or_default();
        let n = &c.attempts;
        let _ = writeln!(
            s,
            "               {rate}attempts: {} pass, {} fail, {} error, {} inconclusive",
            n.pass, n.fail, n.error, n.inconclusive
        );
        if c.verdict != Verdict::Pass {
            let _ = writeln!(s, "               {}", c.detail);
        }
    }
    let c = &a.controls;
    let _ = writeln!(
        s,
        "controls: {} pass, {} fail, {} error, {} inconclusive",
        c.pass, c.fail, c.error, c.inconclusive
    );
    if let Some(dir) = &d.report_dir {
        let _ = writeln!(s, "report: {dir}/report.md");
    }
    s
}

fn describe(args: &RunArgs) -> String {
    let mut parts = Vec::new();
    if !args.targets.is_empty() {
        parts.push(format!("target(s) {}", args.targets.join(", ")));
    }
    if !args.tags.is_empty() {
        parts.push(format!("targets tagged {}", args.tags.join(", ")));
    }
    parts.join(" and ")
}

/// Pause, resume, cancel, reload: a request answered by `Done`.
pub async fn control(socket: &Path, body: RequestBody) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let what = match &body {
        RequestBody::PauseAudit { run } => format!("run {run} paused"),
        RequestBody::ResumeAudit { run } => format!("run {run} resumed"),
        RequestBody::CancelAudit { run } => format!("run {run} cancelled"),
        _ => "reload requested".to_string(),
    };
    match client.request(body).await {
        Ok(_) => {
            println!("{what}");
            exit::code(exit::OK)
        }
        Err(e) => fail(&e),
    }
}

pub async fn show(socket: &Path, run: u64, json: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let detail = match get(&client, RunId(run)).await {
        Ok(d) => d,
        Err(code) => return code,
    };
    if json {
        return print_json(&detail);
    }
    print!("{}", render(&detail));
    exit::code(exit::OK)
}

/// The most recent runs first, at most `limit`.
pub(crate) async fn recent(client: &Client, limit: u32) -> Result<Vec<AuditSummary>, ExitCode> {
    match client.request(RequestBody::ListAudits { limit }).await {
        Ok(Reply::Audits(r)) => Ok(r),
        Ok(other) => Err(fail(&ClientError::Protocol(format!(
            "unexpected reply {other:?}"
        )))),
        Err(e) => Err(fail(&e)),
    }
}

pub async fn list(socket: &Path, limit: u32, json: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runs = match recent(&client, limit).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    if json {
        return print_json(&runs);
    }
    if runs.is_empty() {
        println!("no audit runs yet");
    }
    for a in &runs {
        let c = &a.controls;
        println!(
            "{}   {} pass, {} fail, {} error",
            audit_line(a),
            c.pass,
            c.fail,
            c.error
        );
    }
    exit::code(exit::OK)
}
