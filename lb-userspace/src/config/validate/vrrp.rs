//! `vrrp` and `sync`: the virtual routers this node shares with its peer, and connection sync
//! with that peer.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use super::Validator;
use crate::config::{
    ConfigError, MAX_INTERFACE_NAME_LEN, ServiceConfig,
    duration::parse_duration,
    ha::{
        DEFAULT_ADVERT_INTERVAL, DEFAULT_SYNC_PORT, Hooks, InitialState, SyncConfig,
        TrackInterface, VirtualAddress, VrrpInstanceConfig,
    },
    is_valid_instance_name, is_valid_interface_name,
    raw::{RawHooks, RawSync, RawTrackInterface, RawVrrpInstance},
};

/// VRRPv3's Max Adver Int: 12 bits of centiseconds.
const MAX_ADVERT_INTERVAL: Duration = Duration::from_millis(40_950);
const MIN_ADVERT_INTERVAL: Duration = Duration::from_millis(10);
/// Why a router's `source_address` is never a virtual address.
const NOT_VIRTUAL: &str = "adverts come from an address the node keeps, not one that moves \
                           with the master role";

/// keepalived caps its preempt_delay at an hour too.
const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(3600);

impl Validator<'_> {
    pub(super) fn vrrp(
        &self,
        raw: Option<Vec<RawVrrpInstance>>,
        services: &[ServiceConfig],
    ) -> Result<Vec<VrrpInstanceConfig>, ConfigError> {
        let raw = raw.unwrap_or_default();
        let mut instances: Vec<VrrpInstanceConfig> = Vec::with_capacity(raw.len());
        // Every virtual address, with the instance that has it.
        let mut owners: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for (index, raw) in raw.into_iter().enumerate() {
            let key = format!("vrrp[{index}]");
            let instance = self.vrrp_instance(raw, &key)?;
            if let Some(first) = instances
                .iter()
                .position(|other| other.name == instance.name)
            {
                return Err(self.invalid(
                    &format!("{key}.name"),
                    format!(
                        "instance name {:?} is used twice (also vrrp[{first}])",
                        instance.name
                    ),
                ));
            }
            if let Some(first) = instances.iter().position(|other| {
                other.interface == instance.interface
                    && other.vrid == instance.vrid
                    && other.is_ipv6() == instance.is_ipv6()
            }) {
                return Err(self.invalid(
                    &format!("{key}.vrid"),
                    format!(
                        "vrid {} on {} is used twice for {} (also vrrp[{first}]): a virtual \
                         router is one per interface, vrid and address family",
                        instance.vrid,
                        instance.interface,
                        if instance.is_ipv6() { "IPv6" } else { "IPv4" }
                    ),
                ));
            }
            for (position, address) in instance.virtual_addresses.iter().enumerate() {
                if let Some(other) = instances
                    .iter()
                    .position(|other| other.source_address == Some(address.address))
                {
                    return Err(self.invalid(
                        &format!("{key}.virtual_addresses[{position}]"),
                        format!(
                            "{} is vrrp[{other}]'s source_address: {NOT_VIRTUAL}",
                            address.address
                        ),
                    ));
                }
                if let Some(first) = owners.insert(address.address, index) {
                    return Err(self.invalid(
                        &format!("{key}.virtual_addresses[{position}]"),
                        format!(
                            "{} is also a virtual address of vrrp[{first}]: one router owns \
                             each address",
                            address.address
                        ),
                    ));
                }
            }
            if let Some(source) = instance.source_address
                && let Some(&owner) = owners.get(&source)
            {
                return Err(self.invalid(
                    &format!("{key}.source_address"),
                    format!("{source} is a virtual address of vrrp[{owner}]: {NOT_VIRTUAL}"),
                ));
            }
            instances.push(instance);
        }
        // A group of one would move nothing with it: a typo in a member's group name.
        for (index, instance) in instances.iter().enumerate() {
            if let Some(group) = &instance.sync_group
                && instances
                    .iter()
                    .filter(|other| other.sync_group.as_ref() == Some(group))
                    .count()
                    == 1
            {
                return Err(self.invalid(
                    &format!("vrrp[{index}].sync_group"),
                    format!(
                        "{} is the only router of sync group {group:?}: a group moves routers \
                         together, so it needs two or more (is a member's group misspelt?)",
                        instance.name
                    ),
                ));
            }
        }
        // A check's source moves with a router's role: the backup's checks would fail, and a
        // router tracking them would fault because another is not master.
        for (index, service) in services.iter().enumerate() {
            let source = service.health_check.as_ref().and_then(|check| check.source);
            if let Some((address, &owner)) =
                source.and_then(|address| Some((address, owners.get(&address)?)))
            {
                return Err(self.invalid(
                    &format!("services[{index}].health_check.source"),
                    format!(
                        "{address} is a virtual address of vrrp[{owner}], held only while that \
                         router is master: checks must come from an address the node keeps"
                    ),
                ));
            }
        }
        // A tracked service must be on the router: its VIP among the virtual addresses.
        for (index, instance) in instances.iter().enumerate() {
            if instance.track_services.is_some()
                && !services
                    .iter()
                    .any(|service| owners.get(&service.vip) == Some(&index))
            {
                return Err(self.invalid(
                    &format!("vrrp[{index}].track_services"),
                    format!(
                        "no service has a VIP among {}'s virtual addresses, so there is \
                         nothing to track",
                        instance.name
                    ),
                ));
            }
        }
        Ok(instances)
    }

    fn vrrp_instance(
        &self,
        raw: RawVrrpInstance,
        key: &str,
    ) -> Result<VrrpInstanceConfig, ConfigError> {
        let name_key = format!("{key}.name");
        let name = self.required(raw.name, &name_key, "the instance's name, e.g. VI_1")?;
        if !is_valid_instance_name(&name) {
            return Err(self.invalid(
                &name_key,
                format!("invalid name {name:?}: use 1 to 32 of A-Z a-z 0-9 _ -"),
            ));
        }
        let interface_key = format!("{key}.interface");
        let interface = self.required(
            raw.interface,
            &interface_key,
            "the interface adverts go out of and the addresses are added to",
        )?;
        self.check_interface_name(&interface, &interface_key)?;

        let vrid_key = format!("{key}.vrid");
        let vrid = self.required(raw.vrid, &vrid_key, "the virtual router id, 1 to 255")?;
        let vrid = u8::try_from(vrid)
            .ok()
            .filter(|vrid| *vrid != 0)
            .ok_or_else(|| {
                self.invalid(&vrid_key, format!("vrid {vrid} is out of range 1..=255"))
            })?;

        let priority_key = format!("{key}.priority");
        let priority = match raw.priority {
            Some(priority) => u8::try_from(priority)
                .ok()
                .filter(|priority| *priority != 0)
                .ok_or_else(|| {
                    self.invalid(
                        &priority_key,
                        format!(
                            "priority {priority} is out of range 1..=255 (255: this node owns \
                             the addresses; 0 is what a stopping master sends)"
                        ),
                    )
                })?,
            // keepalived's default.
            None => 100,
        };

        let interval_key = format!("{key}.advert_interval");
        let advert_interval = match raw.advert_interval {
            Some(text) => {
                let value = parse_duration(&text)
                    .map_err(|message| self.invalid(&interval_key, message))?;
                if !(MIN_ADVERT_INTERVAL..=MAX_ADVERT_INTERVAL).contains(&value) {
                    return Err(self.invalid(
                        &interval_key,
                        format!(
                            "{text} is out of range: VRRPv3 sends 10ms to 40.95s (12 bits of \
                             centiseconds)"
                        ),
                    ));
                }
                if value.as_nanos() % 10_000_000 != 0 {
                    return Err(self.invalid(
                        &interval_key,
                        format!("{text}: VRRPv3 counts the interval in whole centiseconds (10ms)"),
                    ));
                }
                value
            }
            None => DEFAULT_ADVERT_INTERVAL,
        };

        let delay_key = format!("{key}.preempt_delay");
        let preempt_delay = match raw.preempt_delay {
            Some(text) => {
                let value =
                    parse_duration(&text).map_err(|message| self.invalid(&delay_key, message))?;
                if value > MAX_PREEMPT_DELAY {
                    return Err(
                        self.invalid(&delay_key, format!("{text} is out of range: at most 1h"))
                    );
                }
                value
            }
            None => Duration::ZERO,
        };
        let preempt = raw.preempt.unwrap_or(true);

        let state_key = format!("{key}.initial_state");
        let initial_state = match raw.initial_state.as_deref() {
            None | Some("backup") => InitialState::Backup,
            Some("master") => InitialState::Master,
            Some(other) => {
                return Err(self.invalid(
                    &state_key,
                    format!("unknown initial_state {other:?} (expected one of master, backup)"),
                ));
            }
        };

        let addresses_key = format!("{key}.virtual_addresses");
        let texts = self.required(
            raw.virtual_addresses,
            &addresses_key,
            "the addresses this router carries, e.g. [192.0.2.10/32]",
        )?;
        if texts.is_empty() {
            return Err(self.invalid(&addresses_key, "needs at least one address"));
        }
        let mut virtual_addresses: Vec<VirtualAddress> = Vec::with_capacity(texts.len());
        for (position, text) in texts.into_iter().enumerate() {
            let item_key = format!("{addresses_key}[{position}]");
            let address = self.virtual_address(&text, &item_key)?;
            if let Some(first) = virtual_addresses.first()
                && first.address.is_ipv6() != address.address.is_ipv6()
            {
                return Err(self.invalid(
                    &item_key,
                    format!(
                        "{} is not of the family of {} (one VRRPv3 router carries one family; \
                         use a second instance)",
                        address.address, first.address
                    ),
                ));
            }
            if let Some(earlier) = virtual_addresses
                .iter()
                .position(|earlier| earlier.address == address.address)
            {
                return Err(self.invalid(
                    &item_key,
                    format!("{} is listed twice (also [{earlier}])", address.address),
                ));
            }
            virtual_addresses.push(address);
        }
        let ipv6 = virtual_addresses[0].address.is_ipv6();

        let mut unicast_peers = Vec::new();
        for (position, text) in raw
            .unicast_peers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let peer_key = format!("{key}.unicast_peers[{position}]");
            let peer = self.address(Some(text), &peer_key, "unicast peer")?;
            if peer.is_ipv6() != ipv6 {
                return Err(self.invalid(
                    &peer_key,
                    format!(
                        "{peer} is not of the virtual addresses' family (adverts of an {} \
                         router go over {})",
                        if ipv6 { "IPv6" } else { "IPv4" },
                        if ipv6 { "IPv6" } else { "IPv4" }
                    ),
                ));
            }
            if unicast_peers.contains(&peer) {
                return Err(self.invalid(&peer_key, format!("{peer} is listed twice")));
            }
            unicast_peers.push(peer);
        }

        let source_key = format!("{key}.source_address");
        let source_address = match raw.source_address {
            Some(text) => {
                // Not `address`: IPv6 multicast adverts need a link-local source.
                let source: IpAddr = text.parse().map_err(|_| {
                    self.invalid(&source_key, format!("invalid IP address {text:?}"))
                })?;
                let broadcast = matches!(source, IpAddr::V4(v4) if v4.is_broadcast());
                let mapped = matches!(source, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
                let refusal = if source.is_unspecified()
                    || source.is_multicast()
                    || source.is_loopback()
                    || broadcast
                {
                    Some(format!("{source} cannot be a packet's source"))
                } else if mapped {
                    Some(format!(
                        "{source} is an IPv4-mapped IPv6 address, which no interface has"
                    ))
                } else if unicast_peers.contains(&source) {
                    Some(format!(
                        "{source} is a unicast peer's address: adverts come from this node's own"
                    ))
                } else if source.is_ipv6() != ipv6 {
                    Some(format!(
                        "{source} is not of the virtual addresses' family (adverts of an {} \
                         router go over {0})",
                        if ipv6 { "IPv6" } else { "IPv4" }
                    ))
                } else if virtual_addresses.iter().any(|own| own.address == source) {
                    Some(format!(
                        "{source} is a virtual address of this router: {NOT_VIRTUAL}"
                    ))
                } else if let IpAddr::V6(v6) = source
                    && unicast_peers.is_empty()
                    && !v6.is_unicast_link_local()
                {
                    Some(format!(
                        "{source} is not link-local: IPv6 multicast adverts come from the \
                         interface's link-local address (RFC 5798 §5.1.2.1)"
                    ))
                } else {
                    None
                };
                if let Some(refusal) = refusal {
                    return Err(self.invalid(&source_key, refusal));
                }
                Some(source)
            }
            None => None,
        };

        let mut track_interfaces: Vec<TrackInterface> = Vec::new();
        for (position, raw) in raw
            .track_interfaces
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let item_key = format!("{key}.track_interfaces[{position}]");
            let (name, weight) = match raw {
                RawTrackInterface::Name(name) => (name, 0),
                RawTrackInterface::Weighted(weighted) => {
                    let name_key = format!("{item_key}.name");
                    let name = self.required(weighted.name, &name_key, "an interface name")?;
                    let weight = self.weight(weighted.weight, &format!("{item_key}.weight"))?;
                    (name, weight)
                }
            };
            self.check_interface_name(&name, &item_key)?;
            if track_interfaces.iter().any(|tracked| tracked.name == name) {
                return Err(self.invalid(&item_key, format!("{name:?} is listed twice")));
            }
            track_interfaces.push(TrackInterface { name, weight });
        }

        let track_services = match raw.track_services {
            Some(track) => {
                Some(self.weight(track.weight, &format!("{key}.track_services.weight"))?)
            }
            None => None,
        };
        let sync_group = match raw.sync_group {
            Some(group) if is_valid_instance_name(&group) => Some(group),
            Some(group) => {
                return Err(self.invalid(
                    &format!("{key}.sync_group"),
                    format!("invalid group name {group:?}: use 1 to 32 of A-Z a-z 0-9 _ -"),
                ));
            }
            None => None,
        };
        let hooks = self.hooks(raw.hooks, &format!("{key}.hooks"))?;
        if priority == 255 {
            // keepalived ignores them silently; a weight that never applies is a mistake.
            let weighted = track_interfaces
                .iter()
                .position(|tracked| tracked.weight != 0)
                .map(|position| format!("{key}.track_interfaces[{position}].weight"))
                .or_else(|| {
                    track_services
                        .filter(|weight| *weight != 0)
                        .map(|_| format!("{key}.track_services.weight"))
                });
            if let Some(weight_key) = weighted {
                return Err(self.invalid(
                    &weight_key,
                    "an address owner (priority 255) keeps its priority, so a weight never \
                     applies: use weight 0 (FAULT) or a priority below 255",
                ));
            }
        }

        Ok(VrrpInstanceConfig {
            name,
            interface,
            vrid,
            priority,
            advert_interval,
            preempt,
            preempt_delay,
            initial_state,
            unicast_peers,
            source_address,
            virtual_addresses,
            track_interfaces,
            track_services,
            sync_group,
            hooks,
        })
    }

    fn check_interface_name(&self, name: &str, key: &str) -> Result<(), ConfigError> {
        if is_valid_interface_name(name) {
            Ok(())
        } else {
            Err(self.invalid(
                key,
                format!(
                    "invalid interface name {name:?}: Linux interface names are 1 to \
                     {MAX_INTERFACE_NAME_LEN} bytes without '/', ':' or whitespace"
                ),
            ))
        }
    }

    /// A track weight: -254..=254, as keepalived's.
    fn weight(&self, raw: Option<i64>, key: &str) -> Result<i32, ConfigError> {
        match raw {
            None => Ok(0),
            Some(weight) if (-254..=254).contains(&weight) => Ok(weight as i32),
            Some(weight) => Err(self.invalid(
                key,
                format!(
                    "weight {weight} is out of range -254..=254 (how far the priority moves; \
                     0: go to FAULT)"
                ),
            )),
        }
    }

    /// `ADDR` or `ADDR/PREFIX`.
    fn virtual_address(&self, text: &str, key: &str) -> Result<VirtualAddress, ConfigError> {
        let (address_text, prefix_text) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = self.address(Some(address_text.to_owned()), key, "virtual")?;
        let max = if address.is_ipv6() { 128 } else { 32 };
        let prefix = match prefix_text {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| (1..=max).contains(prefix))
                .ok_or_else(|| {
                    self.invalid(key, format!("{text}: the prefix length must be 1 to {max}"))
                })?,
        };
        Ok(VirtualAddress { address, prefix })
    }

    fn hooks(&self, raw: Option<RawHooks>, key: &str) -> Result<Hooks, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Hooks::default());
        };
        let command = |text: Option<String>,
                       name: &str|
         -> Result<Option<Vec<String>>, ConfigError> {
            let Some(text) = text else {
                return Ok(None);
            };
            let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
            let hook_key = format!("{key}.{name}");
            match words.first() {
                None => Err(self.invalid(&hook_key, "must name a program")),
                Some(program) if !program.starts_with('/') => Err(self.invalid(
                    &hook_key,
                    format!("{program:?} is not an absolute path (lbd runs hooks without a shell or PATH)"),
                )),
                Some(_) => Ok(Some(words)),
            }
        };
        Ok(Hooks {
            on_master: command(raw.on_master, "on_master")?,
            on_backup: command(raw.on_backup, "on_backup")?,
            on_fault: command(raw.on_fault, "on_fault")?,
            on_stop: command(raw.on_stop, "on_stop")?,
        })
    }

    pub(super) fn sync(
        &self,
        raw: Option<RawSync>,
        vrrp: &[VrrpInstanceConfig],
    ) -> Result<Option<SyncConfig>, ConfigError> {
        if raw.is_none() && !self.source_map.contains("sync") {
            return Ok(None);
        }
        let raw = self.required(raw, "sync", "{peer: ADDR, port: PORT}")?;
        if vrrp.is_empty() {
            return Err(self.invalid_key(
                "sync",
                "connection sync is with the VRRP peer: it needs a vrrp instance",
            ));
        }
        let peer = self.address(raw.peer, "sync.peer", "sync peer")?;
        let port = match raw.port {
            Some(port) => match self.port(port, "sync.port")? {
                0 => return Err(self.invalid("sync.port", "the port must not be 0")),
                port => port,
            },
            None => DEFAULT_SYNC_PORT,
        };
        Ok(Some(SyncConfig { peer, port }))
    }
}
