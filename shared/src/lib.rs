//! `aura-proto`: the wire contract between `aurad` and its clients, and nothing else.
//!
//! # Transport
//!
//! A local stream socket (a Unix domain socket at a file path; see [`paths`]). The daemon
//! trusts the kernel's peer credentials of the connecting process and nothing the client
//! says about itself: the role in [`handshake::Welcome`] is decided by the daemon.
//!
//! # Framing
//!
//! 1. The client sends the 4 raw bytes [`MAGIC`] (`AURA`), unframed.
//! 2. Every message after that, in both directions, is one frame: a 4-byte big-endian
//!    length, then that many bytes of payload. A length above [`MAX_FRAME_LEN`] (4 MiB)
//!    is a protocol error: the reader refuses it before allocating anything.
//! 3. A payload is one value encoded with bincode 2 (serde, standard config, varint
//!    integers) with a decode limit of [`MAX_FRAME_LEN`]; bytes left over after the value
//!    are an error. All of this lives in [`codec`], so the encoding could be swapped.
//!
//! # Order of messages
//!
//! - Client: magic, then [`handshake::Hello`]. Server: one [`handshake::HandshakeReply`].
//!   On `Incompatible` the server closes the connection.
//! - Then the client sends [`wire::ClientFrame`]s and the server sends
//!   [`wire::ServerFrame`]s. Every `Request{id}` gets exactly one `Response{id}`, not
//!   necessarily in order. Subscriptions push `Update`s until unsubscribed. `Ping(n)` is
//!   answered by `Pong(n)`.
//!
//! # Compatibility
//!
//! bincode is not self-describing: any change to any type reachable from
//! [`wire::ClientFrame`], [`wire::ServerFrame`] or the handshake changes the bytes, so
//! [`PROTOCOL_VERSION`] must change with it. The golden-bytes test
//! (`tests/golden.rs`) fails when the encoding changes and the version does not.
//! `Hello` and `HandshakeReply::Incompatible` are frozen forever, so that a client and a
//! daemon of any two versions can always tell each other that they disagree.

pub mod codec;
pub mod handshake;
pub mod paths;
pub mod view;
pub mod wire;

/// The first four bytes a client sends, unframed.
pub const MAGIC: [u8; 4] = *b"AURA";

/// Hard cap on one frame's payload, in bytes. Enforced on both read and write.
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Version of everything sent after the handshake. Bump on any wire type change.
pub const PROTOCOL_VERSION: u32 = 2;
