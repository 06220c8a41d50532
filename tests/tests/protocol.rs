//! Hostile and broken clients get a clear error or `Incompatible`, and the daemon keeps
//! serving everyone else.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use aura_proto::codec::{decode, encode};
use aura_proto::handshake::{HandshakeReply, Hello};
use aura_proto::wire::{ErrorCode, Reply, RequestBody, ServerFrame};
use aura_proto::{MAGIC, PROTOCOL_VERSION};
use aura_tests::{Setup, TestDaemon};

/// Raw blocking connection, so a test can send exactly the bytes it wants.
fn raw(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn write_frame(s: &mut UnixStream, payload: &[u8]) {
    s.write_all(&(payload.len() as u32).to_be_bytes()).unwrap();
    s.write_all(payload).unwrap();
}

/// Reads one frame; `None` when the server closed the connection.
fn read_frame(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn handshake(s: &mut UnixStream, protocol: u32) -> HandshakeReply {
    s.write_all(&MAGIC).unwrap();
    write_frame(
        s,
        &encode(&Hello {
            protocol,
            client: "test".into(),
        })
        .unwrap(),
    );
    decode(&read_frame(s).expect("a handshake reply")).unwrap()
}

fn closed(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0))
}

/// After each bad client, a good one still gets served.
async fn still_serving(d: &TestDaemon) {
    let c = d.client().await;
    assert!(matches!(
        c.request(RequestBody::Status).await,
        Ok(Reply::Status(_))
    ));
}

fn connection_error(s: &mut UnixStream) -> String {
    let frame = read_frame(s).expect("an error frame before close");
    match decode::<ServerFrame>(&frame).unwrap() {
        ServerFrame::Response(r) => {
            assert_eq!(r.id, 0);
            let e = r.result.unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest);
            e.message
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn version_mismatch_gets_incompatible_naming_both_versions() {
    let d = TestDaemon::start(Setup::default()).await;
    let sock = d.socket.clone();
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = raw(&sock);
        let r = handshake(&mut s, PROTOCOL_VERSION + 7);
        assert!(closed(&mut s));
        r
    })
    .await
    .unwrap();
    match reply {
        HandshakeReply::Incompatible { message } => {
            assert!(
                message.contains(&(PROTOCOL_VERSION + 7).to_string()),
                "{message}"
            );
            assert!(message.contains(&PROTOCOL_VERSION.to_string()), "{message}");
        }
        other => panic!("{other:?}"),
    }
    still_serving(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_magic_is_told_and_closed() {
    let d = TestDaemon::start(Setup::default()).await;
    let sock = d.socket.clone();
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = raw(&sock);
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        decode::<HandshakeReply>(&read_frame(&mut s).unwrap()).unwrap()
    })
    .await
    .unwrap();
    assert!(matches!(reply, HandshakeReply::Incompatible { message } if message.contains("magic")));
    still_serving(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_length_prefix_is_refused() {
    let d = TestDaemon::start(Setup::default()).await;
    let sock = d.socket.clone();
    let msg = tokio::task::spawn_blocking(move || {
        let mut s = raw(&sock);
        assert!(matches!(
            handshake(&mut s, PROTOCOL_VERSION),
            HandshakeReply::Welcome(_)
        ));
        // Claims 4 GiB; the daemon must refuse before allocating.
        s.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let m = connection_error(&mut s);
        assert!(closed(&mut s));
        m
    })
    .await
    .unwrap();
    assert!(msg.contains("exceeds"), "{msg}");
    still_serving(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn random_bytes_in_a_frame_are_a_clear_error() {
    let d = TestDaemon::start(Setup::default()).await;
    let sock = d.socket.clone();
    let msg = tokio::task::spawn_blocking(move || {
        let mut s = raw(&sock);
        assert!(matches!(
            handshake(&mut s, PROTOCOL_VERSION),
            HandshakeReply::Welcome(_)
        ));
        let junk: Vec<u8> = (0..64u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80)
            .collect();
        write_frame(&mut s, &junk);
        connection_error(&mut s)
    })
    .await
    .unwrap();
    assert!(msg.contains("malformed"), "{msg}");
    still_serving(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_frame_and_garbage_hello_do_not_hurt_the_daemon() {
    let d = TestDaemon::start(Setup::default()).await;
    let sock = d.socket.clone();
    tokio::task::spawn_blocking(move || {
        // A frame cut short, then the client vanishes.
        let mut s = raw(&sock);
        assert!(matches!(
            handshake(&mut s, PROTOCOL_VERSION),
            HandshakeReply::Welcome(_)
        ));
        s.write_all(&100u32.to_be_bytes()).unwrap();
        s.write_all(&[1, 2, 3]).unwrap();
        drop(s);
        // A hello that is not a hello.
        let mut s = raw(&sock);
        s.write_all(&MAGIC).unwrap();
        write_frame(&mut s, &[0xff; 9]);
        match decode::<HandshakeReply>(&read_frame(&mut s).unwrap()).unwrap() {
            HandshakeReply::Incompatible { message } => {
                assert!(message.contains("malformed hello"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    })
    .await
    .unwrap();
    still_serving(&d).await;
}

#[tokio::test]
async fn ping_is_answered_with_the_same_number() {
    use aura_proto::codec::FramedConn;
    use aura_proto::wire::ClientFrame;
    use tokio::io::AsyncWriteExt;
    let d = TestDaemon::start(Setup::default()).await;
    let mut stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    stream.write_all(&MAGIC).await.unwrap();
    let mut conn = FramedConn::new(stream);
    conn.send(&Hello {
        protocol: PROTOCOL_VERSION,
        client: "t".into(),
    })
    .await
    .unwrap();
    assert!(matches!(
        conn.expect::<HandshakeReply>().await.unwrap(),
        HandshakeReply::Welcome(_)
    ));
    conn.send(&ClientFrame::Ping(4242)).await.unwrap();
    assert_eq!(
        conn.expect::<ServerFrame>().await.unwrap(),
        ServerFrame::Pong(4242)
    );
}
