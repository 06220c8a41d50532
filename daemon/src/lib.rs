//! `aurad`: the AURA daemon as a library, so tests and benches start it in-process.
//! The binary (`main.rs`) is a thin shell over [`cli::main`].

pub mod agents;
pub mod aggregator;
pub mod bus;
pub mod catalog;
pub mod checks;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod datadir;
pub mod detectors;
pub mod durability;
pub mod embed;
pub mod eventlog;
pub mod evidence;
pub mod generate;
pub mod judge;
pub mod kb;
pub mod llm;
pub mod logging;
pub mod provider;
pub mod run;
pub mod runctl;
pub mod scheduler;
pub mod server;
pub mod services;
pub mod stats;
pub mod store;
pub mod systemd;
pub mod targets;
pub mod tls;
pub mod watcher;

pub use config::DaemonConfig;
pub use daemon::{Daemon, DaemonBuilder, DaemonHandle};

/// A time as RFC 3339 UTC to the second, e.g. `2026-11-26T10:13:47Z`.
pub fn format_time(t: aura_proto::view::Timestamp) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.0);
    humantime::format_rfc3339_seconds(st).to_string()
}

/// `YYYY-MM-DD` of a timestamp, UTC.
pub fn format_date(t: aura_proto::view::Timestamp) -> String {
    format_time(t)[..10].to_string()
}
