//! `aurad` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::catalog::load_specs;
use crate::config::{DaemonConfig, LogFormat, Overrides};
use crate::daemon::DaemonBuilder;
use crate::targets::{TargetDefaults, TargetRegistry};

/// AURA daemon: audits AI systems for compliance, continuously, on this host.
#[derive(Debug, Parser)]
#[command(name = "aurad", version, about)]
pub struct Cli {
    /// Config file (TOML). Default: /etc/aura/aurad.toml if it exists.
    #[arg(long, short = 'c', env = "AURA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Where the daemon keeps its store, reports and lock.
    #[arg(long, env = "AURA_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Socket path. Default: /run/aura, $XDG_RUNTIME_DIR/aura, or the data dir.
    #[arg(long, env = "AURA_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    /// Folder of policy YAML files.
    #[arg(long = "policies", env = "AURA_POLICIES_DIR", global = true)]
    pub policies_dir: Option<PathBuf>,
    /// Folder of target YAML files.
    #[arg(long = "targets", env = "AURA_TARGETS_DIR", global = true)]
    pub targets_dir: Option<PathBuf>,
    #[arg(long, env = "AURA_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// A tracing filter, e.g. `info` or `info,aurad::server=debug`.
    #[arg(long, env = "AURA_LOG", global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the config, targets and policies together, then exit.
    CheckConfig,
}

/// Exit codes: 0 success, 1 the daemon failed, 2 bad configuration.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        data_dir: cli.data_dir,
        socket: cli.socket,
        policies_dir: cli.policies_dir,
        targets_dir: cli.targets_dir,
        log_format: cli.log_format,
        log_level: cli.log_level,
    };
    let config = match DaemonConfig::load(cli.config.as_deref(), overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aurad: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => check_config(&config),
        Command::Run => run(config),
    }
}

fn check_config(config: &DaemonConfig) -> ExitCode {
    match load_specs(config) {
        Ok((policies, specs)) => {
            let targets = TargetRegistry::build(
                specs,
                &TargetDefaults::from_config(&config.audit, None),
                None,
            );
            let problems: Vec<&str> = targets.problems().collect();
            for p in &problems {
                eprintln!("warning: {p}");
            }
            // Like a target's, a broken [llm] degrades the daemon (judge detectors
            // inconclusive, no generation) rather than stopping it: a warning.
            if let Some(llm) = &config.llm
                && let Err(e) = crate::llm::DaemonLlm::from_config(llm, &config.audit, None)
            {
                eprintln!("warning: {e}");
            }
            println!(
                "ok: config {}, {} target(s) from {}, {} control(s) in {} file(s) from {}",
                config
                    .file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(built-in defaults)".into()),
                targets.infos().len(),
                config.targets_dir.display(),
                policies.controls.len(),
                policies.files.len(),
                config.policies_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("{} problem(s) found", diags.len());
            ExitCode::from(2)
        }
    }
}

fn run(config: DaemonConfig) -> ExitCode {
    crate::logging::init(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aurad: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let daemon = match DaemonBuilder::new(config).start().await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "daemon failed to start");
                eprintln!("aurad: {e}");
                return ExitCode::FAILURE;
            }
        };
        match daemon.run_until_signalled().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("aurad: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
