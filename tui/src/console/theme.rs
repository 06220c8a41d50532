//! Styles as semantic roles. 16 basic colours only, so any terminal shows them; with
//! `NO_COLOR` set, no colours at all, only bold and reverse video.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub title: Style,
    pub ok: Style,
    pub warn: Style,
    pub bad: Style,
    pub dim: Style,
    pub selected: Style,
    pub demo: Style,
    pub gauge: Style,
}

impl Theme {
    pub fn from_env() -> Self {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            Self::plain()
        } else {
            Self::colour()
        }
    }

    pub fn colour() -> Self {
        Self {
            title: Style::new().add_modifier(Modifier::BOLD),
            ok: Style::new().fg(Color::Green),
            warn: Style::new().fg(Color::Yellow),
            bad: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            dim: Style::new().fg(Color::DarkGray),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            demo: Style::new().fg(Color::Magenta),
            gauge: Style::new().fg(Color::Cyan),
        }
    }

    pub fn plain() -> Self {
        let none = Style::new();
        Self {
            title: none.add_modifier(Modifier::BOLD),
            ok: none,
            warn: none,
            bad: none.add_modifier(Modifier::BOLD),
            dim: none,
            selected: none.add_modifier(Modifier::REVERSED),
            demo: none,
            gauge: none,
        }
    }
}
