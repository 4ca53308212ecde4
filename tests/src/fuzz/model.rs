//! What the program must do with a frame, given the config and what came before: the flows it
//! tracks, NAT reply entries, where fragmented datagrams went, persistent clients, and where
//! hashing schedulers sent a key before. Written from README's rules and the reason table.
//!
//! Schedulers are predicted exactly from the tables lbd wrote (read once at the start):
//! round robin walks its schedule from the cursor the runner set; `sh`, `mh` and an unmatched
//! fragment's datagram index theirs with `lb_common::hash`. Beyond that the model holds the
//! program to what it did before: a flow's packets, a datagram's fragments, a persistent
//! client's flows and a hashing scheduler's same key must all go where the first one went.

use std::{collections::HashMap, net::IpAddr};

use lb_common::{LOCAL_PORT_COUNT, PROTO_TCP, Reason};

use super::{
    classify::{Datagram, Key, Kind},
    config::{Mode, ServiceSpec},
};
use crate::{fixture::balancer_address, forwarding::first_local_port, packet::Mac};

/// Local ports a new full-NAT flow tries before it is refused.
const LOCAL_PORT_PROBES: u16 = 32;

#[derive(Clone, Copy, Debug)]
pub struct FlowEntry {
    pub service: usize,
    pub real: usize,
    /// Full NAT: the flow's local port.
    pub local_port: u16,
}

/// A NAT or full-NAT flow's reply entry, under the reply's 5-tuple as the real sends it.
#[derive(Clone, Debug)]
pub struct ReplyEntry {
    pub flow: Key,
    pub client_mac: Mac,
    pub tag: Option<(u16, u16)>,
    pub service: usize,
    pub real: usize,
}

#[derive(Clone, Copy, Debug)]
enum FragmentOwner {
    /// The first fragment was for no service: the datagram passes.
    Pass,
    Real {
        service: usize,
        real: usize,
        from_first: bool,
    },
    /// A NAT reply datagram, with its first fragment's ports.
    Reply { sport: u16, dport: u16 },
}

type FragmentKey = (IpAddr, IpAddr, u32, u8);

/// The inputs a hashing choice depends on: the same input must give the same real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashSlot {
    /// `sh`: the client's address.
    Source(usize, IpAddr),
    /// `mh`: the 5-tuple.
    Connection(usize, Key),
    /// A later fragment before its first: (source, destination, protocol) in the VIP's
    /// fragment service.
    Datagram(usize, IpAddr, IpAddr, u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Exactly(usize),
    /// Any real of the service (a free scheduling choice).
    Any,
}

/// What the program must do with a frame.
#[derive(Clone, Debug)]
pub enum Expect {
    Pass(Reason),
    Drop(Reason),
    /// Sent to a real of `service`, rewritten by its method.
    ToReal(ToReal),
    /// A NAT reply translated back to its client.
    Reply {
        entry: ReplyEntry,
    },
}

/// Why `select` places no real: passed or dropped, with the reason.
pub enum Refusal {
    Pass(Reason),
    Drop(Reason),
}

impl From<Refusal> for Expect {
    fn from(refusal: Refusal) -> Expect {
        match refusal {
            Refusal::Pass(reason) => Expect::Pass(reason),
            Refusal::Drop(reason) => Expect::Drop(reason),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ToReal {
    pub service: usize,
    pub choice: Choice,
    pub reason: Reason,
    /// The packet's flow as the program hands it to the forwarding stage (ports 0 for a later
    /// fragment; the quoted packet's for an ICMP error): GUE hashes it.
    pub handed: Key,
    /// Full NAT: the flow's local port if the flow is known (0: a new flow, whose port the
    /// model picks once the real is known; or none, for a later fragment).
    pub local_port: u16,
    /// Record this flow (a new one) on the chosen real.
    pub new_flow: Option<Key>,
    /// Write the client's persistence entry if it has none.
    pub persist: Option<IpAddr>,
    pub hash_slot: Option<HashSlot>,
    /// The service's round-robin cursor moves on (a new flow was scheduled).
    pub advances_ring: bool,
    /// Record where this datagram went: (key, from its first fragment, service recorded).
    pub fragment: Option<(FragmentKey, bool, usize)>,
}

impl ToReal {
    /// To `service`, `choice` of its reals, counted under `reason`, with `handed` the flow the
    /// forwarding stage gets; nothing recorded or moved (the caller sets what is).
    fn new(service: usize, choice: Choice, reason: Reason, handed: Key) -> Self {
        Self {
            service,
            choice,
            reason,
            handed,
            local_port: 0,
            new_flow: None,
            persist: None,
            hash_slot: None,
            advances_ring: false,
            fragment: None,
        }
    }
}

pub struct Model {
    pub services: Vec<ServiceSpec>,
    flows: HashMap<Key, FlowEntry>,
    /// The flows, for the generator to pick from.
    pub known: Vec<Key>,
    replies: HashMap<Key, ReplyEntry>,
    /// Keys of `replies`, for the generator.
    pub reply_keys: Vec<Key>,
    fragments: HashMap<FragmentKey, FragmentOwner>,
    persistence: HashMap<(usize, IpAddr), usize>,
    hashed: HashMap<HashSlot, usize>,
    /// The ids lbd gave the reals (by address: each serves one service), which the program
    /// counts packets under.
    real_ids: HashMap<IpAddr, u32>,
    /// `rr`/`wrr` services: the schedule lbd wrote (reals by index, weighted) and this CPU's
    /// cursor, which each new flow scheduled moves on by one.
    rings: HashMap<usize, Ring>,
    /// Every service's table as the program reads it (reals by index), for hashes.
    tables: HashMap<usize, Vec<usize>>,
}

/// A round-robin schedule as the program walks it.
pub struct Ring {
    pub reals: Vec<usize>,
    pub cursor: u32,
}

impl Model {
    pub fn new(
        services: Vec<ServiceSpec>,
        real_ids: HashMap<IpAddr, u32>,
        rings: HashMap<usize, Ring>,
        tables: HashMap<usize, Vec<usize>>,
    ) -> Model {
        Model {
            real_ids,
            rings,
            tables,
            services,
            flows: HashMap::new(),
            known: Vec::new(),
            replies: HashMap::new(),
            reply_keys: Vec::new(),
            fragments: HashMap::new(),
            persistence: HashMap::new(),
            hashed: HashMap::new(),
        }
    }

    /// Forgets what the program's flow, reply and fragment tables held (the runner empties
    /// those between epochs). Persistence entries and hashing answers stay, as in the program.
    pub fn clear_epoch(&mut self) {
        self.flows.clear();
        self.known.clear();
        self.replies.clear();
        self.reply_keys.clear();
        self.fragments.clear();
    }

    pub fn real_id(&self, addr: IpAddr) -> u32 {
        self.real_ids.get(&addr).copied().unwrap_or(0)
    }

    /// The service for a destination: VIP:port, then the VIP's all-ports service.
    pub fn service_for(&self, key: &Key) -> Option<usize> {
        let find = |port: u16| {
            self.services.iter().position(|service| {
                service.vip == key.dst && service.port == port && service.protocol == key.protocol
            })
        };
        find(key.dport).or_else(|| find(0))
    }

    /// The service placing a VIP's later fragments that come first: its all-ports service,
    /// else its lowest port (of the protocol).
    fn fragment_service(&self, vip: IpAddr, protocol: u8) -> Option<usize> {
        (0..self.services.len())
            .filter(|&i| self.services[i].vip == vip && self.services[i].protocol == protocol)
            .min_by_key(|&i| self.services[i].port)
    }

    pub fn expect(&self, d: &Datagram) -> Expect {
        match d.kind {
            Kind::Whole => self.whole(d),
            Kind::FirstFragment => self.first_fragment(d),
            Kind::LaterFragment => self.later_fragment(d),
            Kind::IcmpError => self.icmp_error(d),
        }
    }

    fn whole(&self, d: &Datagram) -> Expect {
        let Some(service) = self.service_for(&d.flow) else {
            return self.reply_or_pass(&d.flow, d.flow.sport, d.flow.dport);
        };
        match self.select(service, &d.flow, d.tcp_flags, None) {
            Ok(to_real) => Expect::ToReal(to_real),
            Err(refusal) => refusal.into(),
        }
    }

    /// A packet for no service: translated back if it is a live NAT flow's reply.
    fn reply_or_pass(&self, key: &Key, sport: u16, dport: u16) -> Expect {
        let reply_key = Key {
            sport,
            dport,
            ..*key
        };
        match self.replies.get(&reply_key) {
            Some(entry)
                if self
                    .flows
                    .get(&entry.flow)
                    .is_some_and(|f| f.real == entry.real && f.service == entry.service) =>
            {
                Expect::Reply {
                    entry: entry.clone(),
                }
            }
            _ => Expect::Pass(Reason::PassNoService),
        }
    }

    /// `select::real`'s rules: a known flow keeps its real; a TCP segment that does not open
    /// a connection goes only where a stable answer points; anything else is a new flow, on
    /// `preferred` if given.
    fn select(
        &self,
        service: usize,
        key: &Key,
        tcp_flags: u8,
        preferred: Option<usize>,
    ) -> Result<ToReal, Refusal> {
        let spec = &self.services[service];
        let mut to_real = ToReal::new(service, Choice::Any, Reason::ForwardedTx, *key);
        if let Some(flow) = self.flows.get(key) {
            to_real.choice = Choice::Exactly(flow.real);
            to_real.local_port = flow.local_port;
            to_real.persist = spec.persistent.then_some(key.src);
            return Ok(to_real);
        }
        let tcp = key.protocol == PROTO_TCP;
        let opens = tcp_flags & 0x17 == 0x02;
        to_real.new_flow = Some(*key);
        let template = self.persistence.get(&(service, key.src)).copied();
        if tcp && !opens {
            to_real.reason = Reason::ForwardedMidStream;
            if let (true, Some(real)) = (spec.persistent, template) {
                to_real.choice = Choice::Exactly(real);
                return Ok(to_real);
            }
            if !spec.hashes() {
                return Err(Refusal::Pass(Reason::PassTcpNoFlow));
            }
            self.hash_choice(&mut to_real, self.hash_slot(service, key));
            return Ok(to_real);
        }
        if let Some(real) = preferred {
            to_real.choice = Choice::Exactly(real);
            return Ok(to_real);
        }
        if spec.drained {
            return Err(Refusal::Drop(Reason::DropNoReal));
        }
        if spec.persistent {
            if let Some(real) = template {
                to_real.choice = Choice::Exactly(real);
                return Ok(to_real);
            }
            to_real.persist = Some(key.src);
        }
        if spec.hashes() {
            self.hash_choice(&mut to_real, self.hash_slot(service, key));
        } else if let Some(ring) = self.rings.get(&service) {
            to_real.choice = Choice::Exactly(ring.reals[ring.cursor as usize % ring.reals.len()]);
            to_real.advances_ring = true;
        }
        Ok(to_real)
    }

    fn hash_slot(&self, service: usize, key: &Key) -> HashSlot {
        if self.services[service].scheduler == "sh" {
            HashSlot::Source(service, key.src)
        } else {
            HashSlot::Connection(service, *key)
        }
    }

    /// The real a hash picks: the slot `hash % len` of the table the program reads (lbd's
    /// weighted ring for `sh`, its Maglev table for `mh`), hashed with `lb_common::hash` (the
    /// program's own, pinned by golden values). Also remembered: the same input must keep
    /// getting the same real.
    fn hash_choice(&self, to_real: &mut ToReal, slot: HashSlot) {
        to_real.hash_slot = Some(slot);
        let (service, hash) = match slot {
            HashSlot::Source(service, src) => {
                let flow = Key {
                    src,
                    dst: src,
                    sport: 0,
                    dport: 0,
                    protocol: 0,
                };
                (service, lb_common::hash::source(&flow.flow_key()))
            }
            HashSlot::Connection(service, key) => {
                (service, lb_common::hash::connection(&key.flow_key()))
            }
            HashSlot::Datagram(service, src, dst, protocol) => {
                let flow = Key {
                    src,
                    dst,
                    sport: 0,
                    dport: 0,
                    protocol,
                };
                (service, lb_common::hash::datagram(&flow.flow_key()))
            }
        };
        if let Some(table) = self.tables.get(&service).filter(|table| !table.is_empty()) {
            to_real.choice = Choice::Exactly(table[hash as usize % table.len()]);
        }
        if let Some(&real) = self.hashed.get(&slot) {
            to_real.choice = Choice::Exactly(real);
        }
    }

    fn fragment_key(d: &Datagram) -> FragmentKey {
        (d.flow.src, d.flow.dst, d.fragment_id, d.flow.protocol)
    }

    fn first_fragment(&self, d: &Datagram) -> Expect {
        let key = Self::fragment_key(d);
        let Some(service) = self.service_for(&d.flow) else {
            return self.reply_or_pass(&d.flow, d.flow.sport, d.flow.dport);
        };
        let earlier = match self.fragments.get(&key) {
            Some(FragmentOwner::Real {
                service,
                real,
                from_first: false,
            }) => Some((*service, *real)),
            _ => None,
        };
        let known = self.flows.contains_key(&d.flow);
        // Later fragments went to another service's real, and the flow is new: the datagram
        // follows them there, unless that real needs the flow's translation.
        if let Some((owner_service, owner_real)) = earlier {
            let translated = matches!(self.services[owner_service].mode, Mode::Nat | Mode::FullNat);
            if owner_service != service && !known && !translated {
                return Expect::ToReal(ToReal {
                    fragment: Some((key, true, owner_service)),
                    ..ToReal::new(
                        owner_service,
                        Choice::Exactly(owner_real),
                        Reason::ForwardedFragment,
                        d.flow,
                    )
                });
            }
        }
        let preferred = earlier.filter(|&(s, _)| s == service).map(|(_, real)| real);
        match self.select(service, &d.flow, d.tcp_flags, preferred) {
            Ok(mut to_real) => {
                to_real.reason = Reason::ForwardedFragment;
                to_real.fragment = Some((key, true, service));
                Expect::ToReal(to_real)
            }
            Err(refusal) => refusal.into(),
        }
    }

    fn later_fragment(&self, d: &Datagram) -> Expect {
        let key = Self::fragment_key(d);
        match self.fragments.get(&key) {
            Some(FragmentOwner::Reply { sport, dport }) => {
                return self.reply_or_pass(&d.flow, *sport, *dport);
            }
            Some(FragmentOwner::Pass) => return Expect::Pass(Reason::PassNoService),
            Some(FragmentOwner::Real { service, real, .. }) => {
                return Expect::ToReal(ToReal::new(
                    *service,
                    Choice::Exactly(*real),
                    Reason::ForwardedFragment,
                    d.flow,
                ));
            }
            None => {}
        }
        let Some(service) = self.fragment_service(d.flow.dst, d.flow.protocol) else {
            return Expect::Pass(Reason::PassNoService);
        };
        let mut to_real = ToReal {
            fragment: Some((key, false, service)),
            ..ToReal::new(
                service,
                Choice::Any,
                Reason::ForwardedFragmentUnmatched,
                d.flow,
            )
        };
        self.hash_choice(
            &mut to_real,
            HashSlot::Datagram(service, d.flow.src, d.flow.dst, d.flow.protocol),
        );
        Expect::ToReal(to_real)
    }

    fn icmp_error(&self, d: &Datagram) -> Expect {
        let flow = d.flow.reversed();
        let Some(service) = self.service_for(&flow) else {
            return Expect::Pass(Reason::PassNoService);
        };
        match self.flows.get(&flow) {
            Some(known) if known.service == service => Expect::ToReal(ToReal {
                local_port: known.local_port,
                ..ToReal::new(
                    service,
                    Choice::Exactly(known.real),
                    Reason::ForwardedIcmpError,
                    d.flow,
                )
            }),
            _ => Expect::Pass(Reason::PassIcmpNoFlow),
        }
    }

    /// Full NAT: the local port a new flow of `key` gets on `real` of `service`: the first
    /// free one from its hashed start; `None` if the probes find none.
    pub fn free_local_port(&self, service: usize, real: usize, key: &Key) -> Option<u16> {
        let spec = &self.services[service];
        let real_spec = &spec.reals[real];
        let start = first_local_port(&key.flow_key());
        let first = lb_common::LOCAL_PORT_FIRST;
        (0..LOCAL_PORT_PROBES)
            .map(|probe| first + (start - first + probe) % LOCAL_PORT_COUNT)
            .find(|&port| {
                let reply_key = Key {
                    src: real_spec.addr,
                    dst: balancer_address(real_spec.addr),
                    sport: real_port(real_spec.port, key),
                    dport: port,
                    protocol: key.protocol,
                };
                !self.replies.contains_key(&reply_key)
            })
    }

    /// Records what forwarding `frame` (whose expectation was `to_real`) to `real` changed;
    /// `local_port`: a new full-NAT flow's.
    pub fn commit(
        &mut self,
        frame: &[u8],
        d: &Datagram,
        to_real: &ToReal,
        real: usize,
        local_port: u16,
    ) {
        let service = to_real.service;
        if to_real.advances_ring {
            let ring = self
                .rings
                .get_mut(&service)
                .expect("a ring for the service");
            ring.cursor = ring.cursor.wrapping_add(1);
        }
        if let Some(slot) = to_real.hash_slot {
            self.hashed.insert(slot, real);
        }
        if let Some(client) = to_real.persist {
            self.persistence.entry((service, client)).or_insert(real);
        }
        if let Some((key, from_first, recorded_service)) = to_real.fragment {
            self.fragments.insert(
                key,
                FragmentOwner::Real {
                    service: recorded_service,
                    real,
                    from_first,
                },
            );
        }
        let Some(key) = to_real.new_flow else {
            return;
        };
        let spec = &self.services[service];
        self.flows.insert(
            key,
            FlowEntry {
                service,
                real,
                local_port,
            },
        );
        self.known.push(key);
        if matches!(spec.mode, Mode::Nat | Mode::FullNat) {
            let real_spec = &spec.reals[real];
            let reply_key = Key {
                src: real_spec.addr,
                dst: if spec.mode == Mode::FullNat {
                    balancer_address(real_spec.addr)
                } else {
                    key.src
                },
                sport: real_port(real_spec.port, &key),
                dport: if spec.mode == Mode::FullNat {
                    local_port
                } else {
                    key.sport
                },
                protocol: key.protocol,
            };
            let mut client_mac = [0; 6];
            client_mac.copy_from_slice(&frame[6..12]);
            self.replies.insert(
                reply_key,
                ReplyEntry {
                    flow: key,
                    client_mac,
                    tag: d.tag,
                    service,
                    real,
                },
            );
            self.reply_keys.push(reply_key);
        }
    }

    /// A fragmented reply's first fragment passed through the reply path (translated or not):
    /// its later fragments look the reply entry up with its ports.
    pub fn commit_reply_fragment(&mut self, d: &Datagram) {
        if d.kind == Kind::FirstFragment && self.service_for(&d.flow).is_none() {
            let key = Self::fragment_key(d);
            let owner = if self.replies.contains_key(&d.flow) {
                FragmentOwner::Reply {
                    sport: d.flow.sport,
                    dport: d.flow.dport,
                }
            } else {
                FragmentOwner::Pass
            };
            self.fragments.insert(key, owner);
        }
    }
}

/// The port a NAT real gets: its own, or the packet's.
pub fn real_port(port: u16, key: &Key) -> u16 {
    if port != 0 { port } else { key.dport }
}
