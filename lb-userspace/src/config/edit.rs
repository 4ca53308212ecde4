//! Runtime changes to a [`Document`]: what ipvsadm's `-A -E -D -a -e -d -C --set` do, for
//! the admin socket. Each names services and reals as the running [`Config`] has them, edits
//! the document, and leaves validation to [`super::from_document`], so a change is checked
//! exactly as the file is.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Document, Protocol, socket_text};

/// A service, as `-t|-u VIP:PORT` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceRef {
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    pub vip: IpAddr,
    pub port: u16,
}

impl ServiceRef {
    /// Whether `service` is the one this names.
    pub fn names(&self, service: &super::ServiceConfig) -> bool {
        (service.protocol, service.vip, service.port) == (self.protocol, self.vip, self.port)
    }
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

    /// Makes this change to `document`, a config document (services and reals are found in
    /// it by their names, so several edits can be made one after the other and the result
    /// validated once). What the result says is still to be validated; on an error the
    /// document may be half changed, and is to be dropped.
    pub fn apply(&self, document: &mut Document) -> Result<(), EditError> {
        self.apply_indexed(document, &mut ServiceIndex::default())
    }

    /// [`apply`](Self::apply), finding services through `index`, which it keeps up to date:
    /// a batch of edits (`lbadm -R` of a whole table) then finds each service at once instead
    /// of reading every entry of `services` again.
    fn apply_indexed(
        &self,
        document: &mut Document,
        index: &mut ServiceIndex,
    ) -> Result<(), EditError> {
        match self {
            Edit::AddService { service } => {
                // A duplicate is refused here with ipvsadm's words rather than the
                // validator's, when the new entry's key is readable.
                if let Some(named) = service_ref_of(service)
                    && index.find(document, named).is_ok()
                {
                    return Err(EditError::ServiceExists(named));
                }
                let services = services(document)?;
                services.push(Value::Object(service.clone()));
                match service_ref_of(service) {
                    Some(named) => index.added(named, services.len() - 1),
                    None => index.forget(),
                }
            }
            Edit::EditService { service, set } => {
                refuse_naming_keys(set, &["vip", "port", "protocol"], "service")?;
                let index = index.find(document, *service)?;
                merge(&mut services(document)?[index], set)?;
            }
            Edit::DeleteService { service } => {
                let found = index.find(document, *service)?;
                services(document)?.remove(found);
                index.forget();
            }
            Edit::AddReal { service, real } => {
                let index = index.find(document, *service)?;
                let entry = &mut services(document)?[index];
                let service_port = u16::try_from(entry["port"].as_u64().unwrap_or(0)).unwrap_or(0);
                if let Some((address, port)) = real_key_of(real, service_port)
                    && find_real(entry, *service, address, port).is_ok()
                {
                    return Err(EditError::RealExists {
                        service: *service,
                        real: socket_text(address, port),
                    });
                }
                let mut real = Value::Object(real.clone());
                inherit_forward(&mut real, entry);
                reals(entry)?.push(real);
            }
            Edit::EditReal {
                service,
                address,
                port,
                set,
            } => {
                refuse_naming_keys(set, &["address", "port"], "real")?;
                let index = index.find(document, *service)?;
                let entry = &mut services(document)?[index];
                let found = find_real(entry, *service, *address, *port)?;
                let mut real = reals(entry)?[found].take();
                merge(&mut real, set)?;
                inherit_forward(&mut real, entry);
                reals(entry)?[found] = real;
            }
            Edit::DeleteReal {
                service,
                address,
                port,
            } => {
                let index = index.find(document, *service)?;
                let entry = &mut services(document)?[index];
                let found = find_real(entry, *service, *address, *port)?;
                reals(entry)?.remove(found);
            }
            Edit::Clear => {
                if let Some(object) = document.as_object_mut() {
                    object.insert("services".to_owned(), Value::Array(Vec::new()));
                }
                index.forget();
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
        Ok(())
    }
}

/// Makes `edits` one after the other on `document`; the first that fails is returned with
/// its place in `edits`.
pub fn apply_all(edits: &[Edit], document: &mut Document) -> Result<(), (usize, EditError)> {
    let mut index = ServiceIndex::default();
    for (place, edit) in edits.iter().enumerate() {
        edit.apply_indexed(document, &mut index)
            .map_err(|error| (place, error))?;
    }
    Ok(())
}

/// Where each service is in the document's `services`, read once and kept until the list
/// changes shape. Built on the first lookup, so a single edit reads the list once, as before.
#[derive(Default)]
struct ServiceIndex {
    places: Option<std::collections::HashMap<ServiceRef, usize>>,
}

impl ServiceIndex {
    fn find(&mut self, document: &Document, wanted: ServiceRef) -> Result<usize, EditError> {
        let places = self.places.get_or_insert_with(|| {
            let mut places = std::collections::HashMap::new();
            let entries = document.get("services").and_then(Value::as_array);
            for (place, entry) in entries.into_iter().flatten().enumerate() {
                // The first of duplicates, as a scan finds (the validator refuses them).
                if let Some(named) = entry.as_object().and_then(service_ref_of) {
                    places.entry(named).or_insert(place);
                }
            }
            places
        });
        places
            .get(&wanted)
            .copied()
            .ok_or(EditError::NoSuchService(wanted))
    }

    /// `named` was pushed at `place`.
    fn added(&mut self, named: ServiceRef, place: usize) {
        if let Some(places) = &mut self.places {
            places.entry(named).or_insert(place);
        }
    }

    /// The list changed shape: read it again at the next lookup.
    fn forget(&mut self) {
        self.places = None;
    }
}

/// A real whose method is its service's takes it from the service instead of naming it:
/// ipvsadm's rules (and `lbadm -S`'s) name every real's method, and a restore must leave the
/// reals that followed their service still following it.
fn inherit_forward(real: &mut Value, service: &Value) {
    let service_forward = service
        .get("forward")
        .and_then(Value::as_str)
        .unwrap_or("dr");
    if let Some(object) = real.as_object_mut()
        && object.get("forward").and_then(Value::as_str) == Some(service_forward)
    {
        object.remove("forward");
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

/// The index of the real `address:port` among a service entry's `reals` (a real without a
/// port has the service's).
fn find_real(
    service: &Value,
    wanted: ServiceRef,
    address: IpAddr,
    port: u16,
) -> Result<usize, EditError> {
    service
        .get("reals")
        .and_then(Value::as_array)
        .and_then(|reals| {
            reals.iter().position(|entry| {
                entry
                    .as_object()
                    .and_then(|entry| real_key_of(entry, wanted.port))
                    == Some((address, port))
            })
        })
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

/// The real an entry names, if its keys read plainly (the port defaults to the service's).
fn real_key_of(entry: &Map<String, Value>, service_port: u16) -> Option<(IpAddr, u16)> {
    let address = entry.get("address")?.as_str()?.parse().ok()?;
    let port = match entry.get("port") {
        Some(port) => u16::try_from(port.as_u64()?).ok()?,
        None => service_port,
    };
    Some((address, port))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(port: u16) -> ServiceRef {
        ServiceRef {
            protocol: Protocol::Tcp,
            vip: "192.0.2.10".parse().unwrap(),
            port,
        }
    }

    fn add_service(port: u16) -> Edit {
        let entry = json!({"vip": "192.0.2.10", "port": port, "protocol": "tcp"});
        Edit::AddService {
            service: entry.as_object().unwrap().clone(),
        }
    }

    fn add_real(port: u16, last: u8) -> Edit {
        let entry = json!({"address": format!("192.0.2.{last}"), "forward": "dr"});
        Edit::AddReal {
            service: service(port),
            real: entry.as_object().unwrap().clone(),
        }
    }

    /// A batch finds services added, deleted and added again within it, as one edit at a
    /// time would, and names the first edit that fails by its place.
    #[test]
    fn a_batch_keeps_finding_services_as_the_list_changes() {
        let mut document = json!({"instance": "t", "services": []});
        let mut edits = Vec::new();
        for port in 1..=300 {
            edits.push(add_service(port));
            edits.push(add_real(port, 11));
            edits.push(add_real(port, 12));
        }
        edits.push(Edit::DeleteService {
            service: service(150),
        });
        edits.push(add_real(151, 13));
        edits.push(add_service(150));
        edits.push(add_real(150, 14));
        apply_all(&edits, &mut document).unwrap();
        let services = document["services"].as_array().unwrap();
        assert_eq!(services.len(), 300);
        let last = &services[299];
        assert_eq!(
            (
                last["port"].as_u64(),
                last["reals"].as_array().unwrap().len()
            ),
            (Some(150), 1)
        );
        assert_eq!(services[149]["port"], 151);
        assert_eq!(services[149]["reals"].as_array().unwrap().len(), 3);
        // Inherited: dr is the default method, so the reals do not name it.
        assert!(services[0]["reals"][0].get("forward").is_none());

        let refused = [add_service(400), add_real(400, 11), add_service(400)];
        let Err((place, error)) = apply_all(&refused, &mut document) else {
            panic!("a duplicate service was added");
        };
        assert_eq!(place, 2);
        assert_eq!(error, EditError::ServiceExists(service(400)));
        let Err((place, error)) = apply_all(&[add_real(999, 11)], &mut document) else {
            panic!()
        };
        assert_eq!((place, error), (0, EditError::NoSuchService(service(999))));
    }
}
