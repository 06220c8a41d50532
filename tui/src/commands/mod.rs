//! The scripting subcommands.

pub mod audit;
pub mod events;
pub mod findings;
pub mod kb;
pub mod policy;
pub mod status;
pub mod up;

use std::path::Path;
use std::process::ExitCode;

use crate::client::{Client, ClientError};
use crate::exit;

/// Connects, or prints why not and returns the exit code to use.
pub async fn connect(socket: &Path) -> Result<Client, ExitCode> {
    Client::connect(socket).await.map_err(|e| fail(&e))
}

/// Prints an error and maps it to an exit code.
pub fn fail(e: &ClientError) -> ExitCode {
    eprintln!("aura: {e}");
    if let ClientError::Unreachable { .. } = e {
        eprintln!("aura: is aurad running? Start it with `aurad`, or pass --socket / AURA_SOCKET");
    }
    exit::code(match e {
        ClientError::Unreachable { .. } | ClientError::Disconnected => exit::UNREACHABLE,
        ClientError::Incompatible(_) | ClientError::Protocol(_) => exit::UNREACHABLE,
        ClientError::Api(_) => exit::REJECTED,
    })
}

pub fn print_json<T: serde::Serialize>(value: &T) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            println!("{s}");
            exit::code(exit::OK)
        }
        Err(e) => {
            eprintln!("aura: cannot encode JSON: {e}");
            ExitCode::FAILURE
        }
    }
}
