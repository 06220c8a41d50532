//! Finding, checking and binding the socket path.
//!
//! The folder must be ours (or root's), not a symlink, and writable by nobody else; we
//! create it 0700 (0750 with a socket group). The socket is 0600 (0660 with a group). A
//! file already at the path is removed only if it is a socket that refuses connections
//! (a daemon that died); a live socket means another daemon, and anything else is left
//! alone.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aura_proto::paths::PathEnv;
use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;

use crate::config::{DaemonConfig, is_root};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("socket folder {0} is a symlink; refusing to use it (give --socket a real folder)")]
    DirSymlink(PathBuf),
    #[error("socket path {0} is a symlink; refusing to use it")]
    PathSymlink(PathBuf),
    #[error(
        "socket folder {path} is writable by other users (mode {mode:o}); use a private \
         folder (mode 0700), e.g. under $XDG_RUNTIME_DIR"
    )]
    DirWritable { path: PathBuf, mode: u32 },
    #[error("socket folder {path} belongs to uid {owner}, not to this user or root")]
    DirOwner { path: PathBuf, owner: u32 },
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotSocket(PathBuf),
    #[error("another daemon is already listening on {0}")]
    InUse(PathBuf),
    #[error("unknown socket group `{0}`")]
    UnknownGroup(String),
    #[error("socket path {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The configured path, or the first candidate whose folder exists or can be ours.
pub fn choose_path(config: &DaemonConfig) -> PathBuf {
    if let Some(p) = &config.socket {
        return p.clone();
    }
    let env = PathEnv::from_process(is_root());
    let candidates = env.socket_candidates(&config.data_dir);
    for c in &candidates {
        let dir = c.parent().unwrap_or(Path::new("/"));
        // The data-dir fallback always works; the others when their base exists.
        if dir.exists() || dir.parent().is_some_and(Path::is_dir) {
            return c.clone();
        }
    }
    config.data_dir.join(aura_proto::paths::SOCKET_FILE)
}

/// Resolves a group name or number to a gid.
pub fn resolve_group(group: &str) -> Result<u32, SocketError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name = CString::new(group).map_err(|_| SocketError::UnknownGroup(group.into()))?;
    // SAFETY: getgrnam returns a pointer into static storage or null; we read one field
    // immediately, and the daemon calls this once, at start, before other threads use it.
    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
    if gr.is_null() {
        return Err(SocketError::UnknownGroup(group.into()));
    }
    // SAFETY: non-null result of getgrnam points to a valid group record.
    Ok(unsafe { (*gr).gr_gid })
}

/// Prepares the folder and path, then binds. Returns the listener.
pub fn bind(path: &Path, group: Option<u32>) -> Result<Listener, SocketError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    prepare_dir(dir, group)?;
    clear_stale(path)?;
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    let name = path.to_fs_name::<GenericFilePath>().map_err(io(path))?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(mode)
        .create_tokio()
        .map_err(io(path))?;
    if let Some(gid) = group {
        chown_group(path, gid)?;
    }
    // Belt and braces: the mode set before bind must be what is on disk.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
    Ok(listener)
}

fn prepare_dir(dir: &Path, group: Option<u32>) -> Result<(), SocketError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
            if let Some(gid) = group {
                chown_group(dir, gid)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
                    .map_err(io(dir))?;
            }
            Ok(())
        }
        Err(e) => Err(io(dir)(e)),
        Ok(meta) if meta.file_type().is_symlink() => Err(SocketError::DirSymlink(dir.into())),
        Ok(meta) => {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if meta.uid() != me && meta.uid() != 0 {
                return Err(SocketError::DirOwner {
                    path: dir.into(),
                    owner: meta.uid(),
                });
            }
            let mode = meta.mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(SocketError::DirWritable {
                    path: dir.into(),
                    mode,
                });
            }
            Ok(())
        }
    }
}

fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(SocketError::PathSymlink(path.into()));
    }
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotSocket(path.into()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse(path.into())),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale socket");
            std::fs::remove_file(path).map_err(io(path))
        }
        Err(e) => Err(io(path)(e)),
    }
}

fn chown_group(path: &Path, gid: u32) -> Result<(), SocketError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| SocketError::Io {
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"),
    })?;
    // SAFETY: `c` is a valid NUL-terminated path; uid -1 leaves the owner unchanged.
    let rc = unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) };
    if rc != 0 {
        return Err(io(path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_writable_and_symlinked_folders_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_dir(&open, None).unwrap_err();
        assert!(matches!(err, SocketError::DirWritable { .. }), "{err}");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        let err = prepare_dir(&link, None).unwrap_err();
        assert!(matches!(err, SocketError::DirSymlink(_)), "{err}");
    }

    #[test]
    fn a_regular_file_at_the_socket_path_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("aurad.sock");
        std::fs::write(&p, "precious").unwrap();
        assert!(matches!(clear_stale(&p), Err(SocketError::NotSocket(_))));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "precious");
    }

    #[test]
    fn a_dead_socket_is_removed_and_a_live_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("s.sock");
        let live = std::os::unix::net::UnixListener::bind(&p).unwrap();
        assert!(matches!(clear_stale(&p), Err(SocketError::InUse(_))));
        drop(live);
        clear_stale(&p).unwrap();
        assert!(!p.exists());
    }
}
