//! The interactive console: one model ([`app::App`]), pure drawing ([`ui`]), and a
//! connection task ([`conn`]) that reconnects by itself.

pub mod app;
pub mod conn;
pub mod theme;
pub mod ui;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aura_proto::view::Timestamp;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};

use app::{App, Effect, Msg};
use conn::ConnCommand;
use theme::Theme;

use crate::exit;

/// Opens the console on the terminal until `q`, SIGTERM or SIGHUP (a dropped SSH
/// session). The terminal is restored on every way out, panics included.
pub async fn run(socket: PathBuf) -> ExitCode {
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("aura: cannot open the terminal: {e}");
            return exit::code(exit::USAGE);
        }
    };
    let result = event_loop(&mut terminal, socket).await;
    ratatui::restore();
    match result {
        Ok(()) => exit::code(exit::OK),
        Err(e) => {
            eprintln!("aura: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Carries out an effect of the model; `false` when it is to quit.
pub async fn perform(effect: Effect, commands: &tokio::sync::mpsc::Sender<ConnCommand>) -> bool {
    let command = match effect {
        Effect::Quit => return false,
        Effect::Resubscribe(topic) => ConnCommand::Resubscribe(topic),
        Effect::FetchAudit(run) => ConnCommand::FetchAudit(run),
        Effect::Request(body) => ConnCommand::Request(body),
    };
    let _ = commands.send(command).await;
    true
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    socket: PathBuf,
) -> std::io::Result<()> {
    let theme = Theme::from_env();
    let (mut events, commands) = conn::spawn(socket);
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut app = App::new(Timestamp::now());
    loop {
        terminal.draw(|f| ui::draw(f, &app, &theme))?;
        let msg = tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(Event::Key(k))) if k.kind == KeyEventKind::Press => Msg::Key(k),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            Some(ev) = events.recv() => Msg::Conn(ev),
            _ = tick.tick() => Msg::Tick(Timestamp::now()),
            _ = hup.recv() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        let mut effects = app.update(msg);
        // Apply whatever else already arrived before drawing again.
        while let Ok(ev) = events.try_recv() {
            effects.extend(app.update(Msg::Conn(ev)));
        }
        for effect in effects {
            if !perform(effect, &commands).await {
                return Ok(());
            }
        }
    }
}
