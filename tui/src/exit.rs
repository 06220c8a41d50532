//! Exit codes of `aura` subcommands, for scripts and CI.

use std::process::ExitCode;

/// Everything passed (or the command simply succeeded).
pub const OK: u8 = 0;
/// At least one control failed.
pub const FAILED: u8 = 1;
/// Bad command line (clap's own code) or invalid policy files.
pub const USAGE: u8 = 2;
/// The daemon could not be reached (not running, wrong socket, no permission).
pub const UNREACHABLE: u8 = 3;
/// No control failed, but some could not be decided (error or inconclusive).
pub const INCOMPLETE: u8 = 4;
/// The daemon refused the request (unknown target, forbidden, ...).
pub const REJECTED: u8 = 5;

pub const HELP: &str = "\
Exit codes: 0 ok, 1 a control failed, 2 usage or invalid policy, 3 daemon unreachable,
4 incomplete (errors or inconclusive, nothing failed), 5 request refused by the daemon.";

pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
