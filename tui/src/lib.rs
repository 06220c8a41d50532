//! `aura`: the console and the scripting CLI. Depends on `aura-proto` (and the policy
//! language for offline validation), never on the daemon.

pub mod cli;
pub mod client;
pub mod commands;
pub mod console;
pub mod exit;
pub mod format;
