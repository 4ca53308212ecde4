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
            table_slots: limit("table_slots", raw.table_slots, defaults.table_slots)?,
            services: limit("services", raw.services, defaults.services)?,
            reals: limit("reals", raw.reals, defaults.reals)?,
        };
        Ok(limits)
    }
}
