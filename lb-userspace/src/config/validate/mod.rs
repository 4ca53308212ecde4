//! Raw structs → the typed [`Config`]: defaults, ranges, address families, duplicates, map
//! and limits. One file per section of the config;
//! the helpers every section uses are here.

mod bgp;
mod health;
mod interfaces;
mod limits;
mod metrics;
mod services;
mod timeouts;
mod vrrp;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use super::{
    Config, ConfigError, DEFAULT_ADMIN_SOCKET, DEFAULT_PIN_ROOT, DEFAULT_RUN_DIR, Location,
    MAX_INSTANCE_NAME_LEN, MAX_UNIX_SOCKET_PATH_LEN, NameError, Position, is_valid_instance_name,
    raw::RawConfig, source_map::SourceMap,
};

/// Checks raw values and builds the typed [`Config`]; errors point into the source map.
pub(super) struct Validator<'a> {
    pub(super) source_map: &'a SourceMap,
}

impl Validator<'_> {
    /// An error about the value at `key`.
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(self.source_map.value_position(key)),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// An error about the key itself (its presence), pointing at where the key is written.
    fn invalid_key(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(self.source_map.key_position(key)),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn location(&self, position: Option<Position>) -> Location {
        Location {
            file: self.source_map.file.clone(),
            position,
        }
    }

    fn required<T>(&self, value: Option<T>, key: &str, what: &str) -> Result<T, ConfigError> {
        value.ok_or_else(|| {
            if self.source_map.contains(key) {
                self.invalid(key, format!("needs a value ({what})"))
            } else {
                self.invalid(key, format!("required key is missing ({what})"))
            }
        })
    }

    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let instance = self.required(raw.instance, "instance", "a name for this daemon")?;
        if !is_valid_instance_name(&instance) {
            return Err(self.invalid(
                "instance",
                format!(
                    "invalid instance name {instance:?}: use 1 to {MAX_INSTANCE_NAME_LEN} of \
                     A-Z a-z 0-9 _ - (it becomes part of file paths)"
                ),
            ));
        }

        let interfaces = self.interfaces(self.required(
            raw.interfaces,
            "interfaces",
            "where the XDP program attaches",
        )?)?;

        let (admin_socket, admin_group) = match raw.admin {
            Some(admin) => (admin.socket, admin.group),
            None => (None, None),
        };
        let admin_group = match admin_group {
            Some(group) => Some(self.admin_group(group)?),
            None => None,
        };
        let admin_socket = match admin_socket {
            Some(socket) => {
                self.check_path("admin.socket", &socket)?;
                if socket.len() > MAX_UNIX_SOCKET_PATH_LEN {
                    return Err(self.invalid(
                        "admin.socket",
                        format!(
                            "socket path is {} bytes; a Unix socket path can have at most {}",
                            socket.len(),
                            MAX_UNIX_SOCKET_PATH_LEN
                        ),
                    ));
                }
                PathBuf::from(socket)
            }
            None => PathBuf::from(DEFAULT_ADMIN_SOCKET),
        };

        let pin_dir = match raw.pin_dir {
            Some(pin_dir) => {
                self.check_path("pin_dir", &pin_dir)?;
                PathBuf::from(pin_dir)
            }
            None => Path::new(DEFAULT_PIN_ROOT).join(&instance),
        };

        let pid_file = match raw.pid_file {
            Some(pid_file) => {
                self.check_path("pid_file", &pid_file)?;
                PathBuf::from(pid_file)
            }
            None => Path::new(DEFAULT_RUN_DIR).join(format!("{instance}.pid")),
        };

        let limits = self.limits(raw.limits)?;
        let services = self.services(raw.services.unwrap_or_default(), &limits)?;
        let timeouts = self.timeouts(raw.timeouts)?;
        let metrics_listen = self.metrics(raw.metrics)?;
        let vrrp = self.vrrp(raw.vrrp, &services)?;
        let sync = self.sync(raw.sync, &vrrp)?;
        let bgp = self.bgp(raw.bgp, &instance, &services)?;

        Ok(Config {
            instance,
            interfaces,
            admin_socket,
            admin_group,
            pin_dir,
            pid_file,
            services,
            limits,
            timeouts,
            metrics_listen,
            vrrp,
            sync,
            bgp,
        })
    }

    /// `admin.group`: a group id, or the name of a group this host knows.
    fn admin_group(&self, group: super::raw::RawGroup) -> Result<u32, ConfigError> {
        match group {
            super::raw::RawGroup::Id(gid) => u32::try_from(gid).map_err(|_| {
                self.invalid(
                    "admin.group",
                    format!("group id {gid} is out of range (0 to {})", u32::MAX),
                )
            }),
            super::raw::RawGroup::Name(name) => match group_id(&name) {
                Ok(Some(gid)) => Ok(gid),
                Ok(None) => Err(self.invalid(
                    "admin.group",
                    format!("no group named {name:?} on this host (give a name or a number)"),
                )),
                Err(error) => {
                    Err(self.invalid("admin.group", format!("looking up group {name:?}: {error}")))
                }
            },
        }
    }

    fn check_path(&self, key: &str, path: &str) -> Result<(), ConfigError> {
        if path.is_empty() {
            return Err(self.invalid(key, "must not be empty"));
        }
        if path.contains('\0') {
            return Err(self.invalid(key, "must not contain a NUL character"));
        }
        Ok(())
    }

    /// A unicast IP address (`role` names it in messages: "VIP", "real server").
    fn address(&self, text: Option<String>, key: &str, role: &str) -> Result<IpAddr, ConfigError> {
        let text = self.required(text, key, &format!("the {role}'s IP address"))?;
        let address: IpAddr = text
            .parse()
            .map_err(|_| self.invalid(key, format!("invalid IP address {text:?}")))?;
        let problem = if address.is_unspecified() {
            Some("the unspecified address")
        } else if address.is_multicast() {
            Some("a multicast address")
        } else if matches!(address, IpAddr::V4(v4) if v4.is_broadcast()) {
            Some("the broadcast address")
        } else if address.is_loopback() {
            Some("a loopback address")
        } else if matches!(address, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) {
            Some("an IPv4-mapped IPv6 address (write the IPv4 address itself)")
        } else if matches!(address, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
            Some(
                "an IPv6 link-local address (it names no interface; use a global or unique local address)",
            )
        } else {
            None
        };
        match problem {
            Some(problem) => Err(self.invalid(
                key,
                format!("{address} is {problem}; a {role} address must be a unicast address"),
            )),
            None => Ok(address),
        }
    }

    fn port(&self, value: i64, key: &str) -> Result<u16, ConfigError> {
        u16::try_from(value)
            .map_err(|_| self.invalid(key, format!("port {value} is out of range 0..=65535")))
    }

    /// One of a config enum's words, or `default` when the key is absent.
    fn word<T: FromStr<Err = NameError>>(
        &self,
        word: Option<String>,
        key: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        match word {
            Some(word) => self.parse_word(&word, key),
            None => Ok(default),
        }
    }

    fn parse_word<T: FromStr<Err = NameError>>(
        &self,
        word: &str,
        key: &str,
    ) -> Result<T, ConfigError> {
        word.parse()
            .map_err(|error: NameError| self.invalid(key, error.to_string()))
    }
}

/// The id of the group named `name`, from the host's group database: `Ok(None)` if it has
/// none, `Err` (the error's text) if the database could not be read.
fn group_id(name: &str) -> Result<Option<u32>, String> {
    let Ok(name) = std::ffi::CString::new(name) else {
        return Ok(None);
    };
    // A group's entry holds its member list: directory services can make it large.
    let mut length = 16 * 1024;
    loop {
        // SAFETY: `group` is plain data that getgrnam_r fills in; all zeroes is a valid value.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut buffer = vec![0 as libc::c_char; length];
        let mut found = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is NUL-terminated, the buffer
        // is as long as its length says, and `found` is written only to point at `group`.
        let status = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut group,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        match status {
            0 => return Ok((!found.is_null()).then_some(group.gr_gid)),
            libc::ERANGE if length < 1024 * 1024 => length *= 4,
            error => return Err(std::io::Error::from_raw_os_error(error).to_string()),
        }
    }
}
