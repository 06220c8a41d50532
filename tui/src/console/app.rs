//! The console's model and its update function: `update(Msg) -> Vec<Effect>`, no I/O.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use aura_proto::handshake::Welcome;
use aura_proto::view::{
    AgentKind, AgentRow, Alert, AuditDetail, AuditSummary, ControlResult, DaemonStatus, RunId,
    Timestamp, Verdict,
};
use aura_proto::wire::{Delta, RequestBody, Snapshot, StartAudit, Topic, Update};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::conn::ConnEvent;

/// Alerts kept in memory; older ones stay in the daemon's log.
const MAX_ALERTS: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub enum Conn {
    Connecting { attempt: u32 },
    Connected,
    Disconnected { error: String, retry_in: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Agents,
    Alerts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Help,
    AlertDetail,
}

/// Moved once per event into `update`; boxing the large variant would buy nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    Key(KeyEvent),
    Tick(Timestamp),
    Conn(ConnEvent),
}

#[derive(Debug, PartialEq)]
pub enum Effect {
    Quit,
    Resubscribe(Topic),
    /// Ask for a finished run's control results (its findings).
    FetchAudit(RunId),
    /// An operator's request typed on the command line; its outcome comes back as
    /// [`ConnEvent::Outcome`].
    Request(RequestBody),
}

/// What `:` accepts, for the help view and for errors.
pub const COMMANDS: &[Binding] = &[
    Binding {
        keys: ":audit TARGET [POLICY]",
        action: "start an audit",
    },
    Binding {
        keys: ":pause|resume|cancel RUN",
        action: "control a run",
    },
    Binding {
        keys: ":reload",
        action: "re-read targets and policies",
    },
    Binding {
        keys: ":q",
        action: "quit",
    },
];

/// Parses a command line (without the `:`).
pub fn parse_command(line: &str) -> Result<Effect, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let run = |w: Option<&&str>| -> Result<RunId, String> {
        w.and_then(|w| w.trim_start_matches('#').parse().ok())
            .map(RunId)
            .ok_or_else(|| "give the run number, e.g. `:pause 3`".to_string())
    };
    match words.as_slice() {
        ["q" | "quit"] => Ok(Effect::Quit),
        ["reload"] => Ok(Effect::Request(RequestBody::Reload)),
        ["audit", target] => Ok(Effect::Request(RequestBody::StartAudit(
            StartAudit::target(*target, None),
        ))),
        ["audit", target, policy] => Ok(Effect::Request(RequestBody::StartAudit(
            StartAudit::target(*target, Some(policy)),
        ))),
        ["pause", rest @ ..] => Ok(Effect::Request(RequestBody::PauseAudit {
            run: run(rest.first())?,
        })),
        ["resume", rest @ ..] => Ok(Effect::Request(RequestBody::ResumeAudit {
            run: run(rest.first())?,
        })),
        ["cancel", rest @ ..] => Ok(Effect::Request(RequestBody::CancelAudit {
            run: run(rest.first())?,
        })),
        [] => Err("type a command, e.g. `:audit demo`".into()),
        [other, ..] => Err(format!(
            "unknown command `{other}`; try audit, pause, resume, cancel, reload or q"
        )),
    }
}

/// A key, what it does, and where: the single source for the footer and the help view.
pub struct Binding {
    pub keys: &'static str,
    pub action: &'static str,
}

pub const MAIN_KEYS: &[Binding] = &[
    Binding {
        keys: "q",
        action: "quit",
    },
    Binding {
        keys: "?",
        action: "help",
    },
    Binding {
        keys: ":",
        action: "command",
    },
    Binding {
        keys: "/",
        action: "filter",
    },
    Binding {
        keys: "tab",
        action: "pane",
    },
    Binding {
        keys: "j/k",
        action: "move",
    },
    Binding {
        keys: "enter",
        action: "open",
    },
    Binding {
        keys: "esc",
        action: "back",
    },
];

pub struct App {
    pub conn: Conn,
    pub welcome: Option<Welcome>,
    pub daemon: Option<DaemonStatus>,
    pub agents: BTreeMap<AgentKind, AgentRow>,
    pub audits: BTreeMap<RunId, AuditSummary>,
    pub alerts: VecDeque<Alert>,
    /// The control results of the current audit, once it finished.
    pub findings: Option<AuditDetail>,
    /// The run whose results were last asked for, so they are asked once.
    findings_asked: Option<RunId>,
    seqs: HashMap<Topic, u64>,
    pub focus: Focus,
    /// Selected row in the focused pane.
    pub agent_sel: usize,
    /// Index into `alerts`, newest first.
    pub alert_sel: usize,
    pub stack: Vec<View>,
    /// Alerts shown only if they contain this (control, target, title or severity;
    /// any case).
    pub filter: Option<String>,
    /// Keys go into the filter until Enter or Esc.
    pub editing_filter: bool,
    /// The `:` command line being typed.
    pub command: Option<String>,
    /// The outcome of the last command: (text, is an error, when), shown for a while.
    pub message: Option<(String, bool, Timestamp)>,
    pub now: Timestamp,
}

impl App {
    pub fn new(now: Timestamp) -> Self {
        Self {
            conn: Conn::Connecting { attempt: 1 },
            welcome: None,
            daemon: None,
            agents: BTreeMap::new(),
            audits: BTreeMap::new(),
            alerts: VecDeque::new(),
            findings: None,
            findings_asked: None,
            seqs: HashMap::new(),
            focus: Focus::Agents,
            agent_sel: 0,
            alert_sel: 0,
            stack: Vec::new(),
            filter: None,
            editing_filter: false,
            command: None,
            message: None,
            now,
        }
    }

    /// The audit to show in the progress panel: the newest running one, else the newest.
    pub fn current_audit(&self) -> Option<&AuditSummary> {
        self.audits
            .values()
            .rev()
            .find(|a| !a.state.is_finished())
            .or_else(|| self.audits.values().next_back())
    }

    /// The current audit's controls that did not pass, worst first (failures, then
    /// errors, then the rest; higher severity first within each).
    pub fn findings(&self) -> Vec<&ControlResult> {
        let Some(d) = self
            .findings
            .as_ref()
            .filter(|d| self.current_audit().is_some_and(|a| a.run == d.summary.run))
        else {
            return Vec::new();
        };
        let rank = |v: Verdict| match v {
            Verdict::Fail => 0,
            Verdict::Error => 1,
            _ => 2,
        };
        let mut out: Vec<&ControlResult> = d
            .controls
            .iter()
            .filter(|c| c.verdict != Verdict::Pass)
            .collect();
        out.sort_by_key(|c| {
            (
                rank(c.verdict),
                std::cmp::Reverse(c.severity),
                c.control.clone(),
            )
        });
        out
    }

    /// Asks for the current audit's results once it has finished.
    fn want_findings(&mut self) -> Vec<Effect> {
        match self.current_audit() {
            Some(a) if a.state.is_finished() && self.findings_asked != Some(a.run) => {
                let run = a.run;
                self.findings_asked = Some(run);
                vec![Effect::FetchAudit(run)]
            }
            _ => vec![],
        }
    }

    /// The command outcome to show: for ten seconds after it arrived.
    pub fn message(&self) -> Option<(&str, bool)> {
        self.message
            .as_ref()
            .filter(|(_, _, at)| self.now.0.saturating_sub(at.0) < 10_000)
            .map(|(text, error, _)| (text.as_str(), *error))
    }

    /// Alerts newest first, as filtered.
    pub fn alerts_newest_first(&self) -> impl Iterator<Item = &Alert> {
        let needle = self
            .filter
            .as_deref()
            .filter(|f| !f.is_empty())
            .map(str::to_lowercase);
        self.alerts.iter().rev().filter(move |a| {
            needle.as_ref().is_none_or(|n| {
                [
                    a.title.as_str(),
                    a.control.as_deref().unwrap_or(""),
                    a.target.as_deref().unwrap_or(""),
                    a.severity.name(),
                ]
                .iter()
                .any(|field| field.to_lowercase().contains(n.as_str()))
            })
        })
    }

    pub fn selected_alert(&self) -> Option<&Alert> {
        self.alerts_newest_first().nth(self.alert_sel)
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Tick(now) => {
                self.now = now;
                vec![]
            }
            Msg::Key(key) => self.key(key),
            Msg::Conn(ev) => self.conn_event(ev),
        }
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return vec![Effect::Quit];
        }
        if let Some(line) = self.command.as_mut() {
            match key.code {
                KeyCode::Esc => self.command = None,
                KeyCode::Backspace => {
                    line.pop();
                }
                KeyCode::Char(c) => line.push(c),
                KeyCode::Enter => {
                    let line = self.command.take().unwrap_or_default();
                    match parse_command(&line) {
                        Ok(effect) => {
                            self.message = Some((format!(":{line} …"), false, self.now));
                            return vec![effect];
                        }
                        Err(e) => self.message = Some((e, true, self.now)),
                    }
                }
                _ => {}
            }
            return vec![];
        }
        if self.editing_filter {
            let filter = self.filter.get_or_insert_with(String::new);
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter = None;
                }
                KeyCode::Backspace => {
                    filter.pop();
                }
                KeyCode::Char(c) => filter.push(c),
                _ => {}
            }
            self.alert_sel = 0;
            return vec![];
        }
        match key.code {
            KeyCode::Esc if self.stack.is_empty() && self.filter.is_some() => {
                self.filter = None;
                self.alert_sel = 0;
            }
            KeyCode::Char(':') if self.stack.is_empty() => {
                self.command = Some(String::new());
                self.message = None;
            }
            KeyCode::Char('/') if self.stack.is_empty() => {
                self.editing_filter = true;
                self.filter = Some(String::new());
                self.focus = Focus::Alerts;
                self.alert_sel = 0;
            }
            KeyCode::Char('q') => return vec![Effect::Quit],
            KeyCode::Esc => {
                self.stack.pop();
            }
            KeyCode::Char('?') if self.stack.last() != Some(&View::Help) => {
                self.stack.push(View::Help);
            }
            _ if !self.stack.is_empty() => {}
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Agents => Focus::Alerts,
                    Focus::Alerts => Focus::Agents,
                };
            }
            KeyCode::Char('j') | KeyCode::Down => self.move_sel(1),
            KeyCode::Char('k') | KeyCode::Up => self.move_sel(-1),
            KeyCode::Enter if self.focus == Focus::Alerts && self.selected_alert().is_some() => {
                self.stack.push(View::AlertDetail);
            }
            _ => {}
        }
        vec![]
    }

    fn move_sel(&mut self, by: isize) {
        let shown = self.alerts_newest_first().count();
        let (sel, len) = match self.focus {
            Focus::Agents => (&mut self.agent_sel, self.agents.len()),
            Focus::Alerts => (&mut self.alert_sel, shown),
        };
        if len == 0 {
            *sel = 0;
            return;
        }
        *sel = (*sel as isize + by).clamp(0, len as isize - 1) as usize;
    }

    fn conn_event(&mut self, ev: ConnEvent) -> Vec<Effect> {
        match ev {
            ConnEvent::Connecting { attempt } => {
                self.conn = Conn::Connecting { attempt };
                vec![]
            }
            ConnEvent::Connected(w) => {
                self.conn = Conn::Connected;
                self.welcome = Some(w);
                self.seqs.clear();
                self.findings_asked = None;
                vec![]
            }
            ConnEvent::Audit(d) => {
                self.findings = Some(d);
                vec![]
            }
            ConnEvent::Outcome(result) => {
                self.message = Some(match result {
                    Ok(text) => (text, false, self.now),
                    Err(text) => (text, true, self.now),
                });
                vec![]
            }
            ConnEvent::Disconnected { error, retry_in } => {
                self.conn = Conn::Disconnected { error, retry_in };
                vec![]
            }
            ConnEvent::Update(u) => self.apply(u),
        }
    }

    fn apply(&mut self, u: Update) -> Vec<Effect> {
        match u {
            Update::Snapshot { seq, state } => {
                self.seqs.insert(state.topic(), seq);
                match state {
                    Snapshot::Daemon(d) => self.daemon = Some(d),
                    Snapshot::Agents(rows) => {
                        self.agents = rows.into_iter().map(|r| (r.kind, r)).collect();
                    }
                    Snapshot::Audits(list) => {
                        self.audits = list.into_iter().map(|a| (a.run, a)).collect();
                    }
                }
                self.want_findings()
            }
            Update::Delta { seq, delta } => {
                let topic = delta.topic();
                match self.seqs.get(&topic) {
                    Some(last) if seq == last + 1 => {}
                    // Before the snapshot arrived, or a gap: wait for a fresh snapshot.
                    Some(_) => {
                        self.seqs.remove(&topic);
                        return vec![Effect::Resubscribe(topic)];
                    }
                    None => return vec![],
                }
                self.seqs.insert(topic, seq);
                match delta {
                    Delta::Daemon(d) => self.daemon = Some(d),
                    Delta::Agent(row) => {
                        self.agents.insert(row.kind, row);
                    }
                    Delta::Audit(a) => {
                        self.audits.insert(a.run, a);
                    }
                    Delta::AuditRemoved(run) => {
                        self.audits.remove(&run);
                    }
                }
                self.want_findings()
            }
            Update::Lagged { topic, .. } => {
                self.seqs.remove(&topic);
                vec![]
            }
            Update::Event(_) => vec![],
            Update::Alert(a) => {
                if self.alerts.back().is_none_or(|last| a.seq > last.seq) {
                    self.alerts.push_back(a);
                    if self.alerts.len() > MAX_ALERTS {
                        self.alerts.pop_front();
                    }
                    // Keep the selection on the same alert as new ones arrive on top.
                    if self.alert_sel > 0 {
                        self.alert_sel = (self.alert_sel + 1).min(self.alerts.len() - 1);
                    }
                }
                vec![]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aura_proto::view::{AgentState, Role};

    fn row(kind: AgentKind, done: u64) -> AgentRow {
        AgentRow {
            kind,
            state: AgentState::Running,
            last_heartbeat: Timestamp(0),
            tasks_done: done,
            errors: 0,
            queue_depth: 0,
            restarts: 0,
        }
    }

    #[test]
    fn deltas_apply_in_sequence_and_a_gap_asks_for_a_snapshot() {
        let mut app = App::new(Timestamp(0));
        app.update(Msg::Conn(ConnEvent::Connected(Welcome {
            protocol: 1,
            server: "s".into(),
            role: Role::Operator,
            host: "h".into(),
        })));
        let snap = Update::Snapshot {
            seq: 5,
            state: Snapshot::Agents(vec![row(AgentKind::Audit, 1)]),
        };
        assert!(app.update(Msg::Conn(ConnEvent::Update(snap))).is_empty());
        let d6 = Update::Delta {
            seq: 6,
            delta: Delta::Agent(row(AgentKind::Audit, 2)),
        };
        assert!(app.update(Msg::Conn(ConnEvent::Update(d6))).is_empty());
        assert_eq!(app.agents[&AgentKind::Audit].tasks_done, 2);
        let d8 = Update::Delta {
            seq: 8,
            delta: Delta::Agent(row(AgentKind::Audit, 9)),
        };
        assert_eq!(
            app.update(Msg::Conn(ConnEvent::Update(d8))),
            vec![Effect::Resubscribe(Topic::Agents)]
        );
        assert_eq!(app.agents[&AgentKind::Audit].tasks_done, 2);
    }

    #[test]
    fn a_finished_audit_has_its_findings_asked_for_once() {
        use aura_proto::view::{AuditSummary, RunState, Severity, VerdictCounts};
        let mut app = App::new(Timestamp(0));
        let summary = |state: RunState| AuditSummary {
            run: RunId(3),
            policy: None,
            targets: vec!["demo".into()],
            target_is_demo: true,
            state,
            attempts_total: 2,
            attempts_done: 2,
            controls_total: 2,
            controls: VerdictCounts::default(),
            started: Timestamp(0),
            finished: None,
        };
        let snapshot = |seq, state| {
            Msg::Conn(ConnEvent::Update(Update::Snapshot {
                seq,
                state: Snapshot::Audits(vec![summary(state)]),
            }))
        };
        assert!(app.update(snapshot(1, RunState::Running)).is_empty());
        assert_eq!(
            app.update(snapshot(2, RunState::Completed)),
            vec![Effect::FetchAudit(RunId(3))]
        );
        assert!(
            app.update(snapshot(3, RunState::Completed)).is_empty(),
            "once"
        );
        let result = |control: &str, severity, verdict| ControlResult {
            control: control.into(),
            target: "demo".into(),
            title: String::new(),
            severity,
            verdict,
            underlying: None,
            attempts: VerdictCounts::default(),
            rate: None,
            threshold: 0.0,
            detail: String::new(),
            frameworks: vec![],
        };
        app.update(Msg::Conn(ConnEvent::Audit(AuditDetail {
            summary: summary(RunState::Completed),
            controls: vec![
                result("C-PASS", Severity::Critical, Verdict::Pass),
                result("C-ERR", Severity::Critical, Verdict::Error),
                result("C-LOW", Severity::Low, Verdict::Fail),
                result("C-HIGH", Severity::High, Verdict::Fail),
            ],
            report_dir: None,
        })));
        let order: Vec<&str> = app.findings().iter().map(|c| c.control.as_str()).collect();
        assert_eq!(
            order,
            ["C-HIGH", "C-LOW", "C-ERR"],
            "failures first, worst first"
        );
    }

    #[test]
    fn slash_filters_the_alerts_and_esc_clears_the_filter() {
        use aura_proto::view::Severity;
        let mut app = App::new(Timestamp(0));
        for (seq, control, target, severity) in [
            (1, "AURA-P05", "support-bot", Severity::Critical),
            (2, "AURA-P01", "demo", Severity::High),
            (3, "AURA-P05", "demo", Severity::Critical),
        ] {
            app.update(Msg::Conn(ConnEvent::Update(Update::Alert(Alert {
                seq,
                time: Timestamp(0),
                severity,
                source: AgentKind::Orchestrator,
                title: format!("{control} failed on {target}"),
                detail: String::new(),
                run: None,
                control: Some(control.into()),
                target: Some(target.into()),
            }))));
        }
        let key = |c| Msg::Key(KeyEvent::from(c));
        let shown = |app: &App| app.alerts_newest_first().map(|a| a.seq).collect::<Vec<_>>();
        app.update(key(KeyCode::Char('/')));
        assert_eq!(app.focus, Focus::Alerts);
        for c in "p05".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        assert_eq!(shown(&app), [3, 1], "any case, newest first");
        // Keys edit the filter, not the view, until Enter.
        app.update(key(KeyCode::Char('q')));
        assert!(shown(&app).is_empty());
        app.update(key(KeyCode::Backspace));
        app.update(key(KeyCode::Enter));
        app.update(key(KeyCode::Char('j')));
        assert_eq!(app.selected_alert().map(|a| a.seq), Some(1));
        app.update(key(KeyCode::Char('j')));
        assert_eq!(
            app.alert_sel, 1,
            "movement stays within the filtered alerts"
        );
        app.update(key(KeyCode::Esc));
        assert_eq!(shown(&app), [3, 2, 1]);
        assert_eq!(app.update(key(KeyCode::Char('q'))), vec![Effect::Quit]);
    }

    #[test]
    fn the_command_line_parses_requests_and_says_what_is_wrong() {
        assert_eq!(
            parse_command("audit demo baseline"),
            Ok(Effect::Request(RequestBody::StartAudit(
                StartAudit::target("demo", Some("baseline"))
            )))
        );
        assert_eq!(
            parse_command(" pause  #3 "),
            Ok(Effect::Request(RequestBody::PauseAudit { run: RunId(3) }))
        );
        assert_eq!(
            parse_command("reload"),
            Ok(Effect::Request(RequestBody::Reload))
        );
        assert_eq!(parse_command("q"), Ok(Effect::Quit));
        assert!(parse_command("cancel").unwrap_err().contains(":pause 3"));
        assert!(
            parse_command("audti demo")
                .unwrap_err()
                .contains("unknown command `audti`")
        );

        // Typed keys: the line is edited, Enter runs it, and the outcome is shown.
        let mut app = App::new(Timestamp(0));
        let key = |c| Msg::Key(KeyEvent::from(c));
        app.update(key(KeyCode::Char(':')));
        for c in "audit demx".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        app.update(key(KeyCode::Backspace));
        app.update(key(KeyCode::Char('o')));
        assert!(
            app.update(key(KeyCode::Char('q'))).is_empty(),
            "q is typed, not quit"
        );
        app.update(key(KeyCode::Backspace));
        assert_eq!(
            app.update(key(KeyCode::Enter)),
            vec![Effect::Request(RequestBody::StartAudit(
                StartAudit::target("demo", None)
            ))]
        );
        assert!(app.command.is_none());
        app.update(Msg::Conn(ConnEvent::Outcome(Err(
            "forbidden: viewers cannot act".into(),
        ))));
        assert_eq!(app.message(), Some(("forbidden: viewers cannot act", true)));
        app.update(Msg::Tick(Timestamp(11_000)));
        assert_eq!(app.message(), None, "shown for ten seconds");
    }

    #[test]
    fn q_quits_and_esc_pops_views() {
        let mut app = App::new(Timestamp(0));
        let key = |c| Msg::Key(KeyEvent::from(c));
        app.update(key(KeyCode::Char('?')));
        assert_eq!(app.stack, vec![View::Help]);
        app.update(key(KeyCode::Esc));
        assert!(app.stack.is_empty());
        assert_eq!(app.update(key(KeyCode::Char('q'))), vec![Effect::Quit]);
    }
}
