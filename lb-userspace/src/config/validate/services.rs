//! `services` and their `reals`.

use std::{collections::HashMap, net::IpAddr};

use lb_common::RING_SLOTS;

use super::Validator;
use crate::config::{
    ConfigError, Forward, Limits, MAX_WEIGHT, Protocol, RealConfig, Scheduler, ServiceConfig,
    raw::{RawReal, RawService},
    socket_text,
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
        let total_reals: usize = services.iter().map(|service| service.reals.len()).sum();
        if total_reals >= limits.reals as usize {
            return Err(self.invalid_key(
                "services",
                format!(
                    "{total_reals} reals configured over all services, but limits.reals = {} \
                     leaves room for {} (real ids start at 1; 0 means none); raise limits.reals",
                    limits.reals,
                    limits.reals - 1
                ),
            ));
        }
        Ok(services)
    }

    fn service(&self, raw: RawService, key: &str) -> Result<ServiceConfig, ConfigError> {
        self.reject_planned(
            key,
            &[
                ("persistence", &raw.persistence),
                ("health_check", &raw.health_check),
                ("on_failure", &raw.on_failure),
            ],
        )?;

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

        let mut service = ServiceConfig {
            vip,
            port,
            protocol,
            scheduler,
            forward,
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
        Ok(service)
    }

    fn real(
        &self,
        raw: RawReal,
        key: &str,
        service: &ServiceConfig,
    ) -> Result<RealConfig, ConfigError> {
        let address_key = format!("{key}.address");
        let address = self.address(raw.address, &address_key, "real server")?;
        if address.is_ipv4() != service.vip.is_ipv4() {
            return Err(self.invalid(
                &address_key,
                format!(
                    "real {address} is {} but the VIP {} is {}; direct routing (dr) hands \
                     the client's packet to the real unchanged, so a real must be in the \
                     VIP's address family",
                    family_name(address),
                    service.vip,
                    family_name(service.vip)
                ),
            ));
        }

        let forward = self.word(raw.forward, &format!("{key}.forward"), service.forward)?;

        let port_key = format!("{key}.port");
        let port = match raw.port {
            Some(value) => self.port(value, &port_key)?,
            None => service.port,
        };
        if port != service.port && !forward.can_change_port() {
            let message = if service.port == 0 {
                format!(
                    "the service has port 0 (all ports), so the real keeps each packet's port; \
                     omit `port` or set it to 0 (got {port})"
                )
            } else {
                format!(
                    "direct routing cannot change the port: real port {port} differs from \
                     service port {}; omit `port` or set it to {}",
                    service.port, service.port
                )
            };
            return Err(self.invalid(&port_key, message));
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

fn family_name(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IPv4" } else { "IPv6" }
}
