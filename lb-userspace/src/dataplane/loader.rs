//! Loading the XDP program: map sizes from the config, pins under the instance's directory,
//! attachment through a pinned bpf_link.
//!
//! Pins are what let a restarted daemon adopt a running data plane: maps found pinned are
//! reused as they are (flows included), and a pinned link gets the new program swapped in
//! atomically (`bpf_link_update`) instead of being detached.

use std::{
    io,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, Map, MapData, ProgramArray};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, Xdp,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::{
    Flow, FlowKey, MAP_CONNS, MAP_EGRESS, MAP_FLOWS, MAP_FRAGMENT_SERVICES, MAP_PERSISTENCE,
    MAP_REAL_OUT_STATS, MAP_REAL_STATS, MAP_REALS, MAP_REPLIES, MAP_RR_CURSOR, MAP_SCHEDULES,
    MAP_SERVICE_OUT_STATS, MAP_SERVICE_STATS, MAP_SERVICES, MAP_TABLES, PREVIOUS_MAP_FLOWS,
    PROTO_TCP, PreviousFlow, RETIRED_MAPS, Real, Service, ServiceKey,
    capture::{CAPTURE_SECTION, MAP_CAPTURE},
    conntrack::{STATE_ESTABLISHED, STATE_UDP},
};

use crate::{
    EBPF_OBJECT, PROGRAM_BALANCER,
    config::{Limits, XdpMode},
    dataplane::{
        CaptureMaps, DataplaneError, EbpfDataplane, EbpfReader, MapHandles, Sweeper, batch,
        insert_new,
    },
};

/// The largest MTU whose frames fit one page-sized XDP buffer on common drivers (4096 minus
/// headroom and the shared info; veth and mlx5 use this bound).
const SINGLE_BUFFER_MTU: u32 = 3498;

/// Where bpffs is mounted on a normal host, and mounted by us when it is not.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bpffs: {path}: {source}")]
    Bpffs { path: PathBuf, source: io::Error },
    #[error("pin directory {0} is not on a bpf filesystem (mount one with `mount -t bpf bpf DIR`)")]
    NotBpffs(PathBuf),
    #[error("loading the XDP program: {0}")]
    Load(Box<aya::EbpfError>),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: Box<ProgramError>,
    },
    #[error("program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(
        "map {map} pinned at {path} holds {pinned} entries but the config's limits ask for \
         {wanted}: a pinned map keeps its size. Restore the old limits, or run \
         `lbd --teardown --config FILE` (drops every flow) and start again"
    )]
    LimitsChanged {
        map: &'static str,
        path: PathBuf,
        pinned: u32,
        wanted: u32,
    },
    #[error("reading pinned map {path}: {source}")]
    PinnedMap {
        path: PathBuf,
        source: Box<aya::maps::MapError>,
    },
    #[error("attaching to {interface} (ifindex {ifindex}, mode {mode}): {source}{hint}")]
    Attach {
        interface: String,
        ifindex: u32,
        mode: &'static str,
        source: Box<ProgramError>,
        hint: String,
    },
    #[error("pinning the XDP link of {interface} at {path}: {message}")]
    PinLink {
        interface: String,
        path: PathBuf,
        message: String,
    },
}

/// The program, loaded and verified, with its maps taken out: the writer's, the readers', the
/// flow sweep's and the capture's.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub dataplane: EbpfDataplane,
    pub reader: EbpfReader,
    pub sweeper: Sweeper,
    pub capture: CaptureMaps,
}

/// Loads the program with maps sized from `limits`. With `pin_dir`, every map is pinned there,
/// and maps already pinned there are adopted as they are.
pub fn load(limits: &Limits, pin_dir: Option<&Path>) -> Result<Loaded, LoadError> {
    if let Some(dir) = pin_dir {
        prepare_pin_dir(dir)?;
    }
    let map_sizes = [
        (MAP_SERVICES, limits.services),
        (MAP_SCHEDULES, limits.services),
        (MAP_REALS, limits.reals),
        (MAP_TABLES, limits.table_slots),
        (MAP_FLOWS, limits.flows),
        // Sized from limits.flows: checked after the flow table, so a changed limit is
        // reported by the map it names.
        (MAP_PERSISTENCE, persistence_entries(limits)),
        (MAP_CONNS, limits.reals),
        (MAP_EGRESS, limits.reals),
        (MAP_REPLIES, limits.flows),
        (MAP_FRAGMENT_SERVICES, limits.services),
        (MAP_RR_CURSOR, limits.services),
        (MAP_SERVICE_STATS, limits.services),
        (MAP_REAL_STATS, limits.reals),
        (MAP_SERVICE_OUT_STATS, limits.services),
        (MAP_REAL_OUT_STATS, limits.reals),
    ];
    // Each map by its name in the object; the capture's is its section's.
    let pin_paths: Vec<(&str, PathBuf)> = match pin_dir {
        Some(dir) => lb_common::ALL_MAPS
            .iter()
            .map(|&name| match name {
                MAP_CAPTURE => (CAPTURE_SECTION, dir.join(name)),
                _ => (name, dir.join(name)),
            })
            .collect(),
        None => Vec::new(),
    };
    if let Some(dir) = pin_dir {
        check_pinned_sizes(dir, &map_sizes)?;
    }
    let mut loader = EbpfLoader::new();
    for (name, size) in map_sizes {
        loader.map_max_entries(name, size);
    }
    for (name, path) in &pin_paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(EBPF_OBJECT)
        .map_err(|e| LoadError::Load(Box::new(e)))?;
    balancer(&mut ebpf)?
        .load()
        .map_err(|source| LoadError::Program {
            name: PROGRAM_BALANCER,
            source: Box::new(source),
        })?;
    load_forwarding_programs(&mut ebpf)?;
    let MapHandles {
        dataplane,
        reader,
        sweeper,
        capture,
    } = EbpfDataplane::from_ebpf(&mut ebpf, pin_dir)?;
    if let Some(dir) = pin_dir {
        migrate_previous_flows(dir, &reader)?;
    }
    Ok(Loaded {
        ebpf,
        dataplane,
        reader,
        sweeper,
        capture,
    })
}

/// Copies the flows of the previous flow table ([`PREVIOUS_MAP_FLOWS`], left pinned by an
/// older lbd whose program may still be running) into today's, counting each in its real's
/// connections; flows today's table already holds are left as they are. Returns how many were
/// copied.
///
/// Run it twice: before the new program replaces the old one, so that the new program finds
/// every flow, and again after, for the flows the old program recorded in between; then the
/// old table can go.
///
/// The old table kept no TCP state: its TCP flows count as established (they then live out
/// the established timeout, however they were closing).
pub fn migrate_previous_flows(pin_dir: &Path, reader: &EbpfReader) -> Result<u64, LoadError> {
    let path = pin_dir.join(PREVIOUS_MAP_FLOWS);
    if !path.exists() {
        return Ok(0);
    }
    let pinned_error = |source| LoadError::PinnedMap {
        path: path.clone(),
        source: Box::new(source),
    };
    let old = MapData::from_pin(&path).map_err(pinned_error)?;
    let mut flows = Vec::new();
    batch::for_each::<FlowKey, PreviousFlow>(old.fd().as_fd(), |key, flow| {
        flows.push((*key, *flow))
    })
    .map_err(|source| syscall_error(PREVIOUS_MAP_FLOWS, "BPF_MAP_LOOKUP_BATCH", source))?;
    let mut copied = 0;
    for (key, old) in flows {
        let state = if key.protocol == PROTO_TCP {
            STATE_ESTABLISHED
        } else {
            STATE_UDP
        };
        let flow = Flow {
            real_id: old.real_id,
            service_id: old.service_id,
            last_seen_ns: old.last_seen_ns,
            state: u32::from(state),
            ..Flow::default()
        };
        // Counted first: a real id the counts cannot hold (the old layout allowed more reals)
        // leaves the flow behind instead of failing the start half-way.
        if reader.add_connection(flow.real_id, state, 1).is_err() {
            continue;
        }
        let inserted = match insert_new(reader.flows().fd().as_fd(), &key, &flow) {
            Ok(inserted) => inserted,
            // Today's table is smaller than the old one's flows: keep what fits.
            Err(error) if error.raw_os_error() == Some(libc::E2BIG) => {
                reader.add_connection(flow.real_id, state, -1)?;
                log::warn!(
                    "the flow table ({MAP_FLOWS}) is full: kept {copied} flows of the previous \
                     layout, the rest are forgotten (raise limits.flows)"
                );
                break;
            }
            Err(source) => {
                reader.add_connection(flow.real_id, state, -1)?;
                return Err(syscall_error(MAP_FLOWS, "BPF_MAP_UPDATE_ELEM", source));
            }
        };
        if inserted {
            copied += 1;
        } else {
            // Today's table has the flow already (the first pass, or the new program).
            reader.add_connection(flow.real_id, state, -1)?;
        }
    }
    Ok(copied)
}

fn syscall_error(map: &'static str, call: &'static str, source: io::Error) -> LoadError {
    LoadError::Dataplane(DataplaneError::Syscall { map, call, source })
}

/// Clients the persistence map remembers: a quarter of the flow table, at least 1024. An LRU,
/// so when more clients than that are persistent, the least recently seen ones start afresh.
pub fn persistence_entries(limits: &Limits) -> u32 {
    (limits.flows / 4).max(1024)
}

/// What a daemon of the previous layout (`LB_SERVICES_V1`, `LB_REALS_V1`: one copy per real,
/// ring state in the service entry) left pinned in `pin_dir`, in today's types, so that an
/// upgrade keeps every service's and real's id, and so every flow its real. `None` when
/// there is no such map.
#[expect(
    clippy::type_complexity,
    reason = "the two lists, as `Existing` holds them"
)]
pub fn previous_layout(
    pin_dir: &Path,
) -> Result<Option<(Vec<(ServiceKey, Service)>, Vec<(u32, Real)>)>, LoadError> {
    let services_path = pin_dir.join("LB_SERVICES_V1");
    let reals_path = pin_dir.join("LB_REALS_V1");
    if !services_path.exists() && !reals_path.exists() {
        return Ok(None);
    }
    let pinned_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::PinnedMap {
            path,
            source: Box::new(source),
        }
    };
    let mut services = Vec::new();
    if services_path.exists() {
        let data = MapData::from_pin(&services_path).map_err(pinned_error(&services_path))?;
        // The old value: id, ring length, flags, forward, ring half: the id is what counts.
        let map: HashMap<_, ServiceKey, [u32; 4]> =
            HashMap::try_from(Map::HashMap(data)).map_err(pinned_error(&services_path))?;
        for entry in map.iter() {
            let (key, old) = entry.map_err(pinned_error(&services_path))?;
            services.push((
                key,
                Service {
                    id: old[0],
                    flags: old[2],
                    forward: old[3].to_ne_bytes()[0],
                    ..Service::default()
                },
            ));
        }
    }
    let mut reals = Vec::new();
    if reals_path.exists() {
        let data = MapData::from_pin(&reals_path).map_err(pinned_error(&reals_path))?;
        let array: Array<_, Real> =
            Array::try_from(Map::Array(data)).map_err(pinned_error(&reals_path))?;
        for (id, entry) in array.iter().enumerate() {
            let real = entry.map_err(pinned_error(&reals_path))?;
            if real != Real::default() {
                reals.push((id as u32, real));
            }
        }
    }
    Ok(Some((services, reals)))
}

/// Unpins the maps of earlier layouts. Call once this version's program runs on every link:
/// until then the previous program may still be using them.
pub fn remove_retired_pins(pin_dir: &Path) {
    for name in RETIRED_MAPS {
        let path = pin_dir.join(name);
        if path.exists() {
            match std::fs::remove_file(&path) {
                Ok(()) => log::info!("removed {} (a map of an earlier version)", path.display()),
                Err(error) => log::warn!("removing {}: {error}", path.display()),
            }
        }
    }
}

/// Refuses to adopt pinned maps whose sizes differ from what the limits ask: aya would reuse
/// them as they are, and ids sized for the new limits could fall outside them.
fn check_pinned_sizes(dir: &Path, map_sizes: &[(&'static str, u32)]) -> Result<(), LoadError> {
    for &(map, wanted) in map_sizes {
        let path = dir.join(map);
        if !path.exists() {
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(&path).map_err(|source| LoadError::PinnedMap {
            path: path.clone(),
            source: Box::new(source),
        })?;
        if info.max_entries() != wanted {
            return Err(LoadError::LimitsChanged {
                map,
                path,
                pinned: info.max_entries(),
                wanted,
            });
        }
    }
    Ok(())
}

/// Loads the forwarding programs the balancer tail-calls (tunnel, NAT, NAT replies) and puts
/// them in its program array, each at its `FORWARD_STAGES` index. The array is pinned like
/// the other maps: a prog array's entries are cleared when its last user reference goes, and
/// the program must keep forwarding while lbd is stopped.
fn load_forwarding_programs(ebpf: &mut Ebpf) -> Result<(), LoadError> {
    for (index, name) in lb_common::FORWARD_STAGES.iter().enumerate() {
        let program: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()
            .map_err(|source| LoadError::Program {
                name,
                source: Box::new(source),
            })?;
        program.load().map_err(|source| LoadError::Program {
            name,
            source: Box::new(source),
        })?;
        let fd = program
            .fd()
            .map_err(|source| LoadError::Program {
                name,
                source: Box::new(source),
            })?
            .try_clone()
            .map_err(|source| LoadError::Program {
                name,
                source: Box::new(ProgramError::IOError(source)),
            })?;
        let map = ebpf
            .map_mut(lb_common::MAP_FORWARD_PROGRAMS)
            .ok_or(LoadError::MissingMap(lb_common::MAP_FORWARD_PROGRAMS))?;
        let mut programs = ProgramArray::try_from(map).map_err(|source| LoadError::PinnedMap {
            path: PathBuf::from(lb_common::MAP_FORWARD_PROGRAMS),
            source: Box::new(source),
        })?;
        programs
            .set(index as u32, &fd, 0)
            .map_err(|source| LoadError::PinnedMap {
                path: PathBuf::from(lb_common::MAP_FORWARD_PROGRAMS),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// The balancer program of a loaded object.
pub fn balancer(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    ebpf.program_mut(PROGRAM_BALANCER)
        .ok_or(LoadError::MissingProgram(PROGRAM_BALANCER))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: PROGRAM_BALANCER,
            source: Box::new(source),
        })
}

/// Pin path of the XDP link on `interface`.
pub fn link_pin_path(pin_dir: &Path, interface: &str) -> PathBuf {
    pin_dir.join(format!("link_{interface}"))
}

/// Interfaces with a link pinned in `pin_dir` (by this daemon or an earlier one).
pub fn pinned_links(pin_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(pin_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix("link_").map(str::to_owned)
        })
        .collect()
}

/// How the program ended up on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// A new link was created (and pinned, when there is a pin directory).
    Attached,
    /// A link pinned by an earlier daemon now runs this program.
    Replaced,
}

/// Attaches the balancer to `interface`. With `pin_dir`, the link is pinned so that it outlives
/// this process; a link already pinned there is updated in place, so forwarding never stops.
///
/// The program is built for multi-buffer frames (`xdp.frags`), so a jumbo MTU is fine for
/// drivers that support them; a driver that does not refuses native mode, and the error then
/// names the MTU.
pub fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    ifindex: u32,
    mtu: u32,
    mode: XdpMode,
    pin_dir: Option<&Path>,
) -> Result<Attachment, LoadError> {
    let program = balancer(ebpf)?;
    let attach_error = |source: ProgramError| {
        let hint = if is_busy(&source) {
            ": another XDP program is attached (remove it with `ip link set dev IFACE xdp off`)"
                .to_owned()
        } else if mtu > SINGLE_BUFFER_MTU && mode != XdpMode::Generic {
            format!(
                ": the MTU is {mtu}, and frames that large need a driver with multi-buffer \
                 XDP; lower the MTU to {SINGLE_BUFFER_MTU} or less, or use `xdp_mode: generic`"
            )
        } else {
            String::new()
        };
        LoadError::Attach {
            interface: interface.to_owned(),
            ifindex,
            mode: mode.name(),
            source: Box::new(source),
            hint,
        }
    };
    let Some(pin_dir) = pin_dir else {
        // The link lives as long as `ebpf`.
        program
            .attach_to_if_index(ifindex, aya_mode(mode))
            .map_err(attach_error)?;
        return Ok(Attachment::Attached);
    };

    let pin_path = link_pin_path(pin_dir, interface);
    if pin_path.exists() {
        match adopt_link(program, &pin_path) {
            Ok(()) => return Ok(Attachment::Replaced),
            // The interface went away and came back: the old link is defunct. Start afresh.
            Err(error) => {
                log::warn!(
                    "pinned link {} unusable ({error}); attaching anew",
                    pin_path.display()
                );
                let _ = std::fs::remove_file(&pin_path);
            }
        }
    }
    let link_id = program
        .attach_to_if_index(ifindex, aya_mode(mode))
        .map_err(attach_error)?;
    let pin_error = |message: String| LoadError::PinLink {
        interface: interface.to_owned(),
        path: pin_path.clone(),
        message,
    };
    let link = program
        .take_link(link_id)
        .map_err(|e| pin_error(e.to_string()))?;
    let fd_link = FdLink::try_from(link).map_err(|e| pin_error(e.to_string()))?;
    fd_link
        .pin(&pin_path)
        .map_err(|e| pin_error(e.to_string()))?;
    Ok(Attachment::Attached)
}

fn adopt_link(program: &mut Xdp, pin_path: &Path) -> Result<(), String> {
    let pinned = PinnedLink::from_pin(pin_path).map_err(|e| e.to_string())?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| e.to_string())?;
    let id = program.attach_to_link(link).map_err(|e| e.to_string())?;
    // The pin alone holds the link from here, as after a fresh attach (dropping our handle
    // closes it, nothing more), so that removing the pin lets it go.
    drop(program.take_link(id).map_err(|e| e.to_string())?);
    Ok(())
}

/// Detaches the program from `interface` and removes its pinned link. `BPF_LINK_DETACH`
/// detaches whoever else still holds the link open.
pub fn detach_link(pin_dir: &Path, interface: &str) -> io::Result<()> {
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_LINK_DETACH: libc::c_long = 34;
    #[repr(C)]
    #[derive(Default)]
    struct ObjGetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    #[repr(C)]
    #[derive(Default)]
    struct LinkDetachAttr {
        link_fd: u32,
    }
    let path = link_pin_path(pin_dir, interface);
    let text =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let mut get = ObjGetAttr {
        pathname: text.as_ptr() as u64,
        ..ObjGetAttr::default()
    };
    // SAFETY: `get` is an initialised `bpf_attr` prefix for BPF_OBJ_GET; its path points at
    // `text`, NUL-terminated, alive for the call.
    let fd = unsafe { crate::dataplane::ebpf::syscall::bpf(BPF_OBJ_GET, &mut get) }?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let mut detach = LinkDetachAttr {
        link_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
    };
    // SAFETY: `detach` is an initialised `bpf_attr` prefix for BPF_LINK_DETACH, no pointers.
    unsafe { crate::dataplane::ebpf::syscall::bpf(BPF_LINK_DETACH, &mut detach) }?;
    std::fs::remove_file(&path)
}

fn is_busy(error: &ProgramError) -> bool {
    matches!(error, ProgramError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::EBUSY))
}

fn aya_mode(mode: XdpMode) -> aya::programs::XdpMode {
    match mode {
        XdpMode::Native => aya::programs::XdpMode::Driver,
        XdpMode::Generic => aya::programs::XdpMode::Skb,
        XdpMode::Auto => aya::programs::XdpMode::Default,
    }
}

/// Removes everything pinned for an instance: the links (which detaches the program) and the
/// maps (which drops the flow table).
pub fn unpin_all(pin_dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(pin_dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Makes sure `dir` exists on a bpffs, mounting bpffs at its usual place when it is missing
/// there (some hosts boot without it).
fn prepare_pin_dir(dir: &Path) -> Result<(), LoadError> {
    let bpffs_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Bpffs { path, source }
    };
    let root = Path::new(BPFFS_ROOT);
    if dir.starts_with(root) && !is_bpffs(root).map_err(bpffs_error(root))? {
        mount_bpffs(root).map_err(bpffs_error(root))?;
        log::info!("mounted bpffs at {BPFFS_ROOT}");
    }
    std::fs::create_dir_all(dir).map_err(bpffs_error(dir))?;
    if !is_bpffs(dir).map_err(bpffs_error(dir))? {
        return Err(LoadError::NotBpffs(dir.to_path_buf()));
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

fn mount_bpffs(path: &Path) -> io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: all strings are NUL-terminated; no data argument.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c_path.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
