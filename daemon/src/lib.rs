//! `aurad`: the AURA daemon as a library, so tests and benches start it in-process.
//! The binary (`main.rs`) is a thin shell over [`cli::main`].

pub mod agents;
pub mod aggregator;
pub mod bus;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod datadir;
pub mod detectors;
pub mod logging;
pub mod run;
pub mod server;
pub mod services;
pub mod store;
pub mod systemd;
pub mod targets;
pub mod tls;

pub use config::DaemonConfig;
pub use daemon::{Daemon, DaemonBuilder, DaemonHandle};
