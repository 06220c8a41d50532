//! Who a peer is (from the kernel, never from the client) and what it may do.

use aura_proto::view::Role;

use crate::config::AccessConfig;

/// The peer's credentials as the kernel reported them at connect time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
}

/// Operators: root, the daemon's own uid, and the configured uids and gids. Everyone
/// else who can open the socket is a viewer. Unknown credentials are a viewer.
pub fn role_for(peer: &Peer, access: &AccessConfig, daemon_uid: u32) -> Role {
    let by_uid = peer
        .uid
        .is_some_and(|u| u == 0 || u == daemon_uid || access.operator_uids.contains(&u));
    let by_gid = peer.gid.is_some_and(|g| access.operator_gids.contains(&g));
    if by_uid || by_gid {
        Role::Operator
    } else {
        Role::Viewer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_credentials_and_config() {
        let access = AccessConfig {
            operator_uids: vec![1001],
            operator_gids: vec![50],
            socket_group: None,
        };
        let p = |uid, gid| Peer {
            uid: Some(uid),
            gid: Some(gid),
            pid: None,
        };
        assert_eq!(role_for(&p(0, 0), &access, 1000), Role::Operator);
        assert_eq!(role_for(&p(1000, 1000), &access, 1000), Role::Operator);
        assert_eq!(role_for(&p(1001, 7), &access, 1000), Role::Operator);
        assert_eq!(role_for(&p(1002, 50), &access, 1000), Role::Operator);
        assert_eq!(role_for(&p(1002, 7), &access, 1000), Role::Viewer);
        assert_eq!(role_for(&Peer::default(), &access, 1000), Role::Viewer);
    }
}
