//! Helpers for end-to-end tests: a real daemon on a temp data dir and socket, a real
//! HTTP server on 127.0.0.1 standing in for a model endpoint, and waiting for conditions
//! with a timeout (never a sleep).

pub mod audit;
pub mod fake_llm;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aurad::config::{DaemonConfig, Overrides};
use aurad::{Daemon, DaemonBuilder, DaemonHandle};

/// The repository's bundled policies folder.
pub fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Polls `cond` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A daemon in this process, on its own temp dir.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub handle: DaemonHandle,
    daemon: Option<Daemon>,
}

/// A target file for an OpenAI-compatible server at `url` (a fake one in tests), without
/// retries so every answer is the server's first: (file name, YAML).
pub fn openai_target(name: &str, url: &str) -> (String, String) {
    (
        format!("{name}.yaml"),
        format!("name: {name}\nkind: openai\nendpoint: {url}\nmodel: m\nretries: 0\n"),
    )
}

/// What a test daemon is made of.
pub struct Setup {
    /// Target YAML files: (file name, contents).
    pub targets: Vec<(String, String)>,
    /// The policies folder; default: the repository's.
    pub policies: PathBuf,
    /// Extra lines for aurad.toml.
    pub extra_config: String,
    /// Socket path; default: `<dir>/run/aurad.sock`.
    pub socket: Option<PathBuf>,
    /// Run overdue scheduled controls at start (off by default, so a test's daemon does
    /// only what the test asks).
    pub catch_up: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            targets: vec![("demo.yaml".into(), "name: demo\nkind: demo\n".into())],
            policies: repo_policies(),
            extra_config: String::new(),
            socket: None,
            catch_up: false,
        }
    }
}

impl Setup {
    pub fn with_target(mut self, file: &str, yaml: &str) -> Self {
        self.targets.push((file.into(), yaml.into()));
        self
    }

    /// Writes the config tree into `dir` and returns the loaded config.
    pub fn write(&self, dir: &Path) -> DaemonConfig {
        let targets = dir.join("targets");
        std::fs::create_dir_all(&targets).unwrap();
        for (name, yaml) in &self.targets {
            std::fs::write(targets.join(name), yaml).unwrap();
        }
        let socket = self
            .socket
            .clone()
            .unwrap_or_else(|| dir.join("run/aurad.sock"));
        let toml = format!(
            "[daemon]\ndata_dir = {:?}\nsocket = {:?}\npolicies_dir = {:?}\ntargets_dir = \"targets\"\nlog_level = \"warn\"\n\n[agents]\nrestart_backoff_initial = \"50ms\"\nrestart_backoff_max = \"500ms\"\nheartbeat_interval = \"200ms\"\n\n[scheduler]\ncatch_up = {}\n{}\n",
            dir.join("data"),
            socket,
            self.policies,
            self.catch_up,
            self.extra_config
        );
        let file = dir.join("aurad.toml");
        std::fs::write(&file, toml).unwrap();
        DaemonConfig::load(Some(&file), Overrides::default()).unwrap()
    }
}

impl TestDaemon {
    pub async fn start(setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = setup.write(dir.path());
        Self::start_in(dir, config).await
    }

    pub async fn start_in(dir: tempfile::TempDir, config: DaemonConfig) -> Self {
        // `AURA_TEST_LOG=debug cargo test ...` shows the daemon's logs.
        if let Ok(level) = std::env::var("AURA_TEST_LOG") {
            aurad::logging::init(aurad::config::LogFormat::Text, &level);
        }
        let daemon = DaemonBuilder::new(config)
            .start()
            .await
            .expect("daemon starts");
        Self {
            socket: daemon.socket_path().to_path_buf(),
            handle: daemon.handle(),
            daemon: Some(daemon),
            dir,
        }
    }

    /// Stops in order and returns the temp dir, so a test can start again on it.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
        // Moving out of a type with Drop needs a swap.
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub async fn client(&self) -> aura::client::Client {
        aura::client::Client::connect(&self.socket)
            .await
            .expect("client connects")
    }

    /// What `aura status` shows, over the protocol.
    pub async fn status(&self) -> aura_proto::wire::StatusReport {
        match self
            .client()
            .await
            .request(aura_proto::wire::RequestBody::Status)
            .await
            .expect("status")
        {
            aura_proto::wire::Reply::Status(s) => s,
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.handle().shutdown();
        }
    }
}
