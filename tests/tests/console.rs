//! The console at 80x24, filled from a real daemon over a real socket.

use std::time::Duration;

use aura::console::app::{App, Msg};
use aura::console::conn;
use aura::console::theme::Theme;
use aura::console::ui;
use aura_proto::view::{AgentKind, AgentState, Timestamp};
use aura_proto::wire::{Reply, RequestBody, StartAudit};
use aura_tests::{Setup, TestDaemon, wait_for};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn render(app: &App) -> String {
    render_at(app, 80, 24)
}

fn render_at(app: &App, width: u16, height: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(width, height)).unwrap();
    term.draw(|f| ui::draw(f, app, &Theme::plain())).unwrap();
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn console_shows_agents_audit_progress_and_alerts_at_80x24() {
    let d = TestDaemon::start(Setup::default()).await;
    let client = d.client().await;
    let start = StartAudit::target("demo", Some("baseline"));
    let Reply::AuditStarted { run } = client
        .request(RequestBody::StartAudit(start))
        .await
        .unwrap()
    else {
        panic!("not started");
    };

    let (mut events, commands) = conn::spawn(d.socket.clone());
    let mut app = App::new(Timestamp(0));
    // Feed the console until the run is done, its alerts and findings are in, and the
    // last steps (remediation, learning) have reported; its effects are carried out as
    // the console's own loop does.
    wait_for("the console to fill", Duration::from_secs(20), || {
        while let Ok(ev) = events.try_recv() {
            for effect in app.update(Msg::Conn(ev)) {
                let commands = commands.clone();
                tokio::spawn(async move { aura::console::perform(effect, &commands).await });
            }
        }
        let done = app.audits.get(&run).is_some_and(|a| a.state.is_finished())
            && app.findings().len() == 2
            && app.alerts.len() == 2
            && app.agents.len() == 9
            && app.agents.values().all(|a| a.state == AgentState::Running)
            && [AgentKind::Learning, AgentKind::Remediation]
                .iter()
                .all(|k| app.agents.get(k).is_some_and(|a| a.tasks_done == 1));
        std::future::ready(done.then_some(()))
    })
    .await;
    // Ages are measured from `now`; pin it so the snapshot does not depend on timing.
    app.update(Msg::Tick(Timestamp(0)));
    let screen = render(&app);
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d\d:\d\d:\d\d", "HH:MM:SS");
    settings.add_filter(
        &format!("@ {} ", regex_escape(&aurad::server::hostname())),
        "@ HOST ",
    );
    settings.bind(|| insta::assert_snapshot!(screen));

    // A larger terminal shows the findings with their titles (cut at the pane's edge).
    let wide = render_at(&app, 120, 36);
    for c in app.findings() {
        let start: String = c.title.chars().take(40).collect();
        assert!(wide.contains(&start), "{start:?} in\n{wide}");
    }

    // The help view lists the same keys as the footer.
    app.update(Msg::Key(crossterm::event::KeyEvent::from(
        crossterm::event::KeyCode::Char('?'),
    )));
    let help = render(&app);
    assert!(
        help.contains("Help") && help.contains("filter") && help.contains("pane"),
        "{help}"
    );
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

#[tokio::test]
async fn console_reconnects_when_the_daemon_restarts_and_misses_no_alert() {
    use aura::console::app::Conn;
    let d = TestDaemon::start(Setup::default()).await;
    let (mut events, _commands) = conn::spawn(d.socket.clone());
    let mut app = App::new(Timestamp(0));
    let mut pump = |app: &mut App| {
        while let Ok(ev) = events.try_recv() {
            app.update(Msg::Conn(ev));
        }
    };
    let client = d.client().await;
    let start = StartAudit::target("demo", Some("baseline"));
    client
        .request(RequestBody::StartAudit(start.clone()))
        .await
        .unwrap();
    wait_for("two alerts", Duration::from_secs(20), || {
        pump(&mut app);
        std::future::ready((app.alerts.len() == 2).then_some(()))
    })
    .await;

    let dir = d.stop().await;
    wait_for("the console to notice", Duration::from_secs(20), || {
        pump(&mut app);
        std::future::ready(
            matches!(
                app.conn,
                Conn::Disconnected { .. } | Conn::Connecting { .. }
            )
            .then_some(()),
        )
    })
    .await;

    let config = Setup::default().write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;
    wait_for("the console to reconnect", Duration::from_secs(20), || {
        pump(&mut app);
        std::future::ready((app.conn == Conn::Connected && app.agents.len() == 9).then_some(()))
    })
    .await;
    // A second run raises two more alerts; the console has exactly four, in order.
    d.client()
        .await
        .request(RequestBody::StartAudit(start))
        .await
        .unwrap();
    wait_for("four alerts", Duration::from_secs(20), || {
        pump(&mut app);
        std::future::ready((app.alerts.len() == 4).then_some(()))
    })
    .await;
    let seqs: Vec<u64> = app.alerts.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

/// `:audit demo baseline` typed in the console starts a run through the real socket,
/// and the console says so and shows it.
#[tokio::test]
async fn the_command_line_starts_an_audit() {
    use crossterm::event::{KeyCode, KeyEvent};
    let d = TestDaemon::start(Setup::default()).await;
    let (mut events, commands) = conn::spawn(d.socket.clone());
    let mut app = App::new(Timestamp::now());
    let mut pump = |app: &mut App| {
        while let Ok(ev) = events.try_recv() {
            for effect in app.update(Msg::Conn(ev)) {
                let commands = commands.clone();
                tokio::spawn(async move { aura::console::perform(effect, &commands).await });
            }
        }
    };
    wait_for("the console to connect", Duration::from_secs(20), || {
        pump(&mut app);
        std::future::ready((app.conn == aura::console::app::Conn::Connected).then_some(()))
    })
    .await;
    let mut effects = app.update(Msg::Key(KeyEvent::from(KeyCode::Char(':'))));
    for c in "audit demo baseline".chars() {
        effects.extend(app.update(Msg::Key(KeyEvent::from(KeyCode::Char(c)))));
    }
    effects.extend(app.update(Msg::Key(KeyEvent::from(KeyCode::Enter))));
    assert_eq!(effects.len(), 1, "{effects:?}");
    for effect in effects {
        assert!(aura::console::perform(effect, &commands).await);
    }
    wait_for("the run to start and show", Duration::from_secs(20), || {
        pump(&mut app);
        let said = app
            .message()
            .is_some_and(|(text, error)| !error && text.starts_with("audit run 1 started"));
        std::future::ready(
            (said && app.audits.contains_key(&aura_proto::view::RunId(1))).then_some(()),
        )
    })
    .await;
    let screen = render(&app);
    assert!(screen.contains("audit run 1 started"), "{screen}");
}
