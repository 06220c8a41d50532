//! Text formatting shared by the console and the subcommands.

use aura_proto::view::{AgentState, AuditSummary, Timestamp};

/// `HH:MM:SS` in UTC.
pub fn clock(t: Timestamp) -> String {
    let secs = t.0 / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}")
}

/// RFC 3339 in UTC, seconds precision.
pub fn datetime(t: Timestamp) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.0);
    humantime::format_rfc3339_seconds(st).to_string()
}

/// A short age: `4s`, `3m`, `2h`, `5d`.
pub fn age(from: Timestamp, now: Timestamp) -> String {
    let s = from.millis_until(now) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn agent_state(s: &AgentState) -> String {
    match s {
        AgentState::Degraded { reason } => format!("degraded: {reason}"),
        AgentState::Failed { error, retry_in_ms } => {
            format!("failed: {error} (retry in {}s)", retry_in_ms.div_ceil(1000))
        }
        other => other.label().to_string(),
    }
}

/// `demo` or `demo, prod-bot` or `demo +2`: a run's targets in little space.
pub fn targets(a: &AuditSummary, width: usize) -> String {
    let all = a.targets.join(", ");
    if all.chars().count() <= width || a.targets.len() < 2 {
        return all;
    }
    format!("{} +{}", a.targets[0], a.targets.len() - 1)
}

/// `run 3 · demo [DEMO] · running 5/8`.
pub fn audit_line(a: &AuditSummary) -> String {
    let demo = if a.target_is_demo { " [DEMO]" } else { "" };
    format!(
        "run {} · {}{} · {} {}/{}",
        a.run,
        targets(a, 30),
        demo,
        a.state.label(),
        a.attempts_done,
        a.attempts_total
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_and_datetime() {
        let t = Timestamp(1_790_000_000_123);
        assert_eq!(datetime(t), "2026-09-21T14:13:20Z");
        assert_eq!(clock(t), "14:13:20");
        assert_eq!(age(Timestamp(0), Timestamp(125_000)), "2m");
    }
}
