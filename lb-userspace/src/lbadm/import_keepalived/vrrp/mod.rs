//! `vrrp_instance` → an entry of lbd's `vrrp:` list, and keepalived's LVS sync daemon →
//! `sync:`. A directive lbd's keys cannot say is listed. So is an instance that lacks what
//! lbd needs (an interface, a router id, an address) or that clashes with an earlier one:
//! the YAML must pass lbd's validation whole.
//!
//! Where keepalived and lbd mean different things by the same words, the YAML says
//! keepalived's meaning in lbd's terms:
//! - a tracked interface's positive weight: keepalived adds it while the link is up, lbd
//!   moves the priority by a weight while the link is down. So the priority starts higher by
//!   the weight and the link gets its negative: the same priorities, up and down, as long as
//!   the sum stays within 254 (where keepalived stops too); beyond it, the entry is listed;
//! - `notify`: keepalived runs it with `INSTANCE`, the name, the state and the priority, the
//!   arguments lbd gives every hook, so it becomes each hook no `notify_STATE` sets;
//! - `advert_int`: seconds with a fraction. VRRPv3 counts whole centiseconds, and keepalived
//!   rounds an interval between two; the YAML does not round, it lists.

use std::{collections::HashMap, net::IpAddr, time::Duration};

mod groups;
mod sync;
mod values;

use sync::{SyncDaemon, sync};
use values::{advert_interval, hook_command, hook_index, reason, virtual_address};

use super::{
    convert::{self, Notes},
    parse::Directive,
    yaml::{Sync, Vrrp},
};
use crate::config::{
    ha::{TrackInterface, VirtualAddress},
    is_valid_interface_name,
};

/// keepalived's priority without `priority`, and lbd's.
const DEFAULT_PRIORITY: u8 = 100;
/// The address owner's priority: it never moves.
const OWNER_PRIORITY: u8 = 255;
/// The highest priority tracking can reach, in keepalived and in lbd.
const MAX_TRACKED_PRIORITY: i32 = 254;
/// keepalived reads track weights in -254..=254 and runs ±254 as ±253.
const MAX_KEEPALIVED_WEIGHT: i32 = 253;
/// VRRPv3's Max Adver Int: 12 bits of centiseconds.
const MAX_ADVERT_CENTISECONDS: u64 = 4095;
/// lbd's longest `preempt_delay`.
const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(3600);

/// keepalived's notify directives and the lbd hooks they become, in lbd's order.
const HOOKS: [(&str, &str); 4] = [
    ("notify_master", "on_master"),
    ("notify_backup", "on_backup"),
    ("notify_fault", "on_fault"),
    ("notify_stop", "on_stop"),
];

/// What the `vrrp_instance`s and the sync daemon become.
pub(super) struct Routers {
    pub(super) instances: Vec<Vrrp>,
    /// Every valid interface an instance names, converted or not (where the XDP program
    /// likely attaches).
    pub(super) interfaces: Vec<String>,
    pub(super) sync: Option<Sync>,
}

/// Converts the `vrrp_instance` blocks, and the sync daemon from `global_defs`'
/// `lvs_sync_daemon INTERFACE INSTANCE …` or an instance's `lvs_sync_daemon_interface`.
pub(super) fn routers(
    notes: &mut Notes,
    blocks: &[&Directive],
    group_blocks: &[&Directive],
    global_sync_daemon: Option<&Directive>,
) -> Routers {
    let mut taken = Taken::default();
    let mut interfaces: Vec<String> = Vec::new();
    let mut converted: Vec<(String, Vrrp)> = Vec::new();
    // Converted instances with a source address, and its directive.
    let mut sources: Vec<(usize, &Directive)> = Vec::new();
    let mut daemons: Vec<SyncDaemon> = global_sync_daemon
        .and_then(|directive| {
            Some(SyncDaemon {
                directive,
                instance: directive.args.get(1)?.clone(),
            })
        })
        .into_iter()
        .collect();
    for block in blocks {
        let instance = read(notes, block);
        if let Some(interface) = &instance.interface
            && !interfaces.contains(interface)
        {
            interfaces.push(interface.clone());
        }
        if let Some(directive) = instance.sync_daemon {
            daemons.push(SyncDaemon {
                directive,
                instance: instance.written_name.clone(),
            });
        }
        let written_name = instance.written_name.clone();
        let source_directive = instance.source_address.map(|(_, directive)| directive);
        if let Some(vrrp) = instance.finish(notes, &mut taken) {
            if let Some(directive) = source_directive.filter(|_| vrrp.source_address.is_some()) {
                sources.push((converted.len(), directive));
            }
            converted.push((written_name, vrrp));
        }
    }
    // A source address a later instance carries (the earlier ones were checked as each
    // instance was read).
    for (index, directive) in sources {
        let source = converted[index].1.source_address;
        if let Some((owner, _)) = converted.iter().find(|(_, vrrp)| {
            vrrp.virtual_addresses
                .iter()
                .any(|address| Some(address.address) == source)
        }) {
            notes.skip(
                directive,
                format!(
                    "it is a virtual address of vrrp_instance {owner}: lbd sends adverts from \
                     an address of the node's own"
                ),
            );
            converted[index].1.source_address = None;
        }
    }
    groups::sync_groups(notes, group_blocks, &mut converted);
    daemons.sort_by_key(|daemon| daemon.directive.at.order);
    let sync = sync(notes, &daemons, &converted);
    Routers {
        instances: converted.into_iter().map(|(_, vrrp)| vrrp).collect(),
        interfaces,
        sync,
    }
}

/// A `vrrp_instance` as its block says it, before the checks against the other instances.
struct Instance<'d> {
    block: &'d Directive,
    /// As keepalived.conf writes it; the notes name the instance by it.
    written_name: String,
    interface: Option<String>,
    vrid: Option<u8>,
    priority: Option<u8>,
    advert_interval: Option<Duration>,
    preempt: bool,
    preempt_delay: Option<Duration>,
    initial_state: Option<&'static str>,
    /// Whether the instance is IPv6: the family of the first unicast peer or virtual address
    /// written, as keepalived decides it.
    ipv6: Option<bool>,
    unicast_peers: Vec<IpAddr>,
    /// `unicast_src_ip` or `mcast_src_ip` (one setting in keepalived).
    source_address: Option<(IpAddr, &'d Directive)>,
    virtual_addresses: Vec<(VirtualAddress, &'d Directive)>,
    /// With keepalived's weights.
    track_interfaces: Vec<(TrackInterface, &'d Directive)>,
    /// The command of each of [`HOOKS`], from its `notify_STATE`.
    hooks: [Option<String>; 4],
    /// `notify`: the command, for the hooks no `notify_STATE` sets.
    notify: Option<(String, &'d Directive)>,
    sync_daemon: Option<&'d Directive>,
}

fn read<'d>(notes: &mut Notes, block: &'d Directive) -> Instance<'d> {
    let mut instance = Instance {
        block,
        written_name: block.value().unwrap_or_default().to_owned(),
        interface: None,
        vrid: None,
        priority: None,
        advert_interval: None,
        preempt: true,
        preempt_delay: None,
        initial_state: None,
        ipv6: None,
        unicast_peers: Vec::new(),
        source_address: None,
        virtual_addresses: Vec::new(),
        track_interfaces: Vec::new(),
        hooks: Default::default(),
        notify: None,
        sync_daemon: None,
    };
    for directive in block.children() {
        let value = directive.value().unwrap_or_default();
        if let Some(index) = hook_index(&directive.keyword) {
            if instance.hooks[index].is_some() {
                notes.skip(
                    directive,
                    format!(
                        "{} is set twice; keepalived ignores this one too",
                        directive.keyword
                    ),
                );
            } else {
                instance.hooks[index] = hook_command(notes, directive);
            }
            continue;
        }
        match directive.keyword.as_str() {
            "interface" if is_valid_interface_name(value) => {
                instance.interface = Some(value.to_owned());
            }
            "interface" => notes.skip(
                directive,
                format!("{value:?} is not a Linux interface name"),
            ),
            "virtual_router_id" => match value.parse::<u8>() {
                Ok(vrid) if vrid != 0 => instance.vrid = Some(vrid),
                _ => notes.skip(
                    directive,
                    format!("{value:?} is not a router id (1 to 255)"),
                ),
            },
            "priority" => match value.parse::<u8>() {
                Ok(priority) if priority != 0 => instance.priority = Some(priority),
                _ => notes.skip(directive, format!("{value:?} is not a priority (1 to 255)")),
            },
            "advert_int" => match advert_interval(value) {
                Ok(interval) => instance.advert_interval = Some(interval),
                Err(problem) => notes.skip(
                    directive,
                    format!("{problem}; the instance gets the default, 1s, as in keepalived"),
                ),
            },
            "nopreempt" => instance.preempt = false,
            "preempt" => instance.preempt = true,
            "preempt_delay" => match convert::seconds(value) {
                Some(delay) if delay <= MAX_PREEMPT_DELAY => instance.preempt_delay = Some(delay),
                Some(_) => notes.skip(directive, format!("{value}s is beyond lbd's 1h")),
                None => notes.skip(directive, format!("{value:?} is not a time in seconds")),
            },
            "state" => match value.to_ascii_uppercase().as_str() {
                "MASTER" => instance.initial_state = Some("master"),
                "BACKUP" => instance.initial_state = Some("backup"),
                _ => notes.skip(directive, format!("{value:?} is not MASTER or BACKUP")),
            },
            "unicast_src_ip" | "mcast_src_ip" => match value.parse::<IpAddr>() {
                Ok(address) => {
                    // One setting under two names: the last one written counts, in keepalived.
                    if let Some((_, earlier)) =
                        instance.source_address.replace((address, directive))
                    {
                        notes.skip(
                            earlier,
                            format!(
                                "the {} at {} sets the source address again, and the last one \
                                 counts (unicast_src_ip and mcast_src_ip are one setting)",
                                directive.keyword,
                                directive.at.place()
                            ),
                        );
                    }
                }
                Err(_) => notes.skip(directive, format!("{value:?} is not an IP address")),
            },
            "unicast_peer" => {
                for peer in directive.children() {
                    instance.unicast_peer(notes, peer);
                }
            }
            "virtual_ipaddress" => {
                for entry in directive.children() {
                    instance.virtual_address(notes, entry);
                }
            }
            "track_interface" => {
                for entry in directive.children() {
                    instance.track_interface(notes, entry);
                }
            }
            "notify" => {
                if instance.notify.is_some() {
                    notes.skip(
                        directive,
                        "notify is set twice; keepalived ignores this one too",
                    );
                } else if let Some(command) = hook_command(notes, directive) {
                    instance.notify = Some((command, directive));
                }
            }
            "version" if value == "3" => {}
            "lvs_sync_daemon_interface" if instance.sync_daemon.is_none() => {
                instance.sync_daemon = Some(directive);
            }
            keyword => notes.skip(directive, reason(keyword)),
        }
    }
    instance
}

impl<'d> Instance<'d> {
    /// Whether `address` is of the instance's family, which the first address decides.
    fn of_the_family(&mut self, address: IpAddr) -> bool {
        *self.ipv6.get_or_insert(address.is_ipv6()) == address.is_ipv6()
    }

    fn family_name(&self) -> &'static str {
        if self.ipv6 == Some(true) {
            "IPv6"
        } else {
            "IPv4"
        }
    }

    fn unicast_peer(&mut self, notes: &mut Notes, peer: &Directive) {
        if !peer.args.is_empty() {
            notes.skip(
                peer,
                format!(
                    "{}: lbd's unicast peers have no options",
                    peer.args.join(" ")
                ),
            );
        }
        let Ok(address) = peer.keyword.parse::<IpAddr>() else {
            notes.skip(peer, "not an IP address");
            return;
        };
        if let Some(problem) = convert::unusable(address) {
            notes.skip(peer, format!("{address} is {problem}"));
        } else if !self.of_the_family(address) {
            notes.skip(
                peer,
                format!(
                    "{address} is not of the instance's family ({}); keepalived skips it too",
                    self.family_name()
                ),
            );
        } else if self.unicast_peers.contains(&address) {
            notes.skip(peer, format!("{address} is listed twice"));
        } else {
            self.unicast_peers.push(address);
        }
    }

    fn virtual_address(&mut self, notes: &mut Notes, entry: &'d Directive) {
        if !entry.args.is_empty() {
            notes.skip(
                entry,
                format!(
                    "{}: lbd's virtual_addresses have no options (dev, label, scope, …); lbd \
                     adds them to the instance's interface",
                    entry.args.join(" ")
                ),
            );
        }
        let Some(virtual_address) = virtual_address(&entry.keyword) else {
            notes.skip(entry, "not an IP address with an optional /prefix");
            return;
        };
        let address = virtual_address.address;
        if let Some(problem) = convert::unusable(address) {
            notes.skip(entry, format!("{address} is {problem}"));
        } else if !self.of_the_family(address) {
            // keepalived drops it ("address family must match VRRP instance").
            notes.skip(
                entry,
                format!(
                    "{address} is not of the instance's family ({}): a VRRP router carries \
                     one family, and keepalived ignores it too; for it to move with the \
                     master, add an instance of its family by hand (it may have the same \
                     vrid)",
                    self.family_name()
                ),
            );
        } else if self
            .virtual_addresses
            .iter()
            .any(|(earlier, _)| earlier.address == address)
        {
            notes.skip(
                entry,
                format!("{address} is listed twice; keepalived ignores it too"),
            );
        } else {
            self.virtual_addresses.push((virtual_address, entry));
        }
    }

    /// `eth1 [weight N [reverse]]`, read as keepalived's `alloc_track_if` reads it.
    fn track_interface(&mut self, notes: &mut Notes, entry: &'d Directive) {
        let name = &entry.keyword;
        if !is_valid_interface_name(name) {
            notes.skip(entry, format!("{name:?} is not a Linux interface name"));
            return;
        }
        if self
            .track_interfaces
            .iter()
            .any(|(tracked, _)| tracked.name == *name)
        {
            notes.skip(
                entry,
                format!("{name} is tracked twice; keepalived ignores this entry too"),
            );
            return;
        }
        let weight = match entry.args.as_slice() {
            [] => 0,
            [option, ..] if option != "weight" => {
                notes.skip(
                    entry,
                    format!("unknown option {option:?}; keepalived ignores the entry too"),
                );
                return;
            }
            [_] => {
                notes.skip(
                    entry,
                    "weight without a value; keepalived ignores the entry too",
                );
                return;
            }
            [_, weight, rest @ ..] => {
                match rest.first().map(String::as_str) {
                    Some("reverse") => {
                        notes.skip(
                            entry,
                            "reverse: lbd's tracked interfaces move the priority (or fault) \
                             while the link is down, never while it is up",
                        );
                        return;
                    }
                    Some(option) => notes.skip(
                        entry,
                        format!(
                            "unknown option {option:?} after the weight; keepalived ignores it too"
                        ),
                    ),
                    None => {}
                }
                match weight.parse::<i32>() {
                    Ok(weight) if weight.abs() <= MAX_KEEPALIVED_WEIGHT + 1 => {
                        weight.clamp(-MAX_KEEPALIVED_WEIGHT, MAX_KEEPALIVED_WEIGHT)
                    }
                    _ => {
                        notes.skip(
                            entry,
                            format!(
                                "weight {weight} is outside keepalived's -253..253: keepalived \
                                 tracks {name} with weight 0 (FAULT while it is down), and so \
                                 does the YAML"
                            ),
                        );
                        0
                    }
                }
            }
        };
        self.track_interfaces.push((
            TrackInterface {
                name: name.clone(),
                weight,
            },
            entry,
        ));
    }

    /// The `vrrp:` entry, unless the instance lacks what lbd needs or clashes with an
    /// instance converted before it (listed either way).
    fn finish(self, notes: &mut Notes, taken: &mut Taken) -> Option<Vrrp> {
        let block = self.block;
        let place = block.at.place();
        let written = &self.written_name;
        let (Some(interface), Some(vrid), false) = (
            self.interface.clone(),
            self.vrid,
            self.virtual_addresses.is_empty(),
        ) else {
            let missing: Vec<&str> = [
                (self.interface.is_none(), "interface"),
                (self.vrid.is_none(), "virtual_router_id"),
                (self.virtual_addresses.is_empty(), "virtual address"),
            ]
            .into_iter()
            .filter_map(|(missing, what)| missing.then_some(what))
            .collect();
            notes.skip(
                block,
                format!(
                    "lbd's vrrp needs an interface, a virtual_router_id and a virtual \
                     address; this instance has no {}",
                    missing.join(", no ")
                ),
            );
            return None;
        };
        let name = convert::valid_name(written);
        if name.is_empty() {
            notes.skip(block, "it has no name");
            return None;
        }
        if let Some(earlier) = taken.names.get(&name) {
            notes.skip(
                block,
                format!("its name, as lbd writes it, is {name}, as is the instance's at {earlier}"),
            );
            return None;
        }
        let ipv6 = self.ipv6 == Some(true);
        let router = (interface.clone(), vrid, ipv6);
        if let Some(earlier) = taken.routers.get(&router) {
            notes.skip(
                block,
                format!(
                    "vrid {vrid} on {interface} for {} is also the instance's at {earlier}; \
                     lbd has one router per interface, vrid and family",
                    self.family_name()
                ),
            );
            return None;
        }
        let mut virtual_addresses = Vec::new();
        for (virtual_address, entry) in &self.virtual_addresses {
            match taken.addresses.get(&virtual_address.address) {
                Some(owner) => notes.skip(
                    entry,
                    format!(
                        "{} is also a virtual address of vrrp_instance {owner}: in lbd one \
                         router carries each address",
                        virtual_address.address
                    ),
                ),
                None => virtual_addresses.push(*virtual_address),
            }
        }
        if virtual_addresses.is_empty() {
            notes.skip(
                block,
                "each of its virtual addresses is an earlier instance's; lbd needs one",
            );
            return None;
        }

        let source_address = self.source_address(notes, &virtual_addresses, taken);

        let mut comment = format!("{place}: vrrp_instance {written}");
        if name != *written {
            comment.push_str(&format!(
                ", named {name} (lbd's names are A-Za-z0-9_-, at most 32)"
            ));
        }
        let (priority, track_interfaces) = self.priority_and_tracks(notes, &mut comment);
        let hooks = self.hooks(notes);

        taken.names.insert(name.clone(), place.clone());
        taken.routers.insert(router, place);
        for virtual_address in &virtual_addresses {
            taken
                .addresses
                .insert(virtual_address.address, written.clone());
        }
        Some(Vrrp {
            comment,
            name,
            interface,
            vrid,
            priority,
            advert_interval: self.advert_interval,
            preempt: self.preempt,
            preempt_delay: self.preempt_delay,
            initial_state: self.initial_state,
            unicast_peers: self.unicast_peers,
            source_address,
            virtual_addresses,
            track_interfaces,
            sync_group: None,
            hooks,
        })
    }

    /// The adverts' source address, if keepalived's is one lbd takes: of the instance's
    /// family, no router's virtual address, and link-local for IPv6 multicast.
    fn source_address(
        &self,
        notes: &mut Notes,
        virtual_addresses: &[VirtualAddress],
        taken: &Taken,
    ) -> Option<IpAddr> {
        let (address, directive) = self.source_address?;
        let ipv6 = self.ipv6 == Some(true);
        let problem = if address.is_ipv6() != ipv6 {
            Some(format!(
                "{address} is not of the instance's family ({})",
                self.family_name()
            ))
        } else if let Some(problem) = convert::unusable(address)
            // IPv6 multicast adverts come from a link-local address.
            .filter(|_| !matches!(address, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        {
            Some(format!("{address} is {problem}"))
        } else if virtual_addresses.iter().any(|own| own.address == address)
            || taken.addresses.contains_key(&address)
        {
            Some(format!(
                "{address} is a virtual address: lbd sends adverts from one of the node's own"
            ))
        } else if let IpAddr::V6(v6) = address
            && self.unicast_peers.is_empty()
            && !v6.is_unicast_link_local()
        {
            Some(format!(
                "{address} is not link-local: lbd sends IPv6 multicast adverts from the \
                 interface's link-local address, as RFC 5798 says"
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => {
                notes.skip(directive, problem);
                None
            }
            None => Some(address),
        }
    }

    /// The priority to write and the tracked interfaces with lbd's weights; positive
    /// weights raise the priority (see the module's doc), with a line of `comment` saying so.
    fn priority_and_tracks(
        &self,
        notes: &mut Notes,
        comment: &mut String,
    ) -> (Option<u8>, Vec<TrackInterface>) {
        let base = self.priority.unwrap_or(DEFAULT_PRIORITY);
        // An owner's priority never moves, in keepalived as in lbd: a weighted entry does
        // nothing there (lbd refuses it, so it is listed); one without a weight still faults.
        if base == OWNER_PRIORITY {
            let mut tracks = Vec::new();
            for (track, entry) in &self.track_interfaces {
                if track.weight == 0 {
                    tracks.push(track.clone());
                } else {
                    notes.skip(
                        entry,
                        format!(
                            "weight {} on an address owner (priority 255) never applies, in \
                             keepalived as in lbd (which refuses it)",
                            track.weight
                        ),
                    );
                }
            }
            return (self.priority, tracks);
        }
        let raised: i32 = self
            .track_interfaces
            .iter()
            .map(|(track, _)| track.weight.max(0))
            .sum();
        let fits = i32::from(base) + raised <= MAX_TRACKED_PRIORITY;
        let mut tracks = Vec::new();
        let mut turned = Vec::new();
        for (track, entry) in &self.track_interfaces {
            if track.weight <= 0 {
                tracks.push(track.clone());
            } else if fits {
                turned.push(format!("{} {}", track.name, track.weight));
                tracks.push(TrackInterface {
                    name: track.name.clone(),
                    weight: -track.weight,
                });
            } else {
                notes.skip(
                    entry,
                    format!(
                        "keepalived adds weight {} to the priority while {} is up; lbd moves \
                         the priority while a link is down, so the priority would start at \
                         {base} plus the positive weights, {}, beyond 254",
                        track.weight,
                        track.name,
                        i32::from(base) + raised
                    ),
                );
            }
        }
        if turned.is_empty() {
            return (self.priority, tracks);
        }
        let priority = (i32::from(base) + raised) as u8;
        comment.push_str(&format!(
            "\npriority {priority}: keepalived's {base} plus the weights it adds while a link \
             is up ({});\nlbd moves the priority while a link is down, so those weights are \
             negated",
            turned.join(", ")
        ));
        (Some(priority), tracks)
    }

    /// The hooks: each `notify_STATE`'s command, else `notify`'s.
    fn hooks(&self, notes: &mut Notes) -> Vec<(&'static str, String)> {
        let mut hooks = Vec::new();
        let mut overridden = Vec::new();
        for ((keyword, hook), command) in HOOKS.iter().zip(&self.hooks) {
            match (command, &self.notify) {
                (Some(command), Some(_)) => {
                    overridden.push(*keyword);
                    hooks.push((*hook, command.clone()));
                }
                (Some(command), None) | (None, Some((command, _))) => {
                    hooks.push((*hook, command.clone()));
                }
                (None, None) => {}
            }
        }
        if let (Some((_, directive)), false) = (&self.notify, overridden.is_empty()) {
            notes.skip(
                directive,
                format!(
                    "keepalived runs notify as well as {} on that state; lbd runs one hook per \
                     state, there the notify_STATE command (notify's on the others): call \
                     notify's command from it",
                    overridden.join(" and ")
                ),
            );
        }
        hooks
    }
}

/// What the instances converted so far hold, which a later one may not.
#[derive(Default)]
struct Taken {
    /// lbd's name → where its instance is written.
    names: HashMap<String, String>,
    /// (interface, vrid, IPv6) → where its instance is written.
    routers: HashMap<(String, u8, bool), String>,
    /// Virtual address → its instance's name as written.
    addresses: HashMap<IpAddr, String>,
}
