//! `services` and their `reals`.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use lb_common::{MAX_LEAST_CONN_REALS, MAX_LOCAL_SOURCES, RING_SLOTS};

use super::Validator;
use crate::{
    config::{
        ConfigError, DEFAULT_GUE_PORT, Forward, Limits, MAX_WEIGHT, OnFailure, PersistenceConfig,
        Protocol, RealConfig, Scheduler, ServiceConfig, Tunnel,
        duration::parse_duration,
        raw::{RawNetmask, RawReal, RawService},
        socket_text,
    },
    schedule::{self, maglev},
};

impl Validator<'_> {
    pub(super) fn services(
        &self,
        raw: Vec<RawService>,
        limits: &Limits,
    ) -> Result<Vec<ServiceConfig>, ConfigError> {
        let mut services: Vec<ServiceConfig> = Vec::with_capacity(raw.len());
        let mut index_by_identity: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        for (index, raw_service) in raw.into_iter().enumerate() {
            let key = format!("services[{index}]");
            let service = self.service(raw_service, &key)?;
            let identity = (service.vip, service.port, service.protocol);
            if let Some(first) = index_by_identity.insert(identity, index) {
                return Err(self.invalid(
                    &key,
                    format!(
                        "duplicate service: services[{first}] and services[{index}] are both {}",
                        service.name()
                    ),
                ));
            }
            services.push(service);
        }
        self.snat_pools_hold_no_vip(&services)?;
        self.health_addresses_are_no_vip(&services)?;

        // Ids start at 1 because id 0 means "none" in the id-indexed maps.
        if services.len() >= limits.services as usize {
            return Err(self.invalid_key(
                "services",
                format!(
                    "{} configured, but limits.services = {} leaves room for {} (service ids \
                     start at 1; 0 means none); raise limits.services",
                    services.len(),
                    limits.services,
                    limits.services - 1
                ),
            ));
        }
        // A sorry server takes a real id too.
        let total_reals: usize = services
            .iter()
            .map(|service| service.reals.len() + usize::from(service.sorry_server.is_some()))
            .sum();
        if total_reals >= limits.reals as usize {
            return Err(self.invalid_key(
                "services",
                format!(
                    "{total_reals} reals (sorry servers included) configured over all services, \
                     but limits.reals = {} leaves room for {} (real ids start at 1; 0 means \
                     none); raise limits.reals",
                    limits.reals,
                    limits.reals - 1
                ),
            ));
        }
        // Every service's two table halves share one map; a config that does not fit must
        // fail here (and in `lbd --check`), not at start-up.
        let needed: u64 = services
            .iter()
            .map(|service| 2 * u64::from(schedule::capacity(service)))
            .sum();
        if needed >= u64::from(limits.table_slots) {
            return Err(self.invalid_key(
                "services",
                format!(
                    "the services' schedule tables need {needed} slots (two halves each: \
                     1024 per rr/wrr/sh ring, the table size per mh service, two per real for \
                     lc/wlc), but limits.table_slots = {}; raise it",
                    limits.table_slots
                ),
            ));
        }
        Ok(services)
    }

    fn service(&self, raw: RawService, key: &str) -> Result<ServiceConfig, ConfigError> {
        let vip_key = format!("{key}.vip");
        let vip = self.address(raw.vip, &vip_key, "VIP")?;

        let port_key = format!("{key}.port");
        let port = self.port(
            self.required(raw.port, &port_key, "0 means all ports")?,
            &port_key,
        )?;

        let protocol_key = format!("{key}.protocol");
        let protocol = self.parse_word(
            &self.required(raw.protocol, &protocol_key, "tcp or udp")?,
            &protocol_key,
        )?;
        let scheduler = self.word(raw.scheduler, &format!("{key}.scheduler"), Scheduler::Wrr)?;
        let forward = self.word(raw.forward, &format!("{key}.forward"), Forward::Dr)?;
        let persistence = self.persistence(raw.persistence, raw.persistence_netmask, vip, key)?;
        let mh_table_size = self.mh_table_size(raw.mh_table_size, scheduler, key)?;
        // `tunnel`, `snat_pool` and `tunnel_source` are accepted whatever the reals' methods
        // (only the reals that need them use them), so that a service keeps its settings while
        // its reals change method.
        let tunnel = self.word(raw.tunnel, &format!("{key}.tunnel"), Tunnel::Ipip)?;
        let gue_port = self.gue_port(raw.gue_port, tunnel, key)?;
        let snat_pool = self.snat_pool(raw.snat_pool, vip, key)?;
        let tunnel_source = self.tunnel_source(raw.tunnel_source, key)?;

        let mut service = ServiceConfig {
            vip,
            port,
            protocol,
            scheduler,
            forward,
            tunnel,
            gue_port,
            snat_pool,
            tunnel_source,
            persistence,
            mh_table_size,
            health_check: None,
            on_failure: OnFailure::Remove,
            sorry_server: None,
            reals: Vec::new(),
        };
        for (index, raw_real) in raw.reals.unwrap_or_default().into_iter().enumerate() {
            let real_key = format!("{key}.reals[{index}]");
            let real = self.real(raw_real, &real_key, &service)?;
            if let Some(first) = service
                .reals
                .iter()
                .position(|other| (other.address, other.port) == (real.address, real.port))
            {
                return Err(self.invalid(
                    &real_key,
                    format!(
                        "duplicate real: {key}.reals[{first}] and {key}.reals[{index}] are both {}",
                        socket_text(real.address, real.port)
                    ),
                ));
            }
            service.reals.push(real);
        }
        // What the reconciler will build from it must fit the ring, or the config passes
        // `lbd --check` and fails at start-up.
        let weighted = service.reals.iter().filter(|real| real.weight > 0).count();
        if weighted > RING_SLOTS as usize {
            return Err(self.invalid(
                &format!("{key}.reals"),
                format!(
                    "{weighted} reals with a non-zero weight; a service's schedule holds at \
                     most {RING_SLOTS} (drain the others with weight 0, or split the service)"
                ),
            ));
        }
        let least_connection = matches!(scheduler, Scheduler::Lc | Scheduler::Wlc);
        if least_connection && weighted > MAX_LEAST_CONN_REALS as usize {
            return Err(self.invalid(
                &format!("{key}.reals"),
                format!(
                    "{weighted} reals with a non-zero weight; {} compares at most \
                     {MAX_LEAST_CONN_REALS} per new flow (use mh or wrr for more)",
                    scheduler.name()
                ),
            ));
        }
        service.health_check = self.health_check(raw.health_check, &service, key)?;
        service.on_failure = self.on_failure(raw.on_failure, key)?;
        service.sorry_server = self.sorry_server(raw.sorry_server, &service, key)?;
        Ok(service)
    }

    fn persistence(
        &self,
        timeout: Option<String>,
        netmask: Option<RawNetmask>,
        vip: IpAddr,
        key: &str,
    ) -> Result<Option<PersistenceConfig>, ConfigError> {
        let full = if vip.is_ipv4() { 32 } else { 128 };
        let Some(text) = timeout else {
            if netmask.is_some() {
                return Err(self.invalid_key(
                    &format!("{key}.persistence_netmask"),
                    "only means something with `persistence` (how long a client sticks)",
                ));
            }
            return Ok(None);
        };
        let timeout_key = format!("{key}.persistence");
        let timeout =
            parse_duration(&text).map_err(|message| self.invalid(&timeout_key, message))?;
        if timeout < Duration::from_secs(1) || timeout.subsec_nanos() != 0 {
            return Err(self.invalid(
                &timeout_key,
                format!("{text}: persistence is whole seconds, at least 1s (as ipvsadm -p)"),
            ));
        }
        if timeout.as_secs() > u64::from(u32::MAX) {
            return Err(self.invalid(&timeout_key, format!("{text} is too long")));
        }
        let netmask_key = format!("{key}.persistence_netmask");
        let prefix = match netmask {
            None => full,
            Some(RawNetmask::Prefix(bits)) => u8::try_from(bits)
                .ok()
                .filter(|bits| *bits <= full)
                .ok_or_else(|| {
                    self.invalid(
                        &netmask_key,
                        format!(
                            "prefix length {bits} is out of range 0..={full} for the VIP's family"
                        ),
                    )
                })?,
            Some(RawNetmask::Text(text)) => {
                let mask: Ipv4Addr =
                    text.parse().ok().filter(|_| vip.is_ipv4()).ok_or_else(|| {
                        self.invalid(
                            &netmask_key,
                            format!(
                                "{text:?}: give a prefix length (like 24), or for an IPv4 VIP a \
                             netmask (like 255.255.255.0)"
                            ),
                        )
                    })?;
                let bits = u32::from(mask);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return Err(self.invalid(
                        &netmask_key,
                        format!("{text} is not a netmask (its one bits must come first)"),
                    ));
                }
                bits.leading_ones() as u8
            }
        };
        Ok(Some(PersistenceConfig { timeout, prefix }))
    }

    fn mh_table_size(
        &self,
        raw: Option<i64>,
        scheduler: Scheduler,
        key: &str,
    ) -> Result<u32, ConfigError> {
        let size_key = format!("{key}.mh_table_size");
        let Some(size) = raw else {
            return Ok(maglev::DEFAULT_TABLE_SIZE);
        };
        if scheduler != Scheduler::Mh {
            return Err(self.invalid_key(&size_key, "only the mh scheduler has a table size"));
        }
        u32::try_from(size)
            .ok()
            .filter(|size| {
                (maglev::MIN_TABLE_SIZE..=maglev::MAX_TABLE_SIZE).contains(size)
                    && maglev::is_prime(*size)
            })
            .ok_or_else(|| {
                self.invalid(
                    &size_key,
                    format!(
                        "{size} is not a prime between {} and {} (Maglev's table size must be \
                         prime; 65537 is the default)",
                        maglev::MIN_TABLE_SIZE,
                        maglev::MAX_TABLE_SIZE
                    ),
                )
            })
    }

    /// `gue_port`: only with `tunnel: gue`; a UDP port other than 0.
    fn gue_port(&self, raw: Option<i64>, tunnel: Tunnel, key: &str) -> Result<u16, ConfigError> {
        let port_key = format!("{key}.gue_port");
        let Some(value) = raw else {
            return Ok(DEFAULT_GUE_PORT);
        };
        if tunnel != Tunnel::Gue {
            return Err(self.invalid_key(
                &port_key,
                format!(
                    "only means something with `tunnel: gue` (this service's tunnel is {})",
                    tunnel.name()
                ),
            ));
        }
        match self.port(value, &port_key)? {
            0 => Err(self.invalid(&port_key, "GUE needs a UDP port other than 0")),
            port => Ok(port),
        }
    }

    /// `snat_pool`: distinct unicast addresses in the VIP's family (full-NAT reals are in it),
    /// at most [`MAX_LOCAL_SOURCES`].
    fn snat_pool(
        &self,
        raw: Option<Vec<String>>,
        vip: IpAddr,
        key: &str,
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let pool_key = format!("{key}.snat_pool");
        let raw = raw.unwrap_or_default();
        if raw.len() > MAX_LOCAL_SOURCES {
            return Err(self.invalid(
                &pool_key,
                format!(
                    "{} addresses; a full-NAT real can use at most {MAX_LOCAL_SOURCES}",
                    raw.len()
                ),
            ));
        }
        let mut pool: Vec<IpAddr> = Vec::with_capacity(raw.len());
        for (index, text) in raw.into_iter().enumerate() {
            let entry_key = format!("{pool_key}[{index}]");
            let address = self.address(Some(text), &entry_key, "local (SNAT)")?;
            if address.is_ipv4() != vip.is_ipv4() {
                return Err(self.invalid(
                    &entry_key,
                    format!(
                        "{address} is {} but the VIP {vip} is {}; full-NAT reals are in the \
                         VIP's family, so no real could use it",
                        family_name(address),
                        family_name(vip)
                    ),
                ));
            }
            if let Some(first) = pool.iter().position(|other| *other == address) {
                return Err(self.invalid(
                    &entry_key,
                    format!("{address} is listed twice (also {pool_key}[{first}])"),
                ));
            }
            pool.push(address);
        }
        Ok(pool)
    }

    /// A local address of full NAT is where the reals' replies come back to; were it a VIP,
    /// a reply to one of its local ports could be taken for a client's packet to that VIP.
    fn snat_pools_hold_no_vip(&self, services: &[ServiceConfig]) -> Result<(), ConfigError> {
        for (index, service) in services.iter().enumerate() {
            for (entry, address) in service.snat_pool.iter().enumerate() {
                if let Some(owner) = services.iter().position(|other| other.vip == *address) {
                    return Err(self.invalid(
                        &format!("services[{index}].snat_pool[{entry}]"),
                        format!(
                            "{address} is the VIP of services[{owner}]; full NAT's local \
                             addresses must be the balancer's own, not a VIP"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `tunnel_source`: at most one unicast address per family.
    fn tunnel_source(
        &self,
        raw: Option<Vec<String>>,
        key: &str,
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let sources_key = format!("{key}.tunnel_source");
        let mut sources: Vec<IpAddr> = Vec::new();
        for (index, text) in raw.unwrap_or_default().into_iter().enumerate() {
            let entry_key = format!("{sources_key}[{index}]");
            let address = self.address(Some(text), &entry_key, "tunnel source")?;
            if let Some(first) = sources
                .iter()
                .position(|other| other.is_ipv4() == address.is_ipv4())
            {
                return Err(self.invalid(
                    &entry_key,
                    format!(
                        "a second {} address ({sources_key}[{first}] is one): a tunnel has one \
                         outer source per family",
                        family_name(address)
                    ),
                ));
            }
            sources.push(address);
        }
        Ok(sources)
    }

    fn real(
        &self,
        raw: RawReal,
        key: &str,
        service: &ServiceConfig,
    ) -> Result<RealConfig, ConfigError> {
        let address_key = format!("{key}.address");
        let address = self.address(raw.address, &address_key, "real server")?;
        let forward_key = format!("{key}.forward");
        let forward = self.word(raw.forward, &forward_key, service.forward)?;
        if address.is_ipv4() != service.vip.is_ipv4() && forward.keeps_family() {
            return Err(self.invalid(
                &address_key,
                format!(
                    "real {address} is {} but the VIP {} is {}; {} hands the real the \
                     client's packet with its own IP header, so the real must be in the VIP's \
                     address family (only tun carries one family in the other)",
                    family_name(address),
                    service.vip,
                    family_name(service.vip),
                    method_words(forward)
                ),
            ));
        }

        let port_key = format!("{key}.port");
        let port = match raw.port {
            Some(value) => self.port(value, &port_key)?,
            None => service.port,
        };
        if let Some(problem) = server_port_problem(service.port, forward, port, "real", |port| {
            format!("omit `port` or set it to {port}")
        }) {
            return Err(self.invalid(&port_key, problem));
        }

        let weight = match raw.weight {
            Some(value) => u32::try_from(value)
                .ok()
                .filter(|weight| *weight <= MAX_WEIGHT)
                .ok_or_else(|| {
                    self.invalid(
                        &format!("{key}.weight"),
                        format!(
                            "weight {value} is out of range 0..={MAX_WEIGHT} (0 drains the real)"
                        ),
                    )
                })?,
            None => 1,
        };

        Ok(RealConfig {
            address,
            port,
            weight,
            forward,
        })
    }
}

/// Why a server (`role`: "real", "sorry server") that `forward` sends a service's packets to
/// cannot listen on `port`; `None` when it can. `give_port` words the fix for a port number.
pub(super) fn server_port_problem(
    service_port: u16,
    forward: Forward,
    port: u16,
    role: &str,
    give_port: impl Fn(u16) -> String,
) -> Option<String> {
    if port == service_port {
        None
    } else if service_port == 0 {
        Some(format!(
            "the service has port 0 (all ports), so the {role} keeps each packet's port; {} \
             (got {port})",
            give_port(0)
        ))
    } else if !forward.can_change_port() {
        Some(format!(
            "dr and tun cannot change the port ({} hands the {role} the client's packet \
             unchanged): {role} port {port} differs from service port {service_port}; {} (nat \
             and fullnat may map ports)",
            method_words(forward),
            give_port(service_port)
        ))
    } else if port == 0 {
        Some(format!(
            "port 0 means every port, which only an all-ports service (port 0) has; give the \
             {role}'s port"
        ))
    } else {
        None
    }
}

pub(super) fn family_name(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// The method, in words for messages.
pub(super) fn method_words(forward: Forward) -> &'static str {
    match forward {
        Forward::Dr => "direct routing (dr)",
        Forward::Tun => "tunnelling (tun)",
        Forward::Nat => "NAT (nat)",
        Forward::Fullnat => "full NAT (fullnat)",
    }
}
