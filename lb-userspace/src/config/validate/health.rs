//! A service's `health_check`, `on_failure` and `sorry_server`: how its reals are checked,
//! and what happens when they fail.

use std::{
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    str::FromStr,
    time::Duration,
};

use super::{Validator, services::server_port_problem};
use crate::config::{
    CheckKind, ConfigError, HealthCheckConfig, HttpCheck, NameError, OnFailure, ServiceConfig,
    SorryServer,
    duration::{duration_text, parse_duration},
    parse_name,
    raw::{RawHealthCheck, RawStatus},
    socket_text,
    source_map::join_key,
    validate::services::{family_name, method_words},
};

/// Ten checks a second of every real from every balancer is already more load than it buys:
/// the time to take a real out is `fall × interval`, and below this the connect itself, not
/// the interval, dominates it.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// A real checked less often is not watched; the cap also keeps the schedule's time
/// arithmetic far from overflow.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Both thresholds count checks; a hundred is already minutes at the default interval.
const THRESHOLDS: RangeInclusive<i64> = 1..=100;
/// What HTTP defines as status codes.
const STATUS_CODES: RangeInclusive<u16> = 100..=599;
/// Keys that only an HTTP check reads.
const HTTP_ONLY_KEYS: [&str; 4] = ["path", "expect_status", "host", "expect_body"];

/// The word of `type`, before the HTTP keys make it a [`CheckKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckType {
    Tcp,
    Http,
    None,
}

impl CheckType {
    const ALL: [CheckType; 3] = [CheckType::Tcp, CheckType::Http, CheckType::None];

    fn name(self) -> &'static str {
        match self {
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
            CheckType::None => "none",
        }
    }
}

impl FromStr for CheckType {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name("check type", word, &CheckType::ALL, CheckType::name, &[])
    }
}

impl Validator<'_> {
    /// `health_check` of the service at `key`, whose reals are already validated. `type: none`
    /// gives `None`, as no `health_check` does: the reals are always up. Its other keys are
    /// still checked, so that switching checks back on cannot surprise.
    pub(super) fn health_check(
        &self,
        raw: Option<RawHealthCheck>,
        service: &ServiceConfig,
        key: &str,
    ) -> Result<Option<HealthCheckConfig>, ConfigError> {
        let check_key = format!("{key}.health_check");
        let Some(raw) = raw else {
            self.reject_empty(&check_key, "at least `type: tcp` or `type: http`")?;
            return Ok(None);
        };
        let type_key = join_key(&check_key, "type");
        let check_type: CheckType = self.parse_word(
            &self.required(raw.kind, &type_key, "tcp, http or none")?,
            &type_key,
        )?;
        if check_type != CheckType::Http {
            for name in HTTP_ONLY_KEYS {
                let http_key = join_key(&check_key, name);
                if self.source_map.contains(&http_key) {
                    return Err(self.invalid_key(
                        &http_key,
                        format!(
                            "only means something with `type: http` (this check is {})",
                            check_type.name()
                        ),
                    ));
                }
            }
        }

        let port = self.check_port(raw.port, service, check_type, &check_key)?;
        let interval_key = join_key(&check_key, "interval");
        let interval = self
            .duration(raw.interval, &interval_key)?
            .unwrap_or(HealthCheckConfig::DEFAULT_INTERVAL);
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            return Err(self.invalid(
                &interval_key,
                format!(
                    "{} is out of range: between {}ms and {}s",
                    duration_text(interval),
                    MIN_INTERVAL.as_millis(),
                    MAX_INTERVAL.as_secs()
                ),
            ));
        }
        let timeout_key = join_key(&check_key, "timeout");
        let timeout = match self.duration(raw.timeout, &timeout_key)? {
            Some(timeout) => timeout,
            None => HealthCheckConfig::DEFAULT_TIMEOUT.min(interval),
        };
        if timeout.is_zero() {
            return Err(self.invalid(&timeout_key, "must be longer than 0ms"));
        }
        // One check of a real at a time: each must end before the next one starts.
        if timeout > interval {
            return Err(self.invalid(
                &timeout_key,
                format!(
                    "{} is longer than the interval ({}); a check must end before the next \
                     one starts",
                    duration_text(timeout),
                    duration_text(interval)
                ),
            ));
        }
        let rise = self.threshold(raw.rise, &join_key(&check_key, "rise"))?;
        let fall = self.threshold(raw.fall, &join_key(&check_key, "fall"))?;
        let source = self.check_source(raw.source, service, &check_key)?;

        let kind = match check_type {
            CheckType::None => return Ok(None),
            CheckType::Tcp => CheckKind::Tcp,
            CheckType::Http => CheckKind::Http(HttpCheck {
                path: self.http_path(raw.path, &join_key(&check_key, "path"))?,
                expect_status: self
                    .expect_status(raw.expect_status, &join_key(&check_key, "expect_status"))?,
                host: self.http_host(raw.host, &join_key(&check_key, "host"))?,
                expect_body: self
                    .expect_body(raw.expect_body, &join_key(&check_key, "expect_body"))?,
            }),
        };
        Ok(Some(HealthCheckConfig {
            kind,
            port,
            interval,
            timeout,
            rise: rise.unwrap_or(HealthCheckConfig::DEFAULT_RISE),
            fall: fall.unwrap_or(HealthCheckConfig::DEFAULT_FALL),
            source,
        }))
    }

    /// `on_failure` of the service at `key`; only with a `health_check`.
    pub(super) fn on_failure(
        &self,
        raw: Option<String>,
        key: &str,
    ) -> Result<OnFailure, ConfigError> {
        let failure_key = format!("{key}.on_failure");
        let Some(word) = raw else {
            self.reject_empty(&failure_key, "remove or inhibit")?;
            return Ok(OnFailure::default());
        };
        if !self.source_map.contains(&format!("{key}.health_check")) {
            return Err(self.invalid_key(
                &failure_key,
                "only means something with a `health_check` (without one no real fails)",
            ));
        }
        self.parse_word(&word, &failure_key)
    }

    /// `sorry_server` of the service at `key`, whose reals are already validated: it is sent
    /// the service's packets as a real would be, so the same family and port rules hold.
    pub(super) fn sorry_server(
        &self,
        raw: Option<String>,
        service: &ServiceConfig,
        key: &str,
    ) -> Result<Option<SorryServer>, ConfigError> {
        let sorry_key = format!("{key}.sorry_server");
        let Some(text) = raw else {
            self.reject_empty(&sorry_key, "ADDR:PORT, or [ADDR]:PORT for IPv6")?;
            return Ok(None);
        };
        let socket: SocketAddr = text.parse().map_err(|_| {
            let message = if text.parse::<IpAddr>().is_ok() {
                format!("{text:?} has no port; write ADDR:PORT, or [ADDR]:PORT for IPv6")
            } else {
                format!(
                    "invalid address and port {text:?}; write ADDR:PORT, or [ADDR]:PORT for IPv6"
                )
            };
            self.invalid(&sorry_key, message)
        })?;
        let address = self.address(Some(socket.ip().to_string()), &sorry_key, "sorry server")?;
        let forward = service.forward;
        if address.is_ipv4() != service.vip.is_ipv4() && forward.keeps_family() {
            return Err(self.invalid(
                &sorry_key,
                format!(
                    "{address} is {} but the VIP {} is {}; {} hands the sorry server the \
                     client's packet with its own IP header, so it must be in the VIP's family",
                    family_name(address),
                    service.vip,
                    family_name(service.vip),
                    method_words(forward)
                ),
            ));
        }
        let port = socket.port();
        if let Some(problem) =
            server_port_problem(service.port, forward, port, "sorry server", |port| {
                format!("write its port as {port}")
            })
        {
            return Err(self.invalid(&sorry_key, problem));
        }
        if let Some(index) = service
            .reals
            .iter()
            .position(|real| (real.address, real.port) == (address, port))
        {
            return Err(self.invalid(
                &sorry_key,
                format!(
                    "{} is also {key}.reals[{index}]; the sorry server stands in for the reals \
                     when they are all down, so it must be another server",
                    socket_text(address, port)
                ),
            ));
        }
        Ok(Some(SorryServer { address, port }))
    }

    /// Neither a check's source nor a sorry server may be a VIP: the answers to checks sent
    /// from a VIP would be taken for clients' packets to it, and packets sent on to a VIP would
    /// come back to the balancer.
    pub(super) fn health_addresses_are_no_vip(
        &self,
        services: &[ServiceConfig],
    ) -> Result<(), ConfigError> {
        let vip_owner = |address: IpAddr| services.iter().position(|other| other.vip == address);
        for (index, service) in services.iter().enumerate() {
            let source = service.health_check.as_ref().and_then(|check| check.source);
            if let Some((address, owner)) =
                source.and_then(|address| Some((address, vip_owner(address)?)))
            {
                return Err(self.invalid(
                    &format!("services[{index}].health_check.source"),
                    format!(
                        "{address} is the VIP of services[{owner}]; the answers to checks sent \
                         from a VIP would be taken for clients' packets to it"
                    ),
                ));
            }
            let sorry = service.sorry_server.map(|sorry| sorry.address);
            if let Some((address, owner)) =
                sorry.and_then(|address| Some((address, vip_owner(address)?)))
            {
                return Err(self.invalid(
                    &format!("services[{index}].sorry_server"),
                    format!(
                        "{address} is the VIP of services[{owner}]; packets sent on to a VIP \
                         would come back to the balancer"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A key written with no value; for these keys, taking that as "absent" would silently
    /// switch off what the user asked for.
    fn reject_empty(&self, key: &str, what: &str) -> Result<(), ConfigError> {
        if self.source_map.contains(key) {
            return Err(self.invalid(
                key,
                format!("needs a value ({what}); remove the key to go without"),
            ));
        }
        Ok(())
    }

    /// `port`: 1..=65535; required when the reals have no port of their own (port 0).
    fn check_port(
        &self,
        raw: Option<i64>,
        service: &ServiceConfig,
        check_type: CheckType,
        check_key: &str,
    ) -> Result<Option<u16>, ConfigError> {
        let port_key = join_key(check_key, "port");
        match raw {
            Some(value) => u16::try_from(value)
                .ok()
                .filter(|port| *port != 0)
                .map(Some)
                .ok_or_else(|| {
                    self.invalid(&port_key, format!("port {value} is out of range 1..=65535"))
                }),
            None if service.port == 0 && check_type != CheckType::None => Err(self.invalid(
                &port_key,
                "required key is missing: the service has port 0 (all ports), so its reals \
                 have no port of their own to check",
            )),
            None => Ok(None),
        }
    }

    fn duration(&self, text: Option<String>, key: &str) -> Result<Option<Duration>, ConfigError> {
        text.map(|text| parse_duration(&text).map_err(|message| self.invalid(key, message)))
            .transpose()
    }

    /// `rise` or `fall`.
    fn threshold(&self, raw: Option<i64>, key: &str) -> Result<Option<u32>, ConfigError> {
        match raw {
            Some(value) if THRESHOLDS.contains(&value) => Ok(Some(value as u32)),
            Some(value) => Err(self.invalid(
                key,
                format!(
                    "{value} is out of range {}..={} (consecutive checks)",
                    THRESHOLDS.start(),
                    THRESHOLDS.end()
                ),
            )),
            None => Ok(None),
        }
    }

    /// `source`: unicast, in the family of every real it checks (for a service whose method
    /// keeps the family, the VIP's).
    fn check_source(
        &self,
        raw: Option<String>,
        service: &ServiceConfig,
        check_key: &str,
    ) -> Result<Option<IpAddr>, ConfigError> {
        let source_key = join_key(check_key, "source");
        let Some(text) = raw else {
            return Ok(None);
        };
        let source = self.address(Some(text), &source_key, "check source")?;
        if service.forward.keeps_family() && source.is_ipv4() != service.vip.is_ipv4() {
            return Err(self.invalid(
                &source_key,
                format!(
                    "{source} is {} but the VIP {} is {}; the reals of {} are in the VIP's \
                     family, so no check could be sent from it",
                    family_name(source),
                    service.vip,
                    family_name(service.vip),
                    method_words(service.forward)
                ),
            ));
        }
        if let Some((index, real)) = service
            .reals
            .iter()
            .enumerate()
            .find(|(_, real)| real.address.is_ipv4() != source.is_ipv4())
        {
            return Err(self.invalid(
                &source_key,
                format!(
                    "{source} is {} but reals[{index}] ({}) is {}; its checks could not be \
                     sent from it",
                    family_name(source),
                    real.address,
                    family_name(real.address)
                ),
            ));
        }
        Ok(Some(source))
    }

    /// `path`: the request target, sent as written.
    fn http_path(&self, raw: Option<String>, key: &str) -> Result<String, ConfigError> {
        let Some(path) = raw else {
            return Ok(HttpCheck::DEFAULT_PATH.to_owned());
        };
        if !path.starts_with('/') {
            return Err(self.invalid(key, format!("{path:?} must start with `/`")));
        }
        if has_space_or_control(&path) {
            return Err(self.invalid(
                key,
                format!(
                    "{path:?} holds a space or control character, which would break the \
                     request line (percent-encode it: %20)"
                ),
            ));
        }
        Ok(path)
    }

    /// `expect_status`: `200`, or a range `200-299` (also `"200"`).
    fn expect_status(
        &self,
        raw: Option<RawStatus>,
        key: &str,
    ) -> Result<RangeInclusive<u16>, ConfigError> {
        let code = |value: i64| {
            u16::try_from(value)
                .ok()
                .filter(|code| STATUS_CODES.contains(code))
                .ok_or_else(|| {
                    self.invalid(
                        key,
                        format!(
                            "status {value} is out of range {}..={}",
                            STATUS_CODES.start(),
                            STATUS_CODES.end()
                        ),
                    )
                })
        };
        let malformed = |text: &str| {
            self.invalid(
                key,
                format!("invalid status {text:?}; write a code (200) or a range (200-299)"),
            )
        };
        let number = |text: &str| -> Result<u16, ConfigError> {
            code(text.trim().parse::<i64>().map_err(|_| malformed(text))?)
        };
        match raw {
            None => Ok(HttpCheck::DEFAULT_EXPECT_STATUS),
            Some(RawStatus::Code(value)) => {
                let status = code(value)?;
                Ok(status..=status)
            }
            Some(RawStatus::Text(text)) => {
                let (low, high) = match text.split_once('-') {
                    Some((low, high)) => (number(low)?, number(high)?),
                    None => {
                        let status = number(&text)?;
                        (status, status)
                    }
                };
                if low > high {
                    return Err(self.invalid(
                        key,
                        format!("range {low}-{high} is backwards; write the lower code first"),
                    ));
                }
                Ok(low..=high)
            }
        }
    }

    /// `host`: the Host header's value.
    fn http_host(&self, raw: Option<String>, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(host) = raw else {
            return Ok(None);
        };
        if host.is_empty() || has_space_or_control(&host) {
            return Err(self.invalid(
                key,
                format!(
                    "{host:?} is not a host name: it must be non-empty, without spaces or \
                     control characters"
                ),
            ));
        }
        Ok(Some(host))
    }

    /// `expect_body`: a substring of the answer's body.
    fn expect_body(&self, raw: Option<String>, key: &str) -> Result<Option<String>, ConfigError> {
        match raw {
            Some(body) if body.is_empty() => Err(self.invalid(
                key,
                "is empty, and every body holds the empty string; remove the key to check the \
                 status only",
            )),
            other => Ok(other),
        }
    }
}

fn has_space_or_control(text: &str) -> bool {
    text.chars().any(|c| c.is_whitespace() || c.is_control())
}
