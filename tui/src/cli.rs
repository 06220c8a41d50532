//! `aura` command line: no subcommand opens the console; subcommands script the same
//! requests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use aura_proto::view::RunId;
use aura_proto::wire::RequestBody;

use crate::commands;
use crate::exit;

/// AURA console: watch agents, alerts and audits; run audits from scripts and CI.
#[derive(Debug, Parser)]
#[command(name = "aura", version, about, after_help = exit::HELP)]
pub struct Cli {
    /// The daemon's socket. Default: /run/aura, $XDG_RUNTIME_DIR/aura, or the data dir.
    #[arg(long, env = "AURA_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon, agents, audits and alert counts.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Start, watch and inspect audits.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// What does not pass now: per control and target, the newest finished run's
    /// result when it is not a pass, worst first.
    Findings {
        /// Look back over this many runs.
        #[arg(long, default_value_t = 100)]
        runs: u32,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Policy files: validation without a daemon.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The tamper-evident event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// The knowledge base.
    #[command(subcommand)]
    Kb(KbCommand),
    /// Start a local daemon with the bundled config (./config, ./policies, the demo
    /// target) and open the console; stop the daemon when the console closes.
    Up(commands::up::UpArgs),
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The latest records; with --follow, keep printing new ones.
    Tail {
        /// Start at this record (default: the last --count).
        #[arg(long)]
        from: Option<u64>,
        #[arg(long, default_value_t = 20)]
        count: u64,
        #[arg(long, short)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Every record with its payload, and every checkpoint, as JSON Lines.
    Export {
        #[arg(long, default_value = "jsonl")]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Recompute the hash chain and check the checkpoint signatures. Exit 1 names the
    /// first bad record.
    Verify {
        /// Verify this export offline instead of asking the daemon.
        #[arg(long)]
        from_export: Option<PathBuf>,
        /// The daemon's public key (from `aura events pubkey`).
        #[arg(long)]
        pubkey: Option<PathBuf>,
    },
    /// Print the public key that verifies the checkpoints.
    Pubkey,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Search by meaning.
    Search {
        text: String,
        /// Only entries with this tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Only entries of this kind (attack, finding, ...).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 0.0)]
        min_confidence: f32,
        #[arg(long, default_value_t = 10)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Start an audit of one or more targets.
    Run(RunArgs),
    /// Pause a run: attempts in flight finish, no new ones start.
    Pause { run: u64 },
    /// Resume a paused run where it left off.
    Resume { run: u64 },
    /// Cancel a run; what completed is kept and reported.
    Cancel { run: u64 },
    /// One run's control verdicts.
    Show {
        run: u64,
        #[arg(long)]
        json: bool,
    },
    /// Recent runs.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A policy file's name (without .yaml) or a control id; default: every control that
    /// applies to the target.
    #[arg(long)]
    pub policy: Option<String>,
    /// A target's name, as configured in the daemon's targets folder (repeatable).
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Also audit every target carrying this tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only this control (repeatable).
    #[arg(long = "control")]
    pub controls: Vec<String>,
    /// Seed for generated variants, to reproduce a run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Send every request even if an identical one was answered before.
    #[arg(long)]
    pub no_cache: bool,
    /// At most this many attempts in flight per target.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Wait for the run to finish, print progress and a summary, and exit 0 only if
    /// every control passed.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: print the result as JSON instead.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy folder or file; prints every problem with file, line and fix.
    Validate {
        /// Folder or file. Default: ./policies
        path: Option<PathBuf>,
        /// Also check against a targets folder (waivers, tags).
        #[arg(long)]
        targets: Option<PathBuf>,
    },
    /// Which controls cover each framework clause, and which clauses nothing covers.
    Coverage {
        /// Policies folder. Default: ./policies
        #[arg(long)]
        path: Option<PathBuf>,
        /// Only this framework, e.g. owasp-llm-2025.
        #[arg(long)]
        framework: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Ask the daemon to reload targets and policies now.
    Reload,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aura: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(execute(cli))
}

/// Runs a parsed command line; the binary's `main` and the tests both come here.
pub async fn execute(cli: Cli) -> ExitCode {
    let socket = crate::client::resolve_socket(cli.socket.as_deref());
    {
        match cli.command {
            None => crate::console::run(socket).await,
            Some(Command::Status { json }) => commands::status::run(&socket, json).await,
            Some(Command::Audit(AuditCommand::Run(args))) => {
                commands::audit::run(&socket, args).await
            }
            Some(Command::Audit(AuditCommand::Show { run, json })) => {
                commands::audit::show(&socket, run, json).await
            }
            Some(Command::Findings { runs, target, json }) => {
                commands::findings::run(&socket, runs, target.as_deref(), json).await
            }
            Some(Command::Audit(AuditCommand::List { limit, json })) => {
                commands::audit::list(&socket, limit, json).await
            }
            Some(Command::Audit(AuditCommand::Pause { run })) => {
                commands::audit::control(&socket, RequestBody::PauseAudit { run: RunId(run) }).await
            }
            Some(Command::Audit(AuditCommand::Resume { run })) => {
                commands::audit::control(&socket, RequestBody::ResumeAudit { run: RunId(run) })
                    .await
            }
            Some(Command::Audit(AuditCommand::Cancel { run })) => {
                commands::audit::control(&socket, RequestBody::CancelAudit { run: RunId(run) })
                    .await
            }
            Some(Command::Up(args)) => commands::up::run(args, cli.socket).await,
            Some(Command::Events(EventsCommand::Tail {
                from,
                count,
                follow,
                json,
            })) => commands::events::tail(&socket, from, count, follow, json).await,
            Some(Command::Events(EventsCommand::Export {
                format: ExportFormat::Jsonl,
                output,
            })) => commands::events::export(&socket, output.as_deref()).await,
            Some(Command::Events(EventsCommand::Verify {
                from_export,
                pubkey,
            })) => {
                commands::events::verify_cmd(&socket, from_export.as_deref(), pubkey.as_deref())
                    .await
            }
            Some(Command::Events(EventsCommand::Pubkey)) => commands::events::pubkey(&socket).await,
            Some(Command::Kb(KbCommand::Search {
                text,
                tags,
                kind,
                min_confidence,
                limit,
                json,
            })) => {
                let q = aura_proto::wire::KnowledgeQuery {
                    text,
                    tags,
                    kind,
                    min_confidence,
                    limit,
                };
                commands::kb::search(&socket, q, json).await
            }
            Some(Command::Policy(PolicyCommand::Validate { path, targets })) => {
                commands::policy::validate(path.as_deref(), targets.as_deref())
            }
            Some(Command::Policy(PolicyCommand::Coverage {
                path,
                framework,
                json,
            })) => commands::policy::coverage(path.as_deref(), framework.as_deref(), json),
            Some(Command::Policy(PolicyCommand::Reload)) => {
                commands::audit::control(&socket, RequestBody::Reload).await
            }
        }
    }
}
