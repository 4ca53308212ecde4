//! `timeouts`: how long an idle flow is kept, per connection state (`ipvsadm --set tcp tcpfin
//! udp`).

use std::time::Duration;

use super::Validator;
use crate::config::{ConfigError, Timeouts, duration::parse_duration, raw::RawTimeouts};

/// The program refreshes a flow's last-seen time at most once a second, so a shorter timeout
/// could expire a busy flow.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Timeouts are kept in seconds in a u32; a year is far beyond any use.
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

impl Validator<'_> {
    pub(super) fn timeouts(&self, raw: Option<RawTimeouts>) -> Result<Timeouts, ConfigError> {
        let defaults = Timeouts::default();
        let Some(raw) = raw else {
            return Ok(defaults);
        };
        let timeout = |name: &str, text: Option<String>, default: Duration| {
            let key = format!("timeouts.{name}");
            let Some(text) = text else {
                return Ok(default);
            };
            let value = parse_duration(&text).map_err(|message| self.invalid(&key, message))?;
            if value < MIN_TIMEOUT || value > MAX_TIMEOUT {
                return Err(self.invalid(
                    &key,
                    format!("{text} is out of range: between 1s and 365 days"),
                ));
            }
            if value.subsec_nanos() != 0 {
                return Err(self.invalid(
                    &key,
                    format!(
                        "{text}: flow timeouts are whole seconds (as ipvsadm --set takes them)"
                    ),
                ));
            }
            Ok(value)
        };
        Ok(Timeouts {
            tcp: timeout("tcp", raw.tcp, defaults.tcp)?,
            tcp_fin: timeout("tcp_fin", raw.tcp_fin, defaults.tcp_fin)?,
            udp: timeout("udp", raw.udp, defaults.udp)?,
        })
    }
}
