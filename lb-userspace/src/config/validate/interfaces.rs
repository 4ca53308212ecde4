//! `interfaces`: where the XDP program attaches.

use super::Validator;
use crate::config::{
    ConfigError, InterfaceConfig, MAX_INTERFACE_NAME_LEN, XdpMode, is_valid_interface_name,
    raw::RawInterface,
};

impl Validator<'_> {
    pub(super) fn interfaces(
        &self,
        raw: Vec<RawInterface>,
    ) -> Result<Vec<InterfaceConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(self.invalid(
                "interfaces",
                "at least one interface is required (where the XDP program attaches)",
            ));
        }
        let max_interfaces = lb_common::MAX_INTERFACES as usize;
        if raw.len() > max_interfaces {
            return Err(self.invalid(
                "interfaces",
                format!(
                    "{} interfaces listed; at most {max_interfaces} are supported",
                    raw.len()
                ),
            ));
        }
        let mut interfaces: Vec<InterfaceConfig> = Vec::with_capacity(raw.len());
        for (index, raw_interface) in raw.into_iter().enumerate() {
            let key = format!("interfaces[{index}]");
            let name_key = format!("{key}.name");
            let name = self.required(raw_interface.name, &name_key, "a network interface")?;
            if !is_valid_interface_name(&name) {
                return Err(self.invalid(
                    &name_key,
                    format!(
                        "invalid interface name {name:?}: Linux interface names are 1 to \
                         {MAX_INTERFACE_NAME_LEN} bytes without '/', ':' or whitespace"
                    ),
                ));
            }
            if let Some(first) = interfaces
                .iter()
                .position(|interface| interface.name == name)
            {
                return Err(self.invalid(
                    &name_key,
                    format!("interface {name:?} is listed twice (also interfaces[{first}])"),
                ));
            }
            let xdp_mode = match raw_interface.xdp_mode {
                Some(word) => self.parse_word(&word, &format!("{key}.xdp_mode"))?,
                None => XdpMode::Auto,
            };
            interfaces.push(InterfaceConfig { name, xdp_mode });
        }
        Ok(interfaces)
    }
}
