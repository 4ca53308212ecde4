//! The id maps ([`MAP_SERVICE_IDS`], [`MAP_REAL_IDS`]): which id each service and real has,
//! kept apart from their entries so that ids survive a change of those entries' layout (see
//! lb-common). lbd alone uses them, so it creates and pins them itself rather than through the
//! program's object.
//!
//! They follow the service and real maps: [`EbpfDataplane`](super::EbpfDataplane) writes an id
//! here whenever it writes the entry, and removes it with the entry.

use std::{
    collections::HashMap as StdHashMap,
    io,
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
};

use aya::maps::{HashMap, Map, MapData};
use lb_common::{
    FORWARD_FULLNAT, MAP_REAL_IDS, MAP_SERVICE_IDS, Real, RealIdKey, RealIdentity, ServiceKey,
};

use super::{DataplaneError, map_err, syscall::bpf};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_MAP_TYPE_HASH: u32 = 1;
/// Entries are allocated as they are inserted: the maps are small and rarely written.
const BPF_F_NO_PREALLOC: u32 = 1;

/// The start of the kernel's `union bpf_attr` for `BPF_MAP_CREATE`; the kernel takes the
/// fields it is not given as zero.
#[repr(C)]
#[derive(Default)]
struct CreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for `BPF_OBJ_PIN`.
#[repr(C)]
#[derive(Default)]
struct PinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

fn syscall_error(
    map: &'static str,
    call: &'static str,
) -> impl FnOnce(io::Error) -> DataplaneError {
    move |source| DataplaneError::Syscall { map, call, source }
}

/// Opens the map pinned at `dir/name`, or creates it (and pins it there, with a `dir`).
fn open_or_create(
    dir: Option<&Path>,
    name: &'static str,
    key_size: usize,
    value_size: usize,
    max_entries: u32,
) -> Result<MapData, DataplaneError> {
    let path = dir.map(|dir| dir.join(name));
    if let Some(path) = &path
        && path.exists()
    {
        let data = MapData::from_pin(path).map_err(map_err(name))?;
        let size = data.info().map_err(map_err(name))?.max_entries();
        if size != max_entries {
            return Err(DataplaneError::Syscall {
                map: name,
                call: "adopting the pinned map",
                source: io::Error::other(format!(
                    "pinned with {size} entries, the limits ask for {max_entries}"
                )),
            });
        }
        return Ok(data);
    }
    let mut attr = CreateAttr {
        map_type: BPF_MAP_TYPE_HASH,
        key_size: key_size as u32,
        value_size: value_size as u32,
        max_entries,
        map_flags: BPF_F_NO_PREALLOC,
        ..CreateAttr::default()
    };
    attr.map_name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `attr` is an initialised `bpf_attr` prefix for BPF_MAP_CREATE and holds no
    // pointers.
    let fd =
        unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map_err(syscall_error(name, "BPF_MAP_CREATE"))?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if let Some(path) = path {
        let text = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|error| syscall_error(name, "BPF_OBJ_PIN")(io::Error::other(error)))?;
        let mut pin = PinAttr {
            pathname: text.as_ptr() as u64,
            bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
            file_flags: 0,
        };
        // SAFETY: `pin` is an initialised `bpf_attr` prefix for BPF_OBJ_PIN; its path points
        // at `text`, a NUL-terminated string that outlives the call.
        unsafe { bpf(BPF_OBJ_PIN, &mut pin) }.map_err(syscall_error(name, "BPF_OBJ_PIN"))?;
    }
    MapData::from_fd(fd).map_err(map_err(name))
}

/// The two id maps, and the key of each real id (to remove it when the id is retired).
pub struct Identities {
    services: HashMap<MapData, ServiceKey, u32>,
    reals: HashMap<MapData, RealIdKey, RealIdentity>,
    service_ids: StdHashMap<ServiceKey, u32>,
    real_keys: StdHashMap<u32, (RealIdKey, RealIdentity)>,
    /// The map's own view: which id each key names.
    id_by_key: StdHashMap<RealIdKey, u32>,
}

impl Identities {
    /// Opens the maps pinned in `dir`, or creates them there (unpinned without a `dir`).
    pub fn open(dir: Option<&Path>, services: u32, reals: u32) -> Result<Self, DataplaneError> {
        let service_map = open_or_create(dir, MAP_SERVICE_IDS, 20, 4, services)?;
        let real_map = open_or_create(dir, MAP_REAL_IDS, 24, 16, reals)?;
        let services: HashMap<MapData, ServiceKey, u32> =
            HashMap::try_from(Map::HashMap(service_map)).map_err(map_err(MAP_SERVICE_IDS))?;
        let reals: HashMap<MapData, RealIdKey, RealIdentity> =
            HashMap::try_from(Map::HashMap(real_map)).map_err(map_err(MAP_REAL_IDS))?;
        let mut service_ids = StdHashMap::new();
        for entry in services.iter() {
            let (key, id) = entry.map_err(map_err(MAP_SERVICE_IDS))?;
            service_ids.insert(key, id);
        }
        let mut real_keys = StdHashMap::new();
        let mut id_by_key = StdHashMap::new();
        for entry in reals.iter() {
            let (key, identity) = entry.map_err(map_err(MAP_REAL_IDS))?;
            real_keys.insert(identity.id, (key, identity));
            id_by_key.insert(key, identity.id);
        }
        Ok(Self {
            services,
            reals,
            service_ids,
            real_keys,
            id_by_key,
        })
    }

    pub fn set_service(&mut self, key: ServiceKey, id: u32) -> Result<(), DataplaneError> {
        if self.service_ids.get(&key) == Some(&id) {
            return Ok(());
        }
        self.services
            .insert(key, id, 0)
            .map_err(map_err(MAP_SERVICE_IDS))?;
        self.service_ids.insert(key, id);
        Ok(())
    }

    pub fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        if self.service_ids.remove(key).is_some() {
            remove(&mut self.services, key, MAP_SERVICE_IDS)?;
        }
        Ok(())
    }

    /// Records real `id` as `real` names it (`Real::default()` retires the id), with the
    /// digest of its full-NAT local addresses.
    pub fn set_real(
        &mut self,
        id: u32,
        real: &Real,
        sources: &[[u8; 16]],
    ) -> Result<(), DataplaneError> {
        let wanted = (*real != Real::default()).then(|| {
            (
                RealIdKey {
                    service_id: real.service_id,
                    addr: real.addr,
                    port_be: real.port_be,
                    family: real.family,
                    _pad: 0,
                },
                RealIdentity {
                    id,
                    forward: real.forward,
                    _pad: [0; 3],
                    sources_digest: if real.forward == FORWARD_FULLNAT {
                        sources_digest(sources)
                    } else {
                        0
                    },
                },
            )
        });
        let current = self.real_keys.get(&id).copied();
        if current == wanted {
            return Ok(());
        }
        if let Some((key, _)) = current
            && wanted.is_none_or(|(new_key, _)| new_key != key)
        {
            self.real_keys.remove(&id);
            // The key may name another id by now (the real took a new id, written before
            // this one was retired): that entry stays.
            if self.id_by_key.get(&key) == Some(&id) {
                remove(&mut self.reals, &key, MAP_REAL_IDS)?;
                self.id_by_key.remove(&key);
            }
        }
        if let Some((key, identity)) = wanted {
            self.reals
                .insert(key, identity, 0)
                .map_err(map_err(MAP_REAL_IDS))?;
            // An id that held this key before loses it.
            if let Some(previous) = self.id_by_key.insert(key, id)
                && previous != id
            {
                self.real_keys.remove(&previous);
            }
            self.real_keys.insert(id, (key, identity));
        }
        Ok(())
    }

    /// Every service's id.
    pub fn services(&self) -> impl Iterator<Item = (ServiceKey, u32)> + '_ {
        self.service_ids.iter().map(|(key, id)| (*key, *id))
    }

    /// Every real's identity.
    pub fn reals(&self) -> impl Iterator<Item = (RealIdKey, RealIdentity)> + '_ {
        self.real_keys.values().copied()
    }
}

fn remove<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<(), DataplaneError> {
    match map.remove(key) {
        Ok(()) => Ok(()),
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(error) => Err(map_err(name)(error)),
    }
}

/// FNV-1a over the addresses, in order: equal lists give equal digests.
pub fn sources_digest(sources: &[[u8; 16]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sources.iter().flatten() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
