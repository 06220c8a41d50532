//! `aura up`: the quick start. Starts `aurad` with the bundled config (unless one is
//! already listening on the socket), opens the console, and stops the daemon it started
//! when the console closes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::client::Client;
use crate::exit;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Daemon config. Default: ./config/aurad.toml (the bundled one).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the daemon keeps its data, socket and log.
    #[arg(long, default_value = ".aura")]
    pub state_dir: PathBuf,
    /// Start the daemon and return without opening the console.
    #[arg(long)]
    pub detach: bool,
}

/// How long a fresh daemon gets to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: UpArgs, socket: Option<PathBuf>) -> ExitCode {
    let config = args
        .config
        .unwrap_or_else(|| PathBuf::from("config/aurad.toml"));
    if !config.is_file() {
        eprintln!(
            "aura: no config at {}; run `aura up` from the AURA repository root, or pass --config",
            config.display()
        );
        return exit::code(exit::USAGE);
    }
    let state = args.state_dir;
    let socket = socket.unwrap_or_else(|| state.join("aurad.sock"));
    if Client::connect(&socket).await.is_ok() {
        eprintln!(
            "aura: a daemon is already listening on {}; attaching",
            socket.display()
        );
        return if args.detach {
            exit::code(exit::OK)
        } else {
            crate::console::run(socket).await
        };
    }
    if let Err(e) = std::fs::create_dir_all(&state) {
        eprintln!("aura: cannot create {}: {e}", state.display());
        return exit::code(exit::USAGE);
    }
    let log_path = state.join("aurad.log");
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("aura: cannot create {}: {e}", log_path.display());
            return exit::code(exit::USAGE);
        }
    };
    let aurad = aurad_binary();
    let mut child = match tokio::process::Command::new(&aurad)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(state.join("data"))
        .arg("--socket")
        .arg(&socket)
        .arg("run")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(!args.detach)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "aura: cannot start {}: {e}. Build it with `cargo build --release`, or put aurad on PATH",
                aurad.display()
            );
            return exit::code(exit::UNREACHABLE);
        }
    };
    eprintln!("aura: starting aurad (log: {})", log_path.display());
    let started = Instant::now();
    loop {
        if Client::connect(&socket).await.is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("aura: aurad exited ({status}) before it was ready; its log says:");
            eprint!("{}", tail(&log_path, 20));
            return exit::code(exit::UNREACHABLE);
        }
        if started.elapsed() > START_TIMEOUT {
            eprintln!(
                "aura: aurad did not open {} within {START_TIMEOUT:?}",
                socket.display()
            );
            let _ = child.kill().await;
            return exit::code(exit::UNREACHABLE);
        }
        // Poll the condition (the socket answering), not a fixed delay.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if args.detach {
        eprintln!(
            "aura: aurad is running (pid {}) on {}",
            child.id().map_or("unknown".to_string(), |p| p.to_string()),
            socket.display()
        );
        return exit::code(exit::OK);
    }
    let code = crate::console::run(socket).await;
    if let Some(pid) = child.id() {
        // SAFETY: kill with a pid we spawned and still own; SIGTERM asks for a clean stop.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(_) => eprintln!("aura: aurad stopped"),
        Err(_) => {
            let _ = child.kill().await;
            eprintln!("aura: aurad did not stop in time and was killed");
        }
    }
    code
}

/// `aurad` next to this executable (a cargo build puts them together), else on PATH.
fn aurad_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("aurad"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("aurad"))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}
