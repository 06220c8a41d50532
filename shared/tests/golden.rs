//! Golden bytes: fails when any wire type's encoding changes without a protocol bump.
//!
//! Every variant of every wire enum appears in at least one sample below. When a test
//! here fails after an intended change, bump `PROTOCOL_VERSION` and run
//! `AURA_BLESS=1 cargo test -p aura-proto --test golden` to write the new fixture.

use std::fmt::Write as _;
use std::path::PathBuf;

use aura_ledger::Checkpoint;
use aura_proto::PROTOCOL_VERSION;
use aura_proto::codec::encode;
use aura_proto::handshake::{HandshakeReply, Hello, Welcome};
use aura_proto::view::*;
use aura_proto::wire::*;

fn ts() -> Timestamp {
    Timestamp(1_790_000_000_123)
}

fn agent_rows() -> Vec<AgentRow> {
    let states = [
        AgentState::Starting,
        AgentState::Running,
        AgentState::Degraded { reason: "r".into() },
        AgentState::Failed {
            error: "e".into(),
            retry_in_ms: 500,
        },
        AgentState::Stopped,
    ];
    AgentKind::ALL
        .iter()
        .zip(states.iter().cycle())
        .map(|(k, s)| AgentRow {
            kind: *k,
            state: s.clone(),
            last_heartbeat: ts(),
            tasks_done: 7,
            errors: 1,
            queue_depth: 2,
            restarts: 3,
        })
        .collect()
}

fn counts() -> VerdictCounts {
    VerdictCounts {
        pass: 1,
        fail: 2,
        error: 3,
        inconclusive: 4,
        skipped: 5,
        waived: 6,
    }
}

fn audits() -> Vec<AuditSummary> {
    [
        RunState::Queued,
        RunState::Running,
        RunState::Paused,
        RunState::Completed,
        RunState::Failed { reason: "x".into() },
        RunState::Cancelled,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, state)| AuditSummary {
        run: RunId(i as u64),
        policy: (i % 2 == 0).then(|| "baseline".into()),
        targets: vec!["demo".into(), "prod".into()],
        target_is_demo: true,
        state,
        attempts_total: 10,
        attempts_done: 5,
        controls_total: 3,
        controls: counts(),
        started: ts(),
        finished: (i % 2 == 1).then(ts),
    })
    .collect()
}

fn daemon() -> DaemonStatus {
    DaemonStatus {
        version: "0.1.0".into(),
        host: "h".into(),
        pid: 42,
        state: DaemonState::Running,
        started: ts(),
        data_dir: "/d".into(),
        socket: "/s".into(),
        controls_loaded: 3,
        policy_files: 1,
        policy_error: Some("bad".into()),
        policy_generation: 4,
        targets: vec![TargetInfo {
            name: "demo".into(),
            kind: "demo".into(),
            is_demo: true,
        }],
        alerts: AlertCounts {
            critical: 1,
            high: 2,
            medium: 3,
            low: 4,
            info: 5,
        },
    }
}

fn alert(sev: Severity, source: AgentKind) -> Alert {
    Alert {
        seq: 9,
        time: ts(),
        severity: sev,
        source,
        title: "t".into(),
        detail: "d".into(),
        run: Some(RunId(1)),
        control: Some("C".into()),
        target: None,
    }
}

fn detail() -> AuditDetail {
    let verdicts = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Error,
        Verdict::Inconclusive,
        Verdict::Skipped,
        Verdict::Waived,
    ];
    AuditDetail {
        summary: audits().remove(2),
        controls: verdicts
            .iter()
            .zip(Severity::ALL.iter().cycle())
            .map(|(v, s)| ControlResult {
                control: "AURA-P01".into(),
                target: "demo".into(),
                title: "t".into(),
                severity: *s,
                verdict: *v,
                underlying: (*v == Verdict::Waived).then_some(Verdict::Fail),
                attempts: counts(),
                rate: Some(Rate {
                    successes: 1,
                    trials: 4,
                    value: 0.25,
                    low: 0.04,
                    high: 0.7,
                }),
                threshold: 0.05,
                detail: "d".into(),
                frameworks: vec!["owasp-llm-2025:LLM01".into()],
            })
            .collect(),
        report_dir: Some("/r".into()),
    }
}

fn event() -> aura_ledger::EventRecord {
    aura_ledger::EventRecord::seal(1, 2, "daemon", "DaemonStarted", "00", aura_ledger::GENESIS)
}

fn samples() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut push = |name: &str, bytes: Vec<u8>| out.push((name.to_string(), bytes));

    let requests = vec![
        RequestBody::Status,
        RequestBody::Subscribe(Subscription::Daemon),
        RequestBody::Subscribe(Subscription::Agents),
        RequestBody::Subscribe(Subscription::Audits),
        RequestBody::Subscribe(Subscription::Alerts { from: Some(3) }),
        RequestBody::Unsubscribe(Topic::Alerts),
        RequestBody::StartAudit(StartAudit::target("demo", Some("p"))),
        RequestBody::StartAudit(StartAudit {
            targets: vec!["a".into()],
            tags: vec!["prod".into()],
            policy: None,
            controls: vec!["AURA-P01".into()],
            seed: Some(42),
            no_cache: true,
            concurrency: Some(8),
        }),
        RequestBody::PauseAudit { run: RunId(5) },
        RequestBody::ResumeAudit { run: RunId(5) },
        RequestBody::CancelAudit { run: RunId(5) },
        RequestBody::Reload,
        RequestBody::ReadEvents {
            from: 3,
            limit: 10,
            payloads: true,
        },
        RequestBody::EventCheckpoints,
        RequestBody::SearchKnowledge(KnowledgeQuery {
            text: "ignore".into(),
            tags: vec!["P01".into()],
            kind: Some("attack".into()),
            min_confidence: 0.5,
            limit: 5,
        }),
        RequestBody::Subscribe(Subscription::Events { from: None }),
        RequestBody::GetAudit { run: RunId(5) },
        RequestBody::ListAudits { limit: 10 },
    ];
    for (i, body) in requests.into_iter().enumerate() {
        push(
            &format!("client.request.{i}"),
            encode(&ClientFrame::Request(Request { id: i as u64, body })).unwrap(),
        );
    }
    push("client.ping", encode(&ClientFrame::Ping(77)).unwrap());

    let replies: Vec<Result<Reply, ApiError>> = vec![
        Ok(Reply::Status(StatusReport {
            daemon: daemon(),
            agents: agent_rows(),
            audits: audits(),
            alerts: AlertCounts::default(),
            topics: vec![TopicRow {
                topic: "audit".into(),
                depth: 1,
                in_flight: 2,
                redeliveries: 3,
                dead_letters: 4,
                expired: 5,
            }],
            breakers: vec![BreakerRow {
                target: "demo".into(),
                state: "open".into(),
                consecutive_failures: 5,
            }],
        })),
        Ok(Reply::Subscribed(Topic::Daemon)),
        Ok(Reply::Unsubscribed(Topic::Agents)),
        Ok(Reply::AuditStarted { run: RunId(3) }),
        Ok(Reply::Audit(detail())),
        Ok(Reply::Audits(audits())),
        Ok(Reply::Done),
        Ok(Reply::Events(vec![EventEntry {
            record: event(),
            payload: Some("{}".into()),
            purged: false,
        }])),
        Ok(Reply::Checkpoints {
            checkpoints: vec![Checkpoint {
                seq: 1,
                hash: "ab".into(),
                time: 5,
                signature: "cd".into(),
            }],
            public_key: "aura-ed25519:00".into(),
        }),
        Ok(Reply::Knowledge(vec![KnowledgeHit {
            id: 1,
            text: "t".into(),
            kind: "attack".into(),
            tags: vec!["x".into()],
            source: "run-1".into(),
            confidence: 0.5,
            score: 0.9,
            created: ts(),
        }])),
    ];
    let codes = [
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];
    let errors = codes.iter().map(|c| Err(ApiError::new(*c, "m")));
    for (i, result) in replies.into_iter().chain(errors).enumerate() {
        push(
            &format!("server.response.{i}"),
            encode(&ServerFrame::Response(Response {
                id: i as u64,
                result,
            }))
            .unwrap(),
        );
    }
    let updates = vec![
        Update::Snapshot {
            seq: 1,
            state: Snapshot::Daemon(daemon()),
        },
        Update::Snapshot {
            seq: 2,
            state: Snapshot::Agents(agent_rows()),
        },
        Update::Snapshot {
            seq: 3,
            state: Snapshot::Audits(audits()),
        },
        Update::Delta {
            seq: 4,
            delta: Delta::Daemon(daemon()),
        },
        Update::Delta {
            seq: 5,
            delta: Delta::Agent(agent_rows().remove(0)),
        },
        Update::Delta {
            seq: 6,
            delta: Delta::Audit(audits().remove(0)),
        },
        Update::Delta {
            seq: 7,
            delta: Delta::AuditRemoved(RunId(1)),
        },
        Update::Lagged {
            topic: Topic::Audits,
            missed: 12,
        },
    ];
    for (i, u) in updates.into_iter().enumerate() {
        push(
            &format!("server.update.{i}"),
            encode(&ServerFrame::Update(u)).unwrap(),
        );
    }
    for (i, (sev, kind)) in Severity::ALL.iter().zip(AgentKind::ALL.iter()).enumerate() {
        push(
            &format!("server.alert.{i}"),
            encode(&ServerFrame::Update(Update::Alert(alert(*sev, *kind)))).unwrap(),
        );
    }
    push("server.pong", encode(&ServerFrame::Pong(77)).unwrap());
    for (i, role) in [Role::Viewer, Role::Operator].into_iter().enumerate() {
        push(
            &format!("handshake.welcome.{i}"),
            encode(&HandshakeReply::Welcome(Welcome {
                protocol: PROTOCOL_VERSION,
                server: "aurad 0.1.0".into(),
                role,
                host: "h".into(),
            }))
            .unwrap(),
        );
    }
    out
}

fn render(samples: &[(String, Vec<u8>)]) -> String {
    let mut s = String::new();
    for (name, bytes) in samples {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(s, "{name} {hex}").unwrap();
    }
    s
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn check(file: &str, actual: String, advice: &str) {
    let path = fixture(file);
    if std::env::var_os("AURA_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; {advice}", path.display()));
    for (e, a) in expected.lines().zip(actual.lines()) {
        assert_eq!(e, a, "wire encoding changed; {advice}");
    }
    assert_eq!(expected.lines().count(), actual.lines().count(), "{advice}");
}

#[test]
fn wire_encoding_matches_the_fixture_for_this_protocol_version() {
    check(
        &format!("protocol-v{PROTOCOL_VERSION}.txt"),
        render(&samples()),
        "bump PROTOCOL_VERSION in shared/src/lib.rs, then run \
         AURA_BLESS=1 cargo test -p aura-proto --test golden",
    );
}

/// These bytes must never change, whatever the protocol version.
#[test]
fn handshake_frames_are_frozen() {
    let frozen = vec![
        (
            "hello".to_string(),
            encode(&Hello {
                protocol: 1,
                client: "aura 0.1.0".into(),
            })
            .unwrap(),
        ),
        (
            "incompatible".to_string(),
            encode(&HandshakeReply::Incompatible {
                message: "no".into(),
            })
            .unwrap(),
        ),
    ];
    check(
        "handshake.txt",
        render(&frozen),
        "Hello and HandshakeReply::Incompatible are frozen: revert the change",
    );
}
