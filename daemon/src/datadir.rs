//! The data dir and the lock that keeps a second daemon out of it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data dir {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open lock file {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another aurad (pid {pid}) holds the data dir {dir}; stop it, or give this one \
         another --data-dir"
    )]
    Held { dir: PathBuf, pid: String },
}

/// An exclusively locked data dir. The lock is released when this is dropped or the
/// process dies, however it dies (an `flock`, not a pid file).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

pub const LOCK_FILE: &str = "aurad.lock";

impl DataDir {
    /// Creates the dir (mode 0700) if needed and takes the lock, writing our pid into it.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| DataDirError::Create {
                path: path.to_path_buf(),
                source,
            })?;
        let lock_path = path.join(LOCK_FILE);
        let lock_err = |source| DataDirError::Lock {
            path: lock_path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(DataDirError::Held {
                    dir: path.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        file.set_len(0).map_err(lock_err)?;
        file.rewind().map_err(lock_err)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
        file.sync_all().map_err(lock_err)?;
        // A data dir created by an older run with a loose mode is tightened.
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        Ok(Self {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn db_path(&self) -> PathBuf {
        self.path.join("db")
    }

    pub fn reports_dir(&self) -> PathBuf {
        self.path.join("reports")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        DataDir::open(dir.path()).unwrap();
    }
}
