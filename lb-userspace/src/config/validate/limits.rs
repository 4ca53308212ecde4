//! `limits`: map sizes.

use super::Validator;
use crate::config::{ConfigError, Limits, raw::RawLimits};

impl Validator<'_> {
    pub(super) fn limits(&self, raw: Option<RawLimits>) -> Result<Limits, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Limits::default());
        };
        let defaults = Limits::default();
        let limit = |name: &str, value: Option<i64>, default: u32| -> Result<u32, ConfigError> {
            let Some(value) = value else {
                return Ok(default);
            };
            let key = format!("limits.{name}");
            if value < 1 {
                return Err(self.invalid(
                    &key,
                    format!("must be at least 1 (it sizes a map), got {value}"),
                ));
            }
            u32::try_from(value)
                .map_err(|_| self.invalid(&key, format!("{value} is more than {}", u32::MAX)))
        };
        let limits = Limits {
            flows: limit("flows", raw.flows, defaults.flows)?,
            services: limit("services", raw.services, defaults.services)?,
            reals: limit("reals", raw.reals, defaults.reals)?,
        };
        // The ring map holds RING_SLOTS_PER_SERVICE entries per service, indexed by a u32.
        if limits
            .services
            .checked_mul(lb_common::RING_SLOTS_PER_SERVICE)
            .is_none()
        {
            return Err(self.invalid(
                "limits.services",
                format!(
                    "{} services × {} ring slots each does not fit the ring map's u32 index; \
                     at most {} services",
                    limits.services,
                    lb_common::RING_SLOTS_PER_SERVICE,
                    u32::MAX / lb_common::RING_SLOTS_PER_SERVICE
                ),
            ));
        }
        Ok(limits)
    }
}
