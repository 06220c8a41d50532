//! A local program: the prompt on stdin, the answer on stdout. The program gets the
//! system prompt in `AURA_SYSTEM_PROMPT` and only the environment variables it is
//! allowed (`pass_env`), runs without a shell in its own process group,
//! and is killed with everything it started at the request timeout. Output beyond the
//! response limit is an error at once.

use std::process::Stdio;
use std::time::{Duration, Instant};

use aura_policy::TargetSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BoxFuture, ChatReply, ChatRequest, ChatRole, Target, TargetDefaults, TargetError};

/// Always passed to the program, from the daemon's environment, when set.
const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

pub struct CommandTarget {
    argv: Vec<String>,
    /// Variables the program may see (names; values from the daemon's environment).
    pass_env: Vec<String>,
    cwd: Option<std::path::PathBuf>,
    timeout: Duration,
    max_response_bytes: u64,
}

impl CommandTarget {
    pub fn new(spec: &TargetSpec, defaults: &TargetDefaults) -> Result<Self, String> {
        let mut argv = spec.command.clone();
        if argv.is_empty() {
            return Err("a command target needs `command`".into());
        }
        // A relative program path is relative to the target file, like other paths.
        if argv[0].contains('/') && !argv[0].starts_with('/') {
            argv[0] = spec
                .resolve(std::path::Path::new(&argv[0]))
                .display()
                .to_string();
        }
        Ok(Self {
            argv,
            pass_env: BASE_ENV
                .iter()
                .map(|v| v.to_string())
                .chain(spec.pass_env.iter().cloned())
                .collect(),
            cwd: spec.source.parent().map(|p| p.to_path_buf()),
            timeout: spec.timeouts.request,
            max_response_bytes: defaults.max_response_bytes,
        })
    }

    async fn call(&self, req: &ChatRequest) -> Result<ChatReply, TargetError> {
        let system: String = req
            .messages
            .iter()
            .filter(|m| m.role == ChatRole::System)
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.env_clear();
        for var in &self.pass_env {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        cmd.args(&self.argv[1..])
            .env("AURA_SYSTEM_PROMPT", system)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that what it starts can be killed with it.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| TargetError::Program(format!("cannot start {}: {e}", self.argv[0])))?;
        // Kills the whole group unless the program finished normally. The child is not
        // reaped before that, so its id still names its group.
        let group = KillGroup(child.id());
        let prompt = req.last_user().to_string();
        let mut stdin = child.stdin.take();
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| TargetError::Program("no stdout".into()))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| TargetError::Program("no stderr".into()))?;
        let limit = self.max_response_bytes;
        let work = async {
            // A program that never reads stdin must not block us: write in the background.
            let writer = async {
                if let Some(mut s) = stdin.take() {
                    let _ = s.write_all(prompt.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
                Ok::<(), TargetError>(())
            };
            let reader = async {
                let mut out = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = stdout
                        .read(&mut buf)
                        .await
                        .map_err(|e| TargetError::Program(e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    if (out.len() + n) as u64 > limit {
                        return Err(TargetError::TooLarge { limit });
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                Ok(out)
            };
            let mut err = Vec::new();
            let errs = async {
                let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut err).await;
                Ok::<(), TargetError>(())
            };
            // Too much output ends it at once, without waiting for the program.
            let ((), out, ()) = tokio::try_join!(writer, reader, errs)?;
            let status = child
                .wait()
                .await
                .map_err(|e| TargetError::Program(e.to_string()))?;
            Ok::<_, TargetError>((status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r?,
            Err(_) => return Err(TargetError::Timeout(self.timeout)),
        };
        group.disarm();
        if !status.success() {
            return Err(TargetError::Program(format!(
                "{} exited with {status}: {}",
                self.argv[0],
                String::from_utf8_lossy(&err)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )));
        }
        Ok(ChatReply::text(
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        ))
    }
}

/// On drop, kills the process group `0` leads (SIGKILL), unless disarmed.
struct KillGroup(Option<u32>);

impl KillGroup {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is
            // touched. The leader is our unreaped child, so the id is still its group's.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl Target for CommandTarget {
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatReply, TargetError>> {
        Box::pin(self.call(req))
    }
}
