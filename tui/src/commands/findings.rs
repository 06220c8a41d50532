//! `aura findings`: what does not pass now, across runs: for each control and target,
//! the result of the newest finished run that judged it, when that is not a pass.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use aura_proto::view::{ControlResult, RunId, Verdict};
use serde::Serialize;

use super::audit::{get, recent};
use super::{connect, print_json};
use crate::exit;

#[derive(Debug, Serialize)]
pub struct Finding {
    pub run: RunId,
    #[serde(flatten)]
    pub result: ControlResult,
}

/// Worst first: failures, errors, undecided, then waived and skipped; higher severity
/// first within each.
fn rank(f: &Finding) -> impl Ord + use<> {
    let verdict = match f.result.verdict {
        Verdict::Fail => 0,
        Verdict::Error => 1,
        Verdict::Inconclusive => 2,
        Verdict::Waived => 3,
        _ => 4,
    };
    (
        verdict,
        std::cmp::Reverse(f.result.severity),
        f.result.control.clone(),
        f.result.target.clone(),
    )
}

/// 1 when something fails, 4 when nothing fails but something is undecided, else 0.
pub fn exit_code(findings: &[Finding]) -> u8 {
    let has = |v: Verdict| findings.iter().any(|f| f.result.verdict == v);
    if has(Verdict::Fail) {
        exit::FAILED
    } else if has(Verdict::Error) || has(Verdict::Inconclusive) {
        exit::INCOMPLETE
    } else {
        exit::OK
    }
}

pub async fn run(socket: &Path, runs: u32, target: Option<&str>, json: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let summaries = match recent(&client, runs).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    // Newest run first: the first result seen for a control and target is the current one.
    let mut seen = BTreeSet::new();
    let mut findings = Vec::new();
    for s in summaries.iter().filter(|s| s.state.is_finished()) {
        let detail = match get(&client, s.run).await {
            Ok(d) => d,
            Err(code) => return code,
        };
        for c in detail.controls {
            if target.is_some_and(|t| t != c.target) {
                continue;
            }
            if seen.insert((c.control.clone(), c.target.clone())) && c.verdict != Verdict::Pass {
                findings.push(Finding {
                    run: s.run,
                    result: c,
                });
            }
        }
    }
    findings.sort_by_key(rank);
    let code = exit_code(&findings);
    if json {
        print_json(&findings);
        return exit::code(code);
    }
    if findings.is_empty() {
        println!("no findings: every control judged in the last {runs} runs passed");
    }
    for f in &findings {
        let c = &f.result;
        println!(
            "{:<12} {:<8} {:<10} {} (run {}) {}",
            c.verdict.name().to_uppercase(),
            c.severity.name(),
            c.control,
            c.target,
            f.run,
            c.title
        );
        if !c.detail.is_empty() {
            println!("             {}", c.detail);
        }
    }
    exit::code(code)
}
