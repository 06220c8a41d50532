//! The handshake: the only messages whose encoding may never change.

use serde::{Deserialize, Serialize};

use crate::view::Role;

/// First frame from the client. Frozen: never add, remove or reorder fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The [`crate::PROTOCOL_VERSION`] the client speaks.
    pub protocol: u32,
    /// Free text naming the client, e.g. `aura 0.1.0`; only logged.
    pub client: String,
}

/// The server's answer to [`Hello`].
///
/// `Incompatible` is variant 0 and frozen forever, so any client can decode it. `Welcome`
/// is only sent to a client speaking the daemon's own protocol version, so it may change
/// together with [`crate::PROTOCOL_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeReply {
    /// The connection is closed after this. `message` is a sentence for a human.
    Incompatible {
        message: String,
    },
    Welcome(Welcome),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    /// `aurad <version>`.
    pub server: String,
    /// The role the daemon gave this connection from its peer credentials.
    pub role: Role,
    pub host: String,
}

/// The sentence sent with `Incompatible` when versions differ.
pub fn version_mismatch_message(client: u32, server: u32, server_name: &str) -> String {
    let advice = if client < server {
        "upgrade the client"
    } else {
        "upgrade the daemon"
    };
    format!(
        "protocol mismatch: this client speaks protocol version {client}, \
         but the daemon ({server_name}) speaks version {server}; {advice} so both match"
    )
}
