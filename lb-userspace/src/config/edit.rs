//! Runtime changes to a [`Document`]: what ipvsadm's `-A -E -D -a -e -d -C --set` do, for
//! the admin socket. Each names services and reals as the running [`Config`] has them, edits
//! the document, and leaves validation to [`super::from_document`], so a change is checked
//! exactly as the file is.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Config, Document, Protocol, socket_text};

/// A service, as `-t|-u VIP:PORT` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRef {
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    pub vip: IpAddr,
    pub port: u16,
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.protocol.name().to_uppercase(),
            socket_text(self.vip, self.port)
        )
    }
}

/// One change. Values are written with the config file's keys (`{"scheduler": "wlc"}`,
/// `{"address": "192.0.2.11", "weight": 2}`); `null` removes a key (back to its default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "edit", rename_all = "snake_case")]
pub enum Edit {
    /// `-A`: a service, as an entry of `services`.
    AddService { service: Map<String, Value> },
    /// `-E`: keys of a service to set (not `vip`, `port`, `protocol`: they name it).
    EditService {
        service: ServiceRef,
        set: Map<String, Value>,
    },
    /// `-D`.
    DeleteService { service: ServiceRef },
    /// `-a`: a real, as an entry of the service's `reals`.
    AddReal {
        service: ServiceRef,
        real: Map<String, Value>,
    },
    /// `-e`: keys of a real to set (not `address`, `port`: they name it).
    EditReal {
        service: ServiceRef,
        address: IpAddr,
        port: u16,
        set: Map<String, Value>,
    },
    /// `-d`.
    DeleteReal {
        service: ServiceRef,
        address: IpAddr,
        port: u16,
    },
    /// `-C`: every service goes.
    Clear,
    /// `--set`: keys of `timeouts` to set (`tcp`, `tcp_fin`, `udp`).
    SetTimeouts { set: Map<String, Value> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    // ipvsadm's words (libipvs's `ipvs_strerror`), naming what they are about.
    #[error("No such service: {0}")]
    NoSuchService(ServiceRef),
    #[error("Service already exists: {0}")]
    ServiceExists(ServiceRef),
    #[error("No such destination: {service} has no real {real}")]
    NoSuchReal { service: ServiceRef, real: String },
    #[error("Destination already exists: {service} already has real {real}")]
    RealExists { service: ServiceRef, real: String },
    #[error("`{key}` names the {what}; it cannot be changed (delete it and add another)")]
    NamingKey { key: String, what: &'static str },
    #[error("the config's `{0}` is not a list or mapping as the change expects")]
    Shape(&'static str),
}

impl Edit {
    /// A short description for logs: `add TCP 192.0.2.10:80`.
    pub fn describe(&self) -> String {
        let real = |address: &IpAddr, port: &u16| socket_text(*address, *port);
        match self {
            Edit::AddService { .. } => "add a service".to_owned(),
            Edit::EditService { service, .. } => format!("edit {service}"),
            Edit::DeleteService { service } => format!("delete {service}"),
            Edit::AddReal { service, .. } => format!("add a real to {service}"),
            Edit::EditReal {
                service,
                address,
                port,
                ..
            } => format!("edit real {} of {service}", real(address, port)),
            Edit::DeleteReal {
                service,
                address,
                port,
            } => format!("delete real {} of {service}", real(address, port)),
            Edit::Clear => "clear every service".to_owned(),
            Edit::SetTimeouts { .. } => "set timeouts".to_owned(),
        }
    }

    /// `document` (which validates as `config`) with this change made; still to be validated.
    pub fn apply(&self, config: &Config, document: &Document) -> Result<Document, EditError> {
        let mut document = document.clone();
        match self {
            Edit::AddService { service } => {
                services(&mut document)?.push(Value::Object(service.clone()));
                // A duplicate is refused here with ipvsadm's words rather than the
                // validator's, when the new entry's key is readable.
                if let Some(named) = service_ref_of(service)
                    && find_service(config, named).is_ok()
                {
                    return Err(EditError::ServiceExists(named));
                }
            }
            Edit::EditService { service, set } => {
                refuse_naming_keys(set, &["vip", "port", "protocol"], "service")?;
                let index = find_service(config, *service)?;
                merge(&mut services(&mut document)?[index], set)?;
            }
            Edit::DeleteService { service } => {
                let index = find_service(config, *service)?;
                services(&mut document)?.remove(index);
            }
            Edit::AddReal { service, real } => {
                let index = find_service(config, *service)?;
                if let Some((address, port)) = real_key_of(real, &config.services[index])
                    && find_real(config, index, *service, address, port).is_ok()
                {
                    return Err(EditError::RealExists {
                        service: *service,
                        real: socket_text(address, port),
                    });
                }
                reals(&mut services(&mut document)?[index])?.push(Value::Object(real.clone()));
            }
            Edit::EditReal {
                service,
                address,
                port,
                set,
            } => {
                refuse_naming_keys(set, &["address", "port"], "real")?;
                let index = find_service(config, *service)?;
                let real = find_real(config, index, *service, *address, *port)?;
                let entry = &mut services(&mut document)?[index];
                merge(&mut reals(entry)?[real], set)?;
            }
            Edit::DeleteReal {
                service,
                address,
                port,
            } => {
                let index = find_service(config, *service)?;
                let real = find_real(config, index, *service, *address, *port)?;
                reals(&mut services(&mut document)?[index])?.remove(real);
            }
            Edit::Clear => {
                if let Some(object) = document.as_object_mut() {
                    object.insert("services".to_owned(), Value::Array(Vec::new()));
                }
            }
            Edit::SetTimeouts { set } => {
                let object = document
                    .as_object_mut()
                    .ok_or(EditError::Shape("document"))?;
                let timeouts = object
                    .entry("timeouts")
                    .or_insert_with(|| Value::Object(Map::new()));
                merge(timeouts, set)?;
            }
        }
        Ok(document)
    }
}

fn refuse_naming_keys(
    set: &Map<String, Value>,
    naming: &[&str],
    what: &'static str,
) -> Result<(), EditError> {
    match naming.iter().find(|key| set.contains_key(**key)) {
        Some(key) => Err(EditError::NamingKey {
            key: (*key).to_owned(),
            what,
        }),
        None => Ok(()),
    }
}

/// The document's `services` list, created empty if absent.
fn services(document: &mut Document) -> Result<&mut Vec<Value>, EditError> {
    let object = document
        .as_object_mut()
        .ok_or(EditError::Shape("document"))?;
    let services = object
        .entry("services")
        .or_insert_with(|| Value::Array(Vec::new()));
    if services.is_null() {
        *services = Value::Array(Vec::new());
    }
    services.as_array_mut().ok_or(EditError::Shape("services"))
}

fn reals(service: &mut Value) -> Result<&mut Vec<Value>, EditError> {
    let object = service
        .as_object_mut()
        .ok_or(EditError::Shape("services"))?;
    let reals = object
        .entry("reals")
        .or_insert_with(|| Value::Array(Vec::new()));
    if reals.is_null() {
        *reals = Value::Array(Vec::new());
    }
    reals.as_array_mut().ok_or(EditError::Shape("reals"))
}

/// Sets `set`'s keys on `target` (a mapping); `null` removes a key.
fn merge(target: &mut Value, set: &Map<String, Value>) -> Result<(), EditError> {
    if target.is_null() {
        *target = Value::Object(Map::new());
    }
    let object = target.as_object_mut().ok_or(EditError::Shape("mapping"))?;
    for (key, value) in set {
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.clone(), value.clone());
        }
    }
    Ok(())
}

/// The index of the service in `config` (and so in its document: the config keeps the
/// file's order).
fn find_service(config: &Config, wanted: ServiceRef) -> Result<usize, EditError> {
    config
        .services
        .iter()
        .position(|service| {
            service.protocol == wanted.protocol
                && service.vip == wanted.vip
                && service.port == wanted.port
        })
        .ok_or(EditError::NoSuchService(wanted))
}

fn find_real(
    config: &Config,
    service: usize,
    wanted: ServiceRef,
    address: IpAddr,
    port: u16,
) -> Result<usize, EditError> {
    config.services[service]
        .reals
        .iter()
        .position(|real| real.address == address && real.port == port)
        .ok_or(EditError::NoSuchReal {
            service: wanted,
            real: socket_text(address, port),
        })
}

/// The service a new entry names, if its keys read plainly.
fn service_ref_of(entry: &Map<String, Value>) -> Option<ServiceRef> {
    let vip = entry.get("vip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(entry.get("port")?.as_u64()?).ok()?;
    let protocol = entry.get("protocol")?.as_str()?.parse().ok()?;
    Some(ServiceRef {
        protocol,
        vip,
        port,
    })
}

/// The real a new entry names, if its keys read plainly (the port defaults to the service's).
fn real_key_of(
    entry: &Map<String, Value>,
    service: &super::ServiceConfig,
) -> Option<(IpAddr, u16)> {
    let address = entry.get("address")?.as_str()?.parse().ok()?;
    let port = match entry.get("port") {
        Some(port) => u16::try_from(port.as_u64()?).ok()?,
        None => service.port,
    };
    Some((address, port))
}
