//! `aura policy validate`: works without a daemon.

use std::path::Path;
use std::process::ExitCode;

use crate::exit;

pub fn validate(path: Option<&Path>) -> ExitCode {
    let path = path.unwrap_or(Path::new("policies"));
    if !path.exists() {
        eprintln!("aura: {} does not exist", path.display());
        return exit::code(exit::USAGE);
    }
    match aura_policy::load_policies(path) {
        Ok(set) => {
            println!(
                "ok: {} control(s) in {} file(s) under {}",
                set.controls.len(),
                set.files.len(),
                path.display()
            );
            exit::code(exit::OK)
        }
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("{} problem(s) found", diags.len());
            exit::code(exit::USAGE)
        }
    }
}
