//! The decapsulation program: loaded from the same object as the balancer, its two maps
//! (unpinned), attachment, and its counters.

use std::collections::HashSet;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{ProgramError, Xdp, xdp::XdpLinkId},
};
use lb_common::{
    Counters, MAP_REASON_STATS, Reason,
    decap::{DecapAddrKey, DecapConfig, MAP_DECAP_ADDRS, MAP_DECAP_CONFIG, MAX_DECAP_ADDRS},
};

use super::{
    DecapError,
    addresses::{DecapAddresses, key},
};
use crate::{EBPF_OBJECT, PROGRAM_DECAP, config::XdpMode};

/// The program, loaded and verified, with handles on its maps.
pub struct DecapProgram {
    ebpf: Ebpf,
    addresses: HashMap<MapData, DecapAddrKey, u32>,
    config: Array<MapData, DecapConfig>,
    reasons: PerCpuArray<MapData, Counters>,
    /// What the address map holds, as last written.
    written: DecapAddresses,
}

/// The program's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecapCounters {
    /// Tunnel packets whose outer headers were taken off.
    pub decapsulated: Counters,
    /// Tunnel packets passed as they came: not for this host, or malformed.
    pub not_decapsulated: Counters,
}

impl DecapProgram {
    /// Loads the object and the decapsulation program (not attached). The balancer's maps
    /// are created too, at their small placeholder sizes, and left unused.
    pub fn load() -> Result<DecapProgram, DecapError> {
        let mut ebpf = EbpfLoader::new()
            .load(EBPF_OBJECT)
            .map_err(|source| DecapError::Load(Box::new(source)))?;
        program(&mut ebpf)?
            .load()
            .map_err(|source| DecapError::Program(Box::new(source)))?;
        let map_error = |map: &'static str| move |source| DecapError::Map { map, source };
        let mut take = |name: &'static str| {
            ebpf.take_map(name).ok_or(DecapError::Map {
                map: name,
                source: MapError::InvalidName {
                    name: name.to_owned(),
                },
            })
        };
        let addresses =
            HashMap::try_from(take(MAP_DECAP_ADDRS)?).map_err(map_error(MAP_DECAP_ADDRS))?;
        let config =
            Array::try_from(take(MAP_DECAP_CONFIG)?).map_err(map_error(MAP_DECAP_CONFIG))?;
        let reasons =
            PerCpuArray::try_from(take(MAP_REASON_STATS)?).map_err(map_error(MAP_REASON_STATS))?;
        Ok(DecapProgram {
            ebpf,
            addresses,
            config,
            reasons,
            written: DecapAddresses::new(),
        })
    }

    /// Sets the UDP port GUE packets arrive on; 0 turns GUE off (IPIP only).
    pub fn set_gue_port(&mut self, port: u16) -> Result<(), DecapError> {
        let config = DecapConfig {
            gue_port_be: port.to_be(),
            _pad: 0,
        };
        self.config
            .set(0, config, 0)
            .map_err(|source| DecapError::Map {
                map: MAP_DECAP_CONFIG,
                source,
            })
    }

    /// Makes the address map hold `wanted`: addresses no longer wanted go first, then new
    /// or changed ones are written. Returns whether anything changed.
    pub fn write_addresses(&mut self, wanted: &DecapAddresses) -> Result<bool, DecapError> {
        if wanted.len() > MAX_DECAP_ADDRS as usize {
            return Err(DecapError::TooManyAddresses {
                count: wanted.len(),
            });
        }
        let map_error = |source| DecapError::Map {
            map: MAP_DECAP_ADDRS,
            source,
        };
        let gone: HashSet<_> = self
            .written
            .keys()
            .filter(|addr| !wanted.contains_key(addr))
            .copied()
            .collect();
        for &addr in &gone {
            self.addresses.remove(&key(addr)).map_err(map_error)?;
            self.written.remove(&addr);
        }
        let mut changed = !gone.is_empty();
        for (&addr, &flags) in wanted {
            if self.written.get(&addr) != Some(&flags) {
                self.addresses
                    .insert(key(addr), flags, 0)
                    .map_err(map_error)?;
                self.written.insert(addr, flags);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// What the address map holds.
    pub fn addresses(&self) -> &DecapAddresses {
        &self.written
    }

    /// Attaches the program to `ifindex`; it stays attached until [`DecapProgram::detach`]
    /// or until this is dropped.
    pub fn attach(
        &mut self,
        interface: &str,
        ifindex: u32,
        mode: XdpMode,
    ) -> Result<XdpLinkId, DecapError> {
        let aya_mode = match mode {
            XdpMode::Native => aya::programs::XdpMode::Driver,
            XdpMode::Generic => aya::programs::XdpMode::Skb,
            XdpMode::Auto => aya::programs::XdpMode::Default,
        };
        program(&mut self.ebpf)?
            .attach_to_if_index(ifindex, aya_mode)
            .map_err(|source| {
                let busy = matches!(&source, ProgramError::SyscallError(e)
                    if e.io_error.raw_os_error() == Some(libc::EBUSY));
                DecapError::Attach {
                    interface: interface.to_owned(),
                    ifindex,
                    mode: mode.name(),
                    hint: if busy {
                        ": another XDP program is attached (remove it with \
                         `ip link set dev IFACE xdp off`)"
                    } else {
                        ""
                    },
                    source: Box::new(source),
                }
            })
    }

    pub fn detach(&mut self, link: XdpLinkId) -> Result<(), DecapError> {
        program(&mut self.ebpf)?
            .detach(link)
            .map_err(|source| DecapError::Program(Box::new(source)))
    }

    /// The loaded program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn program_mut(&mut self) -> Result<&mut Xdp, DecapError> {
        program(&mut self.ebpf)
    }

    /// The decapsulated and not-decapsulated counts so far.
    pub fn counters(&self) -> Result<DecapCounters, DecapError> {
        Ok(DecapCounters {
            decapsulated: self.reason(Reason::Decapsulated)?,
            not_decapsulated: self.reason(Reason::PassNotDecapsulated)?,
        })
    }

    /// Any reason's counters, summed over CPUs (the program counts only its two).
    pub fn reason(&self, reason: Reason) -> Result<Counters, DecapError> {
        let per_cpu = self
            .reasons
            .get(&reason.index(), 0)
            .map_err(|source| DecapError::Map {
                map: MAP_REASON_STATS,
                source,
            })?;
        let mut total = Counters::default();
        for counters in per_cpu.iter() {
            total.add(counters);
        }
        Ok(total)
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DecapError> {
    ebpf.program_mut(PROGRAM_DECAP)
        .ok_or(DecapError::MissingProgram)?
        .try_into()
        .map_err(|source| DecapError::Program(Box::new(source)))
}
