//! Daemon configuration: built-in defaults < the TOML file < `AURA_*` environment < flags.
//!
//! The file is optional. Relative paths in it are relative to the file's own folder, so a
//! config tree (`aurad.toml`, `targets/`, `../policies/`) can be moved as a whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use aura_proto::paths::PathEnv;

/// Where a config problem is, for a message that names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{0}")]
    Value(String),
}

/// The `[daemon]`, `[access]`, `[agents]` and `[audit]` tables of `aurad.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub daemon: DaemonSection,
    #[serde(default)]
    pub access: AccessConfig,
    #[serde(default)]
    pub agents: AgentsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub policies: PoliciesConfig,
    #[serde(default)]
    pub llm: Option<LlmConfig>,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub knowledge: KnowledgeConfig,
    #[serde(default)]
    pub bus: BusSection,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
}

/// Scheduled audits (controls with a `schedule`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Run controls when their schedule fires.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// At start, run the controls whose last run is older than their schedule's previous
    /// firing (overdue after downtime, or never run), riskiest targets first.
    #[serde(default = "yes")]
    pub catch_up: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            catch_up: true,
        }
    }
}

/// The event log's signed checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Sign a checkpoint after this many records...
    #[serde(default = "d_cp_records")]
    pub checkpoint_every: u64,
    /// ...or after this long, whichever comes first (and always at shutdown).
    #[serde(default = "d_cp_interval", with = "humantime_serde_compat")]
    pub checkpoint_interval: Duration,
    /// Prompts, answers and event payloads not stored again for this long are purged;
    /// the records that name them stay, and verify as "purged". Default: kept forever.
    #[serde(default, deserialize_with = "opt_duration")]
    pub payload_retention: Option<Duration>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: d_cp_records(),
            checkpoint_interval: d_cp_interval(),
            payload_retention: None,
        }
    }
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| {
            humantime::parse_duration(&s).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a duration ({e}); write e.g. `365d`"
                ))
            })
        })
        .transpose()
}

fn d_cp_records() -> u64 {
    1000
}
fn d_cp_interval() -> Duration {
    Duration::from_secs(300)
}

/// The knowledge base.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeConfig {
    /// How long an entry's confidence takes to halve without reinforcement.
    #[serde(default = "d_half_life", with = "humantime_serde_compat")]
    pub half_life: Duration,
    /// An OpenAI-compatible embeddings endpoint; without it the built-in embedder
    /// (hashed character n-grams, no model) is used.
    #[serde(default)]
    pub embeddings: Option<EmbeddingsConfig>,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            half_life: d_half_life(),
            embeddings: None,
        }
    }
}

fn d_half_life() -> Duration {
    Duration::from_secs(90 * 86_400)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsConfig {
    pub endpoint: String,
    pub model: String,
    /// The vectors' dimension; a response of another dimension is refused.
    pub dimensions: usize,
    #[serde(default)]
    pub api_key: Option<SecretConfig>,
}

/// The message bus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSection {
    /// A message unacknowledged this long is delivered again.
    #[serde(default = "d_visibility", with = "humantime_serde_compat")]
    pub visibility_timeout: Duration,
    /// Deliveries after which a failing message goes to the dead letters.
    #[serde(default = "d_max_deliveries")]
    pub max_deliveries: u32,
    /// Messages waiting on a topic before publishers wait (backpressure).
    #[serde(default = "d_max_depth")]
    pub max_depth: u64,
    /// How long a publisher waits for room before it gets an error.
    #[serde(default = "d_publish_timeout", with = "humantime_serde_compat")]
    pub publish_timeout: Duration,
}

impl Default for BusSection {
    fn default() -> Self {
        Self {
            visibility_timeout: d_visibility(),
            max_deliveries: d_max_deliveries(),
            max_depth: d_max_depth(),
            publish_timeout: d_publish_timeout(),
        }
    }
}

fn d_visibility() -> Duration {
    Duration::from_secs(300)
}
fn d_max_deliveries() -> u32 {
    5
}
fn d_max_depth() -> u64 {
    100_000
}
fn d_publish_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    pub data_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub policies_dir: Option<PathBuf>,
    pub targets_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Who may act (start audits, approve remediation) rather than only watch.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Extra operator uids; the daemon's own uid and root always are operators.
    #[serde(default)]
    pub operator_uids: Vec<u32>,
    /// Peers whose primary group is one of these are operators.
    #[serde(default)]
    pub operator_gids: Vec<u32>,
    /// A group (name or number) allowed to connect: the socket becomes 0660 and its
    /// folder 0750 with this group. Members not listed above connect as viewers.
    pub socket_group: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// First wait before restarting a failed agent; doubles per failure.
    #[serde(default = "d_backoff_initial", with = "humantime_serde_compat")]
    pub restart_backoff_initial: Duration,
    /// Longest wait between restarts.
    #[serde(default = "d_backoff_max", with = "humantime_serde_compat")]
    pub restart_backoff_max: Duration,
    /// How often agents report that they are alive.
    #[serde(default = "d_heartbeat", with = "humantime_serde_compat")]
    pub heartbeat_interval: Duration,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            restart_backoff_initial: d_backoff_initial(),
            restart_backoff_max: d_backoff_max(),
            heartbeat_interval: d_heartbeat(),
        }
    }
}

fn d_backoff_initial() -> Duration {
    Duration::from_millis(500)
}
fn d_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn d_heartbeat() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Largest response body read from a target; a larger one is an `error` verdict.
    #[serde(default = "d_max_response")]
    pub max_response_bytes: u64,
    /// Answer identical requests to an unchanged target from the store.
    #[serde(default = "yes")]
    pub cache: bool,
    #[serde(default = "d_cache_ttl", with = "humantime_serde_compat")]
    pub cache_ttl: Duration,
    /// Failures in a row that open a target's circuit breaker.
    #[serde(default = "d_breaker_threshold")]
    pub breaker_threshold: u32,
    /// How long an open breaker refuses requests before trying one.
    #[serde(default = "d_breaker_cooldown", with = "humantime_serde_compat")]
    pub breaker_cooldown: Duration,
    /// First wait before a retry; doubles per retry (with jitter) up to `backoff_max`.
    #[serde(default = "d_backoff_initial", with = "humantime_serde_compat")]
    pub backoff_initial: Duration,
    #[serde(default = "d_backoff_max", with = "humantime_serde_compat")]
    pub backoff_max: Duration,
    /// The attempts (each request, its digest, verdict and note) of runs finished longer
    /// ago than this are removed; the run, its control results, report and events stay.
    /// Default: kept forever.
    #[serde(default, deserialize_with = "opt_duration")]
    pub attempt_retention: Option<Duration>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_response_bytes: d_max_response(),
            cache: true,
            cache_ttl: d_cache_ttl(),
            breaker_threshold: d_breaker_threshold(),
            breaker_cooldown: d_breaker_cooldown(),
            backoff_initial: d_backoff_initial(),
            backoff_max: d_backoff_max(),
            attempt_retention: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn d_max_response() -> u64 {
    4 * 1024 * 1024
}
fn d_cache_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn d_breaker_threshold() -> u32 {
    5
}
fn d_breaker_cooldown() -> Duration {
    Duration::from_secs(30)
}

/// Watching the policies and targets folders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesConfig {
    /// Quiet time after the last change before a reload: a burst of saves is one reload.
    #[serde(default = "d_debounce", with = "humantime_serde_compat")]
    pub debounce: Duration,
    /// A full rescan at this interval catches changes the file watcher missed.
    #[serde(default = "d_rescan", with = "humantime_serde_compat")]
    pub rescan_interval: Duration,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        Self {
            debounce: d_debounce(),
            rescan_interval: d_rescan(),
        }
    }
}

fn d_debounce() -> Duration {
    Duration::from_millis(300)
}
fn d_rescan() -> Duration {
    Duration::from_secs(30)
}

/// The daemon's own optional LLM: judge detectors (Audit agent) and probe generation
/// (Testing agent). Without it, judge detectors are inconclusive (never a pass) and
/// controls run only their own prompts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// An OpenAI-compatible endpoint, e.g. a local llama.cpp server.
    pub endpoint: String,
    pub model: String,
    /// `{ env = "VAR" }` or `{ file = "/path" }`; never the key itself.
    #[serde(default)]
    pub api_key: Option<SecretConfig>,
    #[serde(default = "d_llm_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Retries of a failed request (429, 5xx, connection errors), with the backoff and
    /// circuit breaker of `[audit]`; the breaker is shared by the agents below.
    #[serde(default = "d_llm_retries")]
    pub retries: u32,
    /// Each agent's own limits on the endpoint, across runs.
    #[serde(default)]
    pub agents: LlmAgents,
}

/// The agents that use the daemon's LLM; each gets its own traffic control, so judging
/// a large run never starves probe generation (or the reverse).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmAgents {
    /// Judge detectors.
    #[serde(default)]
    pub audit: LlmLimits,
    /// Probe generation.
    #[serde(default)]
    pub testing: LlmLimits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmLimits {
    /// Requests and tokens per minute.
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u32>,
    /// Requests at once.
    #[serde(default = "d_llm_concurrency")]
    pub concurrency: u32,
}

impl Default for LlmLimits {
    fn default() -> Self {
        Self {
            rpm: None,
            tpm: None,
            concurrency: d_llm_concurrency(),
        }
    }
}

fn d_llm_retries() -> u32 {
    2
}

fn d_llm_timeout() -> Duration {
    Duration::from_secs(60)
}
fn d_llm_concurrency() -> u32 {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// `"500ms"`, `"5s"`, `"2m"` in TOML.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{s}` is not a duration ({e}); write e.g. `500ms`, `5s` or `2m`"
            ))
        })
    }
}

/// Values from the environment and the command line; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub policies_dir: Option<PathBuf>,
    pub targets_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
}

/// The configuration the daemon runs with, every layer applied and every path absolute.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// `None`: chosen at start from [`PathEnv::socket_candidates`].
    pub socket: Option<PathBuf>,
    pub policies_dir: PathBuf,
    pub targets_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,
    pub access: AccessConfig,
    pub agents: AgentsConfig,
    pub audit: AuditConfig,
    pub policies: PoliciesConfig,
    pub llm: Option<LlmConfig>,
    pub events: EventsConfig,
    pub knowledge: KnowledgeConfig,
    pub bus: BusSection,
    pub scheduler: SchedulerConfig,
}

/// The config file used when none is named and it exists.
pub const SYSTEM_CONFIG: &str = "/etc/aura/aurad.toml";

impl DaemonConfig {
    /// Applies the layers. `file` is the `--config`/`AURA_CONFIG` path, if given.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.is_file()));
        let (parsed, base) = match &file {
            Some(path) => (
                read_file(path)?,
                absolute(path.parent().unwrap_or(Path::new("."))),
            ),
            None => (FileConfig::default(), PathBuf::from("/etc/aura")),
        };
        Self::from_layers(file, parsed, &base, overrides)
    }

    fn from_layers(
        file: Option<PathBuf>,
        parsed: FileConfig,
        base: &Path,
        o: Overrides,
    ) -> Result<Self, ConfigError> {
        let in_file = |p: Option<PathBuf>| p.map(|p| base.join(p));
        let cwd = |p: Option<PathBuf>| p.map(|p| absolute(&p));
        let env = PathEnv::from_process(is_root());
        let d = parsed.daemon;
        let data_dir = cwd(o.data_dir)
            .or(in_file(d.data_dir))
            .unwrap_or_else(|| env.default_data_dir());
        let config = Self {
            socket: cwd(o.socket).or(in_file(d.socket)),
            policies_dir: cwd(o.policies_dir)
                .or(in_file(d.policies_dir))
                .unwrap_or_else(|| base.join("policies")),
            targets_dir: cwd(o.targets_dir)
                .or(in_file(d.targets_dir))
                .unwrap_or_else(|| base.join("targets")),
            log_format: o.log_format.or(d.log_format).unwrap_or_default(),
            log_level: o.log_level.or(d.log_level).unwrap_or_else(|| "info".into()),
            data_dir,
            file,
            access: parsed.access,
            agents: parsed.agents,
            audit: parsed.audit,
            policies: parsed.policies,
            llm: parsed.llm,
            events: parsed.events,
            knowledge: parsed.knowledge,
            bus: parsed.bus,
            scheduler: parsed.scheduler,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let err = |message: String| match &self.file {
            Some(path) => ConfigError::Invalid {
                path: path.clone(),
                message,
            },
            None => ConfigError::Value(message),
        };
        if self.agents.restart_backoff_initial.is_zero() {
            return Err(err(
                "agents.restart_backoff_initial must be above zero".into()
            ));
        }
        if self.agents.restart_backoff_max < self.agents.restart_backoff_initial {
            return Err(err(
                "agents.restart_backoff_max must be at least agents.restart_backoff_initial".into(),
            ));
        }
        if self.agents.heartbeat_interval.is_zero() {
            return Err(err("agents.heartbeat_interval must be above zero".into()));
        }
        if self.audit.max_response_bytes == 0 {
            return Err(err("audit.max_response_bytes must be above zero".into()));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(err(format!(
                "log level `{}` is not a valid filter: {e}",
                self.log_level
            )));
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // Syntax first, so "not TOML" is said only of a file that is not.
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        return Err(ConfigError::Parse {
            path: path.to_path_buf(),
            message: describe_toml_error(&text, &e),
        });
    }
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: describe_toml_error(&text, &e),
    })
}

/// "line L, column C: message", which toml's own Display spreads over a snippet.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {col}: {msg}")
        }
        None => msg,
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("aurad.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn unknown_key_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[daemon]\ndata_dri = \"/x\"\n");
        let err = DaemonConfig::load(Some(&p), Overrides::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("data_dri"), "{msg}");
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn a_file_that_is_not_toml_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "{ \"daemon\": 1 }");
        let msg = DaemonConfig::load(Some(&p), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not valid TOML"), "{msg}");
    }

    #[test]
    fn a_valid_toml_file_with_a_bad_value_names_the_value_not_the_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[audit]\nattempt_retention = \"soon\"\n");
        let msg = DaemonConfig::load(Some(&p), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("not valid TOML"), "{msg}");
        assert!(
            msg.contains("line 2") && msg.contains("`soon` is not a duration"),
            "{msg}"
        );
    }

    #[test]
    fn layers_apply_in_order_and_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "[daemon]\ndata_dir = \"data\"\npolicies_dir = \"../pol\"\nlog_level = \"debug\"\n",
        );
        let c = DaemonConfig::load(Some(&p), Overrides::default()).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.policies_dir, dir.path().join("../pol"));
        assert_eq!(c.targets_dir, dir.path().join("targets"));
        assert_eq!(c.log_level, "debug");
        let o = Overrides {
            data_dir: Some("/elsewhere".into()),
            log_level: Some("warn".into()),
            ..Default::default()
        };
        let c = DaemonConfig::load(Some(&p), o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/elsewhere"));
        assert_eq!(c.log_level, "warn");
    }

    #[test]
    fn bad_duration_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[agents]\nheartbeat_interval = \"soon\"\n");
        let msg = DaemonConfig::load(Some(&p), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("soon") && msg.contains("duration"), "{msg}");
    }
}
