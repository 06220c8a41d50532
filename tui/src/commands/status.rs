//! `aura status`.

use std::path::Path;
use std::process::ExitCode;

use aura_proto::view::{Severity, Timestamp};
use aura_proto::wire::{Reply, RequestBody, StatusReport};

use super::{connect, fail, print_json};
use crate::client::ClientError;
use crate::exit;
use crate::format::{age, agent_state, audit_line, datetime};

pub async fn run(socket: &Path, json: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let report = match client.request(RequestBody::Status).await {
        Ok(Reply::Status(r)) => r,
        Ok(other) => {
            return fail(&ClientError::Protocol(format!(
                "unexpected reply {other:?}"
            )));
        }
        Err(e) => return fail(&e),
    };
    if json {
        return print_json(&report);
    }
    print!("{}", render(&report, Timestamp::now()));
    exit::code(exit::OK)
}

pub fn render(r: &StatusReport, now: Timestamp) -> String {
    use std::fmt::Write as _;
    let d = &r.daemon;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "aurad {} on {} (pid {}), {} since {}",
        d.version,
        d.host,
        d.pid,
        d.state.label(),
        datetime(d.started)
    );
    let _ = writeln!(s, "socket   {}", d.socket);
    let _ = writeln!(s, "data dir {}", d.data_dir);
    let _ = writeln!(
        s,
        "policies {} control(s) from {} file(s){}",
        d.controls_loaded,
        d.policy_files,
        d.policy_error
            .as_ref()
            .map(|e| format!("; last reload rejected: {e}"))
            .unwrap_or_default()
    );
    let targets: Vec<String> = d
        .targets
        .iter()
        .map(|t| {
            let demo = if t.is_demo { " [DEMO]" } else { "" };
            format!("{} ({}){demo}", t.name, t.kind)
        })
        .collect();
    let _ = writeln!(
        s,
        "targets  {}",
        if targets.is_empty() {
            "none".into()
        } else {
            targets.join(", ")
        }
    );
    let alerts: Vec<String> = Severity::ALL
        .iter()
        .map(|sev| format!("{} {}", r.alerts.get(*sev), sev))
        .collect();
    let _ = writeln!(s, "alerts   {}", alerts.join(", "));
    let _ = writeln!(
        s,
        "\n{:<13} {:<10} {:>5} {:>6} {:>6} {:>6} {:>8}",
        "AGENT", "STATE", "BEAT", "DONE", "ERRORS", "QUEUE", "RESTARTS"
    );
    for a in &r.agents {
        let _ = writeln!(
            s,
            "{:<13} {:<10} {:>5} {:>6} {:>6} {:>6} {:>8}",
            a.kind.name(),
            a.state.label(),
            age(a.last_heartbeat, now),
            a.tasks_done,
            a.errors,
            a.queue_depth,
            a.restarts
        );
        if !matches!(a.state.label(), "running" | "starting" | "stopped") {
            let _ = writeln!(s, "              {}", agent_state(&a.state));
        }
    }
    if !r.breakers.is_empty() {
        let _ = writeln!(s, "\n{:<24} {:<10} {:>8}", "TARGET", "BREAKER", "FAILURES");
        for b in &r.breakers {
            let _ = writeln!(
                s,
                "{:<24} {:<10} {:>8}",
                b.target, b.state, b.consecutive_failures
            );
        }
    }
    if !r.topics.is_empty() {
        let _ = writeln!(
            s,
            "\n{:<13} {:>6} {:>9} {:>12} {:>12} {:>8}",
            "BUS TOPIC", "DEPTH", "IN FLIGHT", "REDELIVERED", "DEAD LETTERS", "EXPIRED"
        );
        for t in &r.topics {
            let _ = writeln!(
                s,
                "{:<13} {:>6} {:>9} {:>12} {:>12} {:>8}",
                t.topic, t.depth, t.in_flight, t.redeliveries, t.dead_letters, t.expired
            );
        }
    }
    if !r.audits.is_empty() {
        let _ = writeln!(s, "\nAUDITS");
        for a in r.audits.iter().take(10) {
            let c = &a.controls;
            let _ = writeln!(
                s,
                "{}   controls: {} pass, {} fail, {} error, {} inconclusive",
                audit_line(a),
                c.pass,
                c.fail,
                c.error,
                c.inconclusive
            );
        }
    }
    s
}
