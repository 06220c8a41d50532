//! Drawing: a pure function of the model. Laid out for 80x24 and up.

use aura_proto::view::{AgentState, Severity, Verdict};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Gauge, Paragraph, Row, Table, Wrap};

use super::app::{App, COMMANDS, Conn, Focus, MAIN_KEYS, View};
use super::theme::Theme;
use crate::format::{age, clock};

pub fn draw(f: &mut Frame, app: &App, theme: &Theme) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_header(f, header, app, theme);
    // Agents and the audit take half of a tall screen (at least their 12 rows), so a
    // run's findings have room; alerts get the rest.
    let top_rows = (body.height / 2).max(12);
    let [top, alerts] =
        Layout::vertical([Constraint::Length(top_rows), Constraint::Min(3)]).areas(body);
    let [agents, audit] =
        Layout::horizontal([Constraint::Length(44), Constraint::Min(20)]).areas(top);
    draw_agents(f, agents, app, theme);
    draw_audit(f, audit, app, theme);
    draw_alerts(f, alerts, app, theme);
    draw_footer(f, footer, app, theme);
    match app.stack.last() {
        Some(View::Help) => draw_help(f, theme),
        Some(View::AlertDetail) => draw_alert_detail(f, app, theme),
        None => {}
    }
}

fn severity_style(s: Severity, theme: &Theme) -> Style {
    match s {
        Severity::Critical | Severity::High => theme.bad,
        Severity::Medium => theme.warn,
        Severity::Low | Severity::Info => theme.dim,
    }
}

fn draw_header(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut spans = vec![
        Span::styled(" AURA ", theme.title.add_modifier(Modifier::REVERSED)),
        Span::raw(" "),
    ];
    if let Some(d) = &app.daemon {
        spans.push(Span::raw(format!("aurad {} @ {} ", d.version, d.host)));
    }
    match &app.conn {
        Conn::Connected => {
            let role = app
                .welcome
                .as_ref()
                .map(|w| w.role.to_string())
                .unwrap_or_default();
            spans.push(Span::styled(format!("● connected ({role}) "), theme.ok));
        }
        Conn::Connecting { attempt } => {
            spans.push(Span::styled(
                format!("○ connecting (attempt {attempt}) "),
                theme.warn,
            ));
        }
        Conn::Disconnected { retry_in, .. } => {
            spans.push(Span::styled(
                format!("○ disconnected, retry in {:.1}s ", retry_in.as_secs_f32()),
                theme.bad,
            ));
        }
    }
    if let Some(d) = &app.daemon {
        let a = &d.alerts;
        spans.push(Span::raw("alerts "));
        spans.push(Span::styled(
            format!("{} crit ", a.critical),
            if a.critical > 0 { theme.bad } else { theme.dim },
        ));
        spans.push(Span::styled(
            format!("{} high ", a.high),
            if a.high > 0 { theme.bad } else { theme.dim },
        ));
        spans.push(Span::styled(
            format!("{} med", a.medium),
            if a.medium > 0 { theme.warn } else { theme.dim },
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn pane(title: String, focused: bool, theme: &Theme) -> Block<'static> {
    let style = if focused { theme.title } else { theme.dim };
    Block::bordered()
        .title(Span::styled(title, theme.title))
        .border_style(style)
}

fn draw_agents(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let header = Row::new(["AGENT", "STATE", "BEAT", "DONE", "ERR", "Q"]).style(theme.title);
    let rows = app.agents.values().enumerate().map(|(i, a)| {
        let state_style = match a.state {
            AgentState::Running => theme.ok,
            AgentState::Starting | AgentState::Stopped => theme.dim,
            AgentState::Degraded { .. } => theme.warn,
            AgentState::Failed { .. } => theme.bad,
        };
        let row = Row::new(vec![
            Cell::from(a.kind.name()),
            Cell::from(Span::styled(a.state.label(), state_style)),
            Cell::from(age(a.last_heartbeat, app.now)),
            Cell::from(a.tasks_done.to_string()),
            Cell::from(a.errors.to_string()),
            Cell::from(a.queue_depth.to_string()),
        ]);
        if app.focus == Focus::Agents && i == app.agent_sel {
            row.style(theme.selected)
        } else {
            row
        }
    });
    let widths = [
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Length(3),
    ];
    let title = format!(" Agents ({}) ", app.agents.len());
    let table = Table::new(rows, widths).header(header).block(pane(
        title,
        app.focus == Focus::Agents,
        theme,
    ));
    f.render_widget(table, area);
}

fn draw_audit(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let block = pane(" Audit ".into(), false, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(a) = app.current_audit() else {
        let hint = "No audit yet.\n\nStart one:\n aura audit run\n  --target demo";
        f.render_widget(Paragraph::new(hint).style(theme.dim), inner);
        return;
    };
    let [l1, l2, gauge, l3, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let mut first = vec![
        Span::styled(format!("run {} ", a.run), theme.title),
        Span::raw(crate::format::targets(a, 20)),
    ];
    if a.target_is_demo {
        first.push(Span::styled(" [DEMO]", theme.demo));
    }
    f.render_widget(Paragraph::new(Line::from(first)), l1);
    let state_style = match &a.state {
        s if !s.is_finished() => theme.warn,
        aura_proto::view::RunState::Completed => theme.ok,
        _ => theme.bad,
    };
    let policy = a.policy.clone().unwrap_or_else(|| "all controls".into());
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(a.state.label(), state_style),
            Span::raw(format!(" · {policy}")),
        ])),
        l2,
    );
    let ratio = if a.attempts_total == 0 {
        0.0
    } else {
        a.attempts_done as f64 / a.attempts_total as f64
    };
    f.render_widget(
        Gauge::default()
            .gauge_style(theme.gauge)
            .ratio(ratio.clamp(0.0, 1.0))
            .label(format!("{}/{} attempts", a.attempts_done, a.attempts_total)),
        gauge,
    );
    let c = &a.controls;
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(format!("{} controls: ", a.controls_total)),
            Span::styled(format!("{} pass ", c.pass), theme.ok),
            Span::styled(
                format!("{} fail ", c.fail),
                if c.fail > 0 { theme.bad } else { theme.dim },
            ),
            Span::styled(
                format!("{} err", c.error),
                if c.error > 0 { theme.warn } else { theme.dim },
            ),
        ])),
        l3,
    );
    // What did not pass, worst first; earlier runs in the room left.
    let mut lines: Vec<Line> = Vec::new();
    let findings = app.findings();
    if !findings.is_empty() {
        let room = rest.height.saturating_sub(1) as usize;
        lines.push(Line::from("findings").style(theme.title));
        let shown = if findings.len() > room {
            room.saturating_sub(1)
        } else {
            room
        };
        for c in findings.iter().take(shown) {
            let style = match c.verdict {
                Verdict::Fail => theme.bad,
                Verdict::Error => theme.warn,
                _ => theme.dim,
            };
            let mut spans = vec![
                Span::styled(format!("{:<7}", short(c.verdict)), style),
                Span::raw(format!("{:<10}", c.control)),
                Span::styled(
                    format!("{:<9}", c.severity.name()),
                    severity_style(c.severity, theme),
                ),
            ];
            // The title only where it fits whole enough to read.
            if rest.width >= 60 {
                spans.push(Span::styled(c.title.clone(), theme.dim));
            }
            lines.push(Line::from(spans));
        }
        if findings.len() > shown {
            lines.push(
                Line::from(format!(
                    "+{} more: aura audit show {}",
                    findings.len() - shown,
                    a.run
                ))
                .style(theme.dim),
            );
        }
    }
    let room = (rest.height as usize).saturating_sub(lines.len());
    let others: Vec<Line> = app
        .audits
        .values()
        .rev()
        .filter(|o| o.run != a.run)
        .take(room.saturating_sub(1))
        .map(|o| {
            Line::from(format!(
                "run {} {} {} {}P {}F {}E",
                o.run,
                crate::format::targets(o, 12),
                o.state.label(),
                o.controls.pass,
                o.controls.fail,
                o.controls.error
            ))
            .style(theme.dim)
        })
        .collect();
    if !others.is_empty() {
        lines.push(Line::from("earlier runs").style(theme.title));
        lines.extend(others);
    }
    f.render_widget(Paragraph::new(lines), rest);
}

/// A verdict in at most six letters, for the narrow findings list.
fn short(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
        Verdict::Inconclusive => "INCONC",
        Verdict::Skipped => "SKIP",
        Verdict::Waived => "WAIVED",
    }
}

fn draw_alerts(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let shown = app.alerts_newest_first().count();
    let title = match &app.filter {
        Some(filter) => {
            let cursor = if app.editing_filter { "▏" } else { "" };
            format!(
                " Alerts ({shown} of {}) /{filter}{cursor} ",
                app.alerts.len()
            )
        }
        None => format!(" Alerts ({}) ", app.alerts.len()),
    };
    let block = pane(title, app.focus == Focus::Alerts, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if shown == 0 {
        let empty = if app.alerts.is_empty() {
            "No alerts."
        } else {
            "No alert matches the filter (esc clears it)."
        };
        f.render_widget(Paragraph::new(empty).style(theme.dim), inner);
        return;
    }
    let height = inner.height as usize;
    let start = app.alert_sel.saturating_sub(height.saturating_sub(1));
    let lines: Vec<Line> = app
        .alerts_newest_first()
        .enumerate()
        .skip(start)
        .take(height)
        .map(|(i, a)| {
            let line = Line::from(vec![
                Span::styled(format!("{} ", clock(a.time)), theme.dim),
                Span::styled(
                    format!("{:<8} ", a.severity.name().to_uppercase()),
                    severity_style(a.severity, theme),
                ),
                Span::raw(a.title.clone()),
            ]);
            if app.focus == Focus::Alerts && i == app.alert_sel {
                line.style(theme.selected)
            } else {
                line
            }
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_footer(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if let Some(line) = &app.command {
        let prompt = Line::from(vec![
            Span::styled(":", theme.title),
            Span::raw(format!("{line}▏")),
            Span::styled("  enter run  esc cancel", theme.dim),
        ]);
        f.render_widget(Paragraph::new(prompt), area);
        return;
    }
    if let Some((text, error)) = app.message() {
        let style = if error { theme.bad } else { theme.ok };
        f.render_widget(
            Paragraph::new(Line::from(format!(" {text}")).style(style)),
            area,
        );
        return;
    }
    let mut spans = Vec::new();
    for b in MAIN_KEYS {
        spans.push(Span::styled(format!(" {} ", b.keys), theme.title));
        spans.push(Span::styled(format!("{} ", b.action), theme.dim));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn popup(f: &mut Frame, width: u16, height: u16) -> Rect {
    let area = f.area();
    let w = width.min(area.width);
    let h = height.min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    f.render_widget(Clear, r);
    r
}

fn draw_help(f: &mut Frame, theme: &Theme) {
    let mut lines: Vec<Line> = MAIN_KEYS
        .iter()
        .map(|b| {
            Line::from(vec![
                Span::styled(format!("{:<10}", b.keys), theme.title),
                Span::raw(b.action),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    for c in COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<26}", c.keys), theme.title),
            Span::raw(c.action),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(
        Line::from("Scripted: aura status | aura audit run --target T --wait").style(theme.dim),
    );
    let area = popup(f, 62, lines.len() as u16 + 2);
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Help ")),
        area,
    );
}

fn draw_alert_detail(f: &mut Frame, app: &App, theme: &Theme) {
    let Some(a) = app.selected_alert() else {
        return;
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(
                a.severity.name().to_uppercase(),
                severity_style(a.severity, theme),
            ),
            Span::raw(format!(
                "  #{} at {}  from {}",
                a.seq,
                clock(a.time),
                a.source
            )),
        ]),
        Line::from(a.title.clone()).style(theme.title),
    ];
    if let Some(run) = a.run {
        lines.push(Line::from(format!(
            "run {run}  target {}",
            a.target.as_deref().unwrap_or("-")
        )));
    }
    lines.push(Line::from(""));
    lines.extend(a.detail.lines().map(|l| Line::from(l.to_string())));
    let area = popup(f, 76, 16);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Alert (esc to close) ")),
        area,
    );
}
