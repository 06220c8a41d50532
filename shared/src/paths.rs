//! Where the daemon's socket lives, known to both sides so a client finds it unasked.
//!
//! In order of preference: `/run/aura/aurad.sock` when `/run/aura` exists (a systemd
//! service with `RuntimeDirectory=aura`), `$XDG_RUNTIME_DIR/aura/aurad.sock` for a user
//! session, and `<data dir>/aurad.sock` otherwise. `AURA_SOCKET` overrides all of them.

use std::path::{Path, PathBuf};

pub const SOCKET_FILE: &str = "aurad.sock";
pub const SYSTEM_RUNTIME_DIR: &str = "/run/aura";
pub const SYSTEM_DATA_DIR: &str = "/var/lib/aura";

/// The environment the path rules read, passed in so tests control it.
#[derive(Debug, Clone, Default)]
pub struct PathEnv {
    pub euid_is_root: bool,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl PathEnv {
    /// Reads the process environment.
    pub fn from_process(euid_is_root: bool) -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            euid_is_root,
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_data_home: var("XDG_DATA_HOME"),
            home: var("HOME"),
        }
    }

    /// The default data dir: `/var/lib/aura` for root, else `$XDG_DATA_HOME/aura` or
    /// `~/.local/share/aura`.
    pub fn default_data_dir(&self) -> PathBuf {
        if self.euid_is_root {
            return PathBuf::from(SYSTEM_DATA_DIR);
        }
        if let Some(d) = &self.xdg_data_home {
            return d.join("aura");
        }
        match &self.home {
            Some(h) => h.join(".local/share/aura"),
            None => PathBuf::from(SYSTEM_DATA_DIR),
        }
    }

    /// Socket paths to try, most preferred first. The daemon binds the first whose
    /// directory exists (creating the last, under the data dir, if need be); a client
    /// connects to the first that exists.
    pub fn socket_candidates(&self, data_dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::with_capacity(3);
        if Path::new(SYSTEM_RUNTIME_DIR).is_dir() {
            out.push(Path::new(SYSTEM_RUNTIME_DIR).join(SOCKET_FILE));
        }
        if let Some(rt) = &self.xdg_runtime_dir {
            out.push(rt.join("aura").join(SOCKET_FILE));
        }
        out.push(data_dir.join(SOCKET_FILE));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_paths_follow_xdg() {
        let env = PathEnv {
            euid_is_root: false,
            xdg_runtime_dir: Some("/run/user/1000".into()),
            xdg_data_home: None,
            home: Some("/home/ann".into()),
        };
        let data = env.default_data_dir();
        assert_eq!(data, PathBuf::from("/home/ann/.local/share/aura"));
        let c = env.socket_candidates(&data);
        assert!(c.contains(&PathBuf::from("/run/user/1000/aura/aurad.sock")));
        assert_eq!(c.last().unwrap(), &data.join("aurad.sock"));
    }

    #[test]
    fn root_uses_system_data_dir() {
        let env = PathEnv {
            euid_is_root: true,
            ..Default::default()
        };
        assert_eq!(env.default_data_dir(), PathBuf::from("/var/lib/aura"));
    }
}
