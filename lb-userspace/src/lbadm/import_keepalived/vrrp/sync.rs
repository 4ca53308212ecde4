//! keepalived's LVS sync daemon → lbd's `sync:` (its peer is the instance's one unicast peer).

use super::super::{
    convert::Notes,
    parse::Directive,
    yaml::{Sync, Vrrp},
};

/// keepalived's LVS sync daemon and the instance it follows.
pub(super) struct SyncDaemon<'d> {
    pub(super) directive: &'d Directive,
    pub(super) instance: String,
}

/// lbd's `sync` from the first sync daemon: its peer is the instance's one unicast peer.
pub(super) fn sync(
    notes: &mut Notes,
    daemons: &[SyncDaemon],
    converted: &[(String, Vrrp)],
) -> Option<Sync> {
    let (first, later) = daemons.split_first()?;
    for daemon in later {
        notes.skip(
            daemon.directive,
            "keepalived runs one sync daemon, the first configured; it ignores this one too",
        );
    }
    let name = &first.instance;
    let by_hand = "add `sync: {peer: ADDR}` with the peer's address by hand";
    let problem = match converted.iter().find(|(written, _)| written == name) {
        None => format!(
            "vrrp_instance {name:?} is not converted, so lbd has no VRRP peer to sync with; \
             {by_hand}"
        ),
        Some((_, vrrp)) => match vrrp.unicast_peers.as_slice() {
            [peer] => {
                if first.directive.args.len() > 2 {
                    notes.skip(
                        first.directive,
                        format!(
                            "{}: settings of IPVS's sync daemon; lbd syncs with its own \
                             protocol, over TCP port 8849",
                            first.directive.args[2..].join(" ")
                        ),
                    );
                }
                return Some(Sync {
                    comment: format!(
                        "sync: for keepalived's {} at {} (IPVS's sync daemon);\nlbd syncs \
                         connections with the VRRP peer, {peer} (vrrp_instance {name}'s \
                         unicast\npeer), which must run lbd too",
                        first.directive.keyword,
                        first.directive.at.place()
                    ),
                    peer: *peer,
                });
            }
            [] => format!(
                "lbd syncs with the VRRP peer's address, and vrrp_instance {name} multicasts: \
                 {by_hand}"
            ),
            peers => format!(
                "lbd syncs with one peer, and vrrp_instance {name} has {}: {by_hand}",
                peers.len()
            ),
        },
    };
    notes.skip(first.directive, problem);
    None
}
