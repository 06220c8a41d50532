//! The socket's permissions, the data dir lock, and roles from peer credentials.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use aura_proto::codec::{decode, encode};
use aura_proto::handshake::{HandshakeReply, Hello};
use aura_proto::view::Role;
use aura_proto::wire::{ClientFrame, ErrorCode, Request, RequestBody, ServerFrame, StartAudit};
use aura_proto::{MAGIC, PROTOCOL_VERSION};
use aura_tests::{Setup, TestDaemon};
use aurad::DaemonBuilder;

#[tokio::test]
async fn socket_is_0600_in_a_0700_folder_and_removed_on_stop() {
    let d = TestDaemon::start(Setup::default()).await;
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(d.socket.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    let data = std::fs::metadata(d.dir.path().join("data")).unwrap();
    assert_eq!(data.permissions().mode() & 0o777, 0o700);
    let socket = d.socket.clone();
    d.stop().await;
    assert!(!socket.exists(), "the socket is removed on stop");
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_refused_naming_the_pid() {
    let d = TestDaemon::start(Setup::default()).await;
    // Same data dir, different socket.
    let mut config = Setup {
        socket: Some(d.dir.path().join("other/aurad.sock")),
        ..Setup::default()
    }
    .write(d.dir.path());
    config.socket = Some(d.dir.path().join("other/aurad.sock"));
    let err = DaemonBuilder::new(config)
        .start()
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    assert!(msg.contains("another aurad"), "{msg}");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_world_writable_folder_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file left behind by a daemon that died.
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    drop(std::os::unix::net::UnixListener::bind(run.join("aurad.sock")).unwrap());
    let config = Setup::default().write(dir.path());
    let d = TestDaemon::start_in(dir, config).await;
    assert!(d.client().await.welcome.server.starts_with("aurad"));
    let dir = d.stop().await;

    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut config = Setup::default().write(dir.path());
    config.socket = Some(open.join("aurad.sock"));
    let msg = DaemonBuilder::new(config)
        .start()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("writable by other users"), "{msg}");

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&run, &link).unwrap();
    let mut config = Setup::default().write(dir.path());
    config.socket = Some(link.join("aurad.sock"));
    let msg = DaemonBuilder::new(config)
        .start()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("symlink"), "{msg}");
}

const NOBODY: u32 = 65534;

/// Connects from a thread whose credentials are switched to `nobody` (a raw syscall
/// changes only the calling thread), so the kernel reports that uid as the peer.
fn connect_as_nobody_and_start_audit(socket: &Path) -> (Role, ErrorCode, String) {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        // SAFETY: raw setresgid/setresuid on this thread only; it exits right after.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setresgid, NOBODY, NOBODY, NOBODY),
                0
            );
            assert_eq!(
                libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, NOBODY),
                0
            );
        }
        let mut s = UnixStream::connect(&socket).expect("nobody can connect through the group");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&MAGIC).unwrap();
        let frame = |s: &mut UnixStream, bytes: Vec<u8>| {
            s.write_all(&(bytes.len() as u32).to_be_bytes()).unwrap();
            s.write_all(&bytes).unwrap();
        };
        let read = |s: &mut UnixStream| {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut b).unwrap();
            b
        };
        frame(
            &mut s,
            encode(&Hello {
                protocol: PROTOCOL_VERSION,
                client: "viewer".into(),
            })
            .unwrap(),
        );
        let role = match decode::<HandshakeReply>(&read(&mut s)).unwrap() {
            HandshakeReply::Welcome(w) => w.role,
            other => panic!("{other:?}"),
        };
        let start = StartAudit::target("demo", None);
        let req = ClientFrame::Request(Request {
            id: 1,
            body: RequestBody::StartAudit(start),
        });
        frame(&mut s, encode(&req).unwrap());
        match decode::<ServerFrame>(&read(&mut s)).unwrap() {
            ServerFrame::Response(r) => {
                let e = r.result.unwrap_err();
                (role, e.code, e.message)
            }
            other => panic!("{other:?}"),
        }
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_cannot_start_an_audit() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching a thread to another uid needs root (CI runs as root)");
        return;
    }
    // A folder `nobody` can traverse; the daemon makes the socket folder 0750 with the
    // socket group, and the socket 0660.
    let base = tempfile::Builder::new()
        .prefix("aura-viewer")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = base.path().join("run/aurad.sock");
    let setup = Setup {
        socket: Some(socket.clone()),
        extra_config: format!("\n[access]\nsocket_group = \"{NOBODY}\"\n"),
        ..Setup::default()
    };
    let d = TestDaemon::start(setup).await;
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), NOBODY);
    let s = socket.clone();
    let (role, code, message) =
        tokio::task::spawn_blocking(move || connect_as_nobody_and_start_audit(&s))
            .await
            .unwrap();
    assert_eq!(role, Role::Viewer);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(
        message.contains("viewer") && message.contains("65534"),
        "{message}"
    );
    // The owner is still an operator.
    assert_eq!(d.client().await.welcome.role, Role::Operator);
    drop(base);
}
