//! The frame generator: families of valid, almost valid and hostile frames, drawn from one
//! seeded [`Rng`]. Valid frames are built by the one packet builder; the hostile families
//! take a valid frame apart (one field corrupted, truncated, bogus lengths) or are random.
//! Stateful families (known flows, NAT replies, ICMP errors about flows) draw on what the
//! model holds; fragments of one datagram come out over several calls, sometimes out of order
//! or with pieces missing.

use std::{
    collections::VecDeque,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6},
};

use lb_common::{PROTO_TCP, PROTO_UDP};

use super::{classify::Key, model::Model, rng::Rng};
use crate::{
    fixture::{BALANCER_MAC, real_mac_for},
    packet::{self, Frame, PROTO_AH, PROTO_ESP, fragments, tcp_flags},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Well-formed packets for services: new flows, known flows, mid-stream segments.
    Valid,
    /// Replies from NAT and full-NAT reals (and strays that are no flow's).
    NatReply,
    /// ICMP and ICMPv6 errors: about known flows, unknown ones, with garbage quotes.
    IcmpError,
    /// Fragments of datagrams to VIPs and of NAT replies, in and out of order.
    Fragment,
    /// A valid frame with one byte of its headers changed.
    Corrupted,
    /// A valid frame cut short.
    Truncated,
    /// IPv4 with a bogus header length, total length or options.
    BogusIpv4,
    /// IPv6 with chains of extension headers, followed or not.
    Ipv6Extensions,
    /// Zero to three VLAN tags of any TPID.
    VlanStack,
    /// Random bytes, sometimes with an IP EtherType and version.
    RandomBytes,
    /// Well-formed traffic for no service (other addresses, ports, protocols, ICMP echo, ARP).
    NotForUs,
}

impl Family {
    pub const ALL: [Family; 11] = [
        Family::Valid,
        Family::NatReply,
        Family::IcmpError,
        Family::Fragment,
        Family::Corrupted,
        Family::Truncated,
        Family::BogusIpv4,
        Family::Ipv6Extensions,
        Family::VlanStack,
        Family::RandomBytes,
        Family::NotForUs,
    ];
}

pub struct Generator {
    rng: Rng,
    /// Fragments still to send, of a datagram cut earlier.
    pending: VecDeque<Vec<u8>>,
    next_fragment_id: u32,
}

/// `BPF_PROG_TEST_RUN` refuses an XDP frame shorter than an Ethernet header (no link
/// delivers one): truncation and random lengths start there.
const MIN_FRAME: usize = 14;

const ROUTER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng::new(seed),
            pending: VecDeque::new(),
            next_fragment_id: 1,
        }
    }

    /// Drops fragments still queued (the tables they would find were emptied).
    pub fn forget_pending(&mut self) {
        self.pending.clear();
    }

    pub fn next(&mut self, model: &Model) -> (Family, Vec<u8>) {
        if let Some(mut frame) = self.pending.pop_front() {
            if self.rng.one_in(16) {
                let at = self.rng.below(frame.len().min(80));
                frame[at] = self.rng.byte();
            }
            return (Family::Fragment, frame);
        }
        // Weights: valid and stateful traffic most, then each hostile family.
        let family = match self.rng.below(100) {
            0..=19 => Family::Valid,
            20..=27 => Family::NatReply,
            28..=35 => Family::IcmpError,
            36..=45 => Family::Fragment,
            46..=55 => Family::Corrupted,
            56..=65 => Family::Truncated,
            66..=71 => Family::BogusIpv4,
            72..=79 => Family::Ipv6Extensions,
            80..=85 => Family::VlanStack,
            86..=92 => Family::RandomBytes,
            _ => Family::NotForUs,
        };
        let mut frame = match family {
            Family::Valid => self.valid(model).build(),
            Family::NatReply => self.nat_reply(model),
            Family::IcmpError => self.icmp_error(model),
            Family::Fragment => self.fragmented(model),
            Family::Corrupted => self.corrupted(model),
            Family::Truncated => self.truncated(model),
            Family::BogusIpv4 => self.bogus_ipv4(model),
            Family::Ipv6Extensions => self.ipv6_extensions(model),
            Family::VlanStack => self.vlan_stack(model),
            Family::RandomBytes => self.random_bytes(),
            Family::NotForUs => self.not_for_us(),
        };
        // Link-layer padding after the datagram (short frames are padded to 60 bytes on the
        // wire): it must neither change a verdict nor be counted in a rewrite.
        if self.rng.one_in(8) {
            let len = 1 + self.rng.below(24);
            frame.extend(self.rng.bytes(len));
        }
        (family, frame)
    }

    fn client(&mut self, v6: bool) -> IpAddr {
        // A small pool, so that persistence and source hashing see clients again.
        let host = 1 + self.rng.below(48) as u8;
        if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xffff,
                0,
                0,
                0,
                0,
                u16::from(host),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, host))
        }
    }

    fn client_mac(&mut self) -> packet::Mac {
        [0x02, 0xc1, 0, 0, 0, 1 + self.rng.below(4) as u8]
    }

    /// A frame carrying `key` (TCP with `flags`), with random payload and harmless header
    /// variety: TOS/traffic class, TTL (0 too), DF, IPv4 options, IPv6 extension headers that
    /// are followed, a UDP checksum of 0, one VLAN tag.
    fn frame_for(&mut self, key: &Key, flags: u8) -> Frame {
        // Now and then a jumbo packet: more than a page, so the kernel hands the program a
        // multi-buffer frame (its headers all in the first buffer, as every header generated
        // here is).
        let len = if self.rng.one_in(64) {
            3000 + self.rng.below(5000)
        } else {
            self.rng.below(4) * self.rng.below(40)
        };
        let payload = self.rng.bytes(len);
        let mut frame = match (key.src, key.dst, key.protocol) {
            (IpAddr::V4(src), IpAddr::V4(dst), protocol) => {
                let (src, dst) = (
                    SocketAddrV4::new(src, key.sport),
                    SocketAddrV4::new(dst, key.dport),
                );
                let frame = if protocol == PROTO_TCP {
                    Frame::tcp(src, dst).tcp_flags(flags)
                } else {
                    Frame::udp(src, dst)
                };
                let mut frame = frame.tos(self.rng.byte()).ip_id(self.rng.u16());
                if self.rng.one_in(3) {
                    frame = frame.dont_fragment();
                }
                if self.rng.one_in(8) {
                    let words = 1 + self.rng.below(3);
                    frame = frame.ip_options(&vec![1; words * 4]);
                }
                frame
            }
            (IpAddr::V6(src), IpAddr::V6(dst), protocol) => {
                let (src, dst) = (
                    SocketAddrV6::new(src, key.sport, 0, 0),
                    SocketAddrV6::new(dst, key.dport, 0, 0),
                );
                let mut frame = if protocol == PROTO_TCP {
                    Frame::ipv6_tcp(src, dst).tcp_flags(flags)
                } else {
                    Frame::ipv6_udp(src, dst)
                }
                .traffic_class(self.rng.byte());
                if self.rng.one_in(8) {
                    frame = match self.rng.below(3) {
                        0 => frame.hop_by_hop(self.rng.below(2) as u8),
                        1 => frame.destination_options(self.rng.below(2) as u8),
                        _ => frame.ipv6_routing(self.rng.below(2) as u8),
                    };
                }
                frame
            }
            _ => panic!("a key of two families: {key:?}"),
        };
        frame = frame.payload(&payload).ttl(if self.rng.one_in(16) {
            0
        } else {
            self.rng.byte()
        });
        if key.protocol == PROTO_UDP && key.src.is_ipv4() && self.rng.one_in(6) {
            frame = frame.l4_checksum(0);
        }
        if self.rng.one_in(4) {
            let tpid = if self.rng.one_in(2) {
                packet::TPID_8021Q
            } else {
                packet::TPID_8021AD
            };
            let tci = if self.rng.one_in(8) {
                0
            } else {
                self.rng.u16()
            };
            frame = frame.tag(tpid, tci);
        }
        let mac = self.client_mac();
        frame.src_mac(mac).dst_mac(BALANCER_MAC)
    }

    fn random_flags(&mut self) -> u8 {
        use tcp_flags::*;
        *self.rng.pick(&[
            SYN,
            ACK,
            ACK | PSH,
            FIN | ACK,
            RST,
            RST | ACK,
            SYN | ACK,
            0,
            URG | ACK,
            SYN | FIN,
        ])
    }

    /// A new flow to a random service (a SYN, or a UDP datagram).
    fn new_flow_key(&mut self, model: &Model) -> Key {
        let service = self.rng.pick(&model.services).clone();
        let dport = if service.port == 0 {
            1 + self.rng.u16() % 65535
        } else {
            service.port
        };
        Key {
            src: self.client(service.vip.is_ipv6()),
            dst: service.vip,
            sport: 1024 + self.rng.u16() % 60000,
            dport,
            protocol: service.protocol,
        }
    }

    fn valid(&mut self, model: &Model) -> Frame {
        match self.rng.below(10) {
            0..=3 if !model.known.is_empty() => {
                let key = *self.rng.pick(&model.known);
                let flags = self.random_flags();
                self.frame_for(&key, flags)
            }
            0..=7 => {
                let key = self.new_flow_key(model);
                self.frame_for(&key, tcp_flags::SYN)
            }
            _ => {
                // Mid-stream: a segment of a connection the balancer never saw.
                let key = self.new_flow_key(model);
                let flags = self.random_flags();
                self.frame_for(&key, flags)
            }
        }
    }

    /// The reply to a NAT flow as its real sends it (or, now and then, a near miss).
    fn reply_key(&mut self, model: &Model) -> Option<Key> {
        if model.reply_keys.is_empty() {
            return None;
        }
        let mut key = *self.rng.pick(&model.reply_keys);
        if self.rng.one_in(8) {
            key.dport = key.dport.wrapping_add(1);
        }
        Some(key)
    }

    fn sent_by_real(&mut self, key: &Key, flags: u8) -> Frame {
        let frame = self.frame_for(key, flags);
        frame.src_mac(real_mac_for(key.src))
    }

    fn nat_reply(&mut self, model: &Model) -> Vec<u8> {
        match self.reply_key(model) {
            Some(key) => {
                let flags = self.random_flags();
                self.sent_by_real(&key, flags).build()
            }
            None => self.valid(model).build(),
        }
    }

    fn icmp_error(&mut self, model: &Model) -> Vec<u8> {
        // The quote: a packet from a VIP (a real's reply, as the client sees it).
        let flow = if !model.known.is_empty() && !self.rng.one_in(5) {
            *self.rng.pick(&model.known)
        } else {
            self.new_flow_key(model)
        };
        let reply = flow.reversed();
        let quoted_frame = self.frame_for(&reply, tcp_flags::ACK);
        let mut quote = quoted_frame.ip_bytes();
        match self.rng.below(8) {
            0 => {
                let len = self.rng.below(60);
                quote = self.rng.bytes(len);
            }
            1 => {
                let keep = self.rng.below(quote.len() + 1);
                quote.truncate(keep);
            }
            2 => {
                let at = self.rng.below(quote.len().min(48));
                quote[at] = self.rng.byte();
            }
            _ => {
                let keep = (quote.len().min(28 + self.rng.below(40))).max(quote.len().min(48));
                quote.truncate(keep);
            }
        }
        let to = if self.rng.one_in(10) {
            self.client(reply.src.is_ipv6())
        } else {
            reply.src
        };
        let frame = match to {
            IpAddr::V4(to) => {
                let kind = *self.rng.pick(&[3, 3, 11, 0, 8, 5]);
                Frame::icmp_error(
                    ROUTER4,
                    to,
                    kind,
                    self.rng.below(16) as u8,
                    self.rng.u32(),
                    &quote,
                )
            }
            IpAddr::V6(to) => {
                let kind = *self.rng.pick(&[1, 2, 3, 2, 128, 4]);
                let error = Frame::icmpv6_error(
                    ROUTER6,
                    to,
                    kind,
                    self.rng.below(8) as u8,
                    self.rng.u32(),
                    &quote,
                );
                // Extension headers before the ICMPv6 header are followed like any others.
                if self.rng.one_in(6) {
                    error.destination_options(0)
                } else {
                    error
                }
            }
        };
        let mut frame = frame.src_mac(self.client_mac()).dst_mac(BALANCER_MAC);
        if self.rng.one_in(4) {
            frame = frame.vlan(self.rng.below(4096) as u16);
        }
        frame.build()
    }

    /// Cuts a datagram (to a service, or a NAT reply) into fragments and queues them, in order
    /// or not, sometimes with one missing; returns the first to send.
    fn fragmented(&mut self, model: &Model) -> Vec<u8> {
        let key = match self.rng.below(6) {
            0 if !model.known.is_empty() => *self.rng.pick(&model.known),
            1 => match self.reply_key(model) {
                Some(key) => key,
                None => self.new_flow_key(model),
            },
            _ => self.new_flow_key(model),
        };
        // Longer than the largest piece (232 bytes): always cut.
        let len = 240 + self.rng.below(300);
        let payload = self.rng.bytes(len);
        let mut frame = self.frame_for(&key, tcp_flags::SYN).payload(&payload);
        if key.src.is_ipv4() {
            frame = frame.ip_id(self.rng.u16());
        }
        let whole = frame.build();
        let id = self.next_fragment_id;
        self.next_fragment_id = self.next_fragment_id.wrapping_add(1);
        // Whatever DF the builder drew: fragments exist regardless.
        let mut whole = whole;
        let l3 = whole.len() - frame.ip_bytes().len();
        if whole[l3] >> 4 == 4 {
            whole[l3 + 6] &= !0x40;
            let header_len = usize::from(whole[l3] & 0x0f) * 4;
            whole[l3 + 10] = 0;
            whole[l3 + 11] = 0;
            let sum = packet::checksum(&[&whole[l3..l3 + header_len]]);
            whole[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
        }
        let max = 80 + 8 * self.rng.below(20);
        let mut pieces = fragments(&whole, max, id);
        match self.rng.below(4) {
            0 => pieces.reverse(),
            1 if pieces.len() > 1 => {
                let gone = self.rng.below(pieces.len());
                pieces.remove(gone);
            }
            2 => {
                let n = pieces.len();
                pieces.swap(0, self.rng.below(n));
            }
            _ => {}
        }
        let first = pieces.remove(0);
        self.pending.extend(pieces);
        first
    }

    /// Any well-formed frame: for a service, a reply, an ICMP error or not for us.
    fn any_valid(&mut self, model: &Model) -> Vec<u8> {
        match self.rng.below(6) {
            0 => self.nat_reply(model),
            1 => self.icmp_error(model),
            2 => self.not_for_us(),
            3 => self.ipv6_extensions(model),
            _ => self.valid(model).build(),
        }
    }

    fn corrupted(&mut self, model: &Model) -> Vec<u8> {
        let mut frame = self.any_valid(model);
        // Mostly the headers (the first 80 bytes), sometimes anywhere.
        let span = if self.rng.one_in(4) {
            frame.len()
        } else {
            frame.len().min(80)
        };
        let at = self.rng.below(span);
        if self.rng.one_in(2) {
            frame[at] ^= 1 << self.rng.below(8);
        } else {
            frame[at] = self.rng.byte();
        }
        frame
    }

    fn truncated(&mut self, model: &Model) -> Vec<u8> {
        let mut frame = self.any_valid(model);
        let keep = MIN_FRAME + self.rng.below(frame.len() - MIN_FRAME + 1);
        frame.truncate(keep);
        frame
    }

    fn bogus_ipv4(&mut self, model: &Model) -> Vec<u8> {
        let mut key = self.new_flow_key(model);
        if key.src.is_ipv6() {
            key.src = self.client(false);
            key.dst = IpAddr::V4(super::config::VIP4.parse().expect("VIP4"));
            key.dport = *self.rng.pick(&[80, 53, 81, 8000, 9000]);
            key.protocol = if key.dport == 53 {
                PROTO_UDP
            } else {
                PROTO_TCP
            };
        }
        let mut frame = self.frame_for(&key, tcp_flags::SYN);
        match self.rng.below(4) {
            0 => frame = frame.ip_ihl(self.rng.below(16) as u8),
            1 => frame = frame.ip_total_length(self.rng.u16() % 200),
            2 => {
                let words = 1 + self.rng.below(10);
                let options = self.rng.bytes(words * 4);
                frame = frame.ip_options(&options);
            }
            _ => {
                let words = self.rng.below(11);
                let options = self.rng.bytes(words * 4);
                frame = frame
                    .ip_options(&options)
                    .ip_ihl(self.rng.below(16) as u8)
                    .ip_total_length(self.rng.u16() % 200);
            }
        }
        let mut bytes = frame.build();
        // Link-layer padding now and then.
        if self.rng.one_in(4) {
            let len = self.rng.below(30);
            bytes.extend(self.rng.bytes(len));
        }
        bytes
    }

    fn ipv6_extensions(&mut self, model: &Model) -> Vec<u8> {
        let v6_services: Vec<_> = model
            .services
            .iter()
            .filter(|s| s.vip.is_ipv6())
            .cloned()
            .collect();
        let service = self.rng.pick(&v6_services).clone();
        let key = Key {
            src: self.client(true),
            dst: service.vip,
            sport: 1024 + self.rng.u16() % 60000,
            dport: service.port,
            protocol: service.protocol,
        };
        let (src, dst) = match (key.src, key.dst) {
            (IpAddr::V6(src), IpAddr::V6(dst)) => (
                SocketAddrV6::new(src, key.sport, 0, 0),
                SocketAddrV6::new(dst, key.dport, 0, 0),
            ),
            _ => unreachable!("IPv6 services have IPv6 VIPs"),
        };
        let mut frame = if key.protocol == PROTO_TCP {
            Frame::ipv6_tcp(src, dst).syn()
        } else {
            Frame::ipv6_udp(src, dst)
        };
        for _ in 0..self.rng.below(9) {
            frame = match self.rng.below(8) {
                0 => frame.hop_by_hop(self.rng.below(3) as u8),
                1 => frame.destination_options(self.rng.below(3) as u8),
                2 => frame.ipv6_routing(self.rng.below(3) as u8),
                3 => {
                    // A routing header with segments left.
                    let left = self.rng.below(3) as u8;
                    frame.ipv6_raw_extension(43, &[0, 0, 0, left, 0, 0, 0, 0])
                }
                4 => frame.ipv6_fragment_header(
                    self.rng.one_in(2),
                    if self.rng.one_in(3) {
                        8 * self.rng.below(100) as u16
                    } else {
                        0
                    },
                    self.rng.u32(),
                ),
                5 => frame.ipv6_raw_extension(PROTO_AH, &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                6 => frame.ipv6_raw_extension(PROTO_ESP, &[0, 0, 0, 1, 0, 0, 0, 1]),
                _ => frame
                    .ipv6_raw_extension(*self.rng.pick(&[135, 139, 140, 253, 254, 59]), &[0; 8]),
            };
        }
        frame
            .src_mac(self.client_mac())
            .dst_mac(BALANCER_MAC)
            .build()
    }

    fn vlan_stack(&mut self, model: &Model) -> Vec<u8> {
        let frame = self.valid(model).build();
        // Take any tag the builder put, then push 0 to 3 of any TPID.
        let mut untagged = frame[..12].to_vec();
        let mut at = 12;
        while matches!(
            u16::from_be_bytes([frame[at], frame[at + 1]]),
            0x8100 | 0x88a8
        ) {
            at += 4;
        }
        for _ in 0..self.rng.below(4) {
            let tpid: u16 = *self.rng.pick(&[0x8100, 0x88a8, 0x8100, 0x9100]);
            untagged.extend_from_slice(&tpid.to_be_bytes());
            untagged.extend_from_slice(&self.rng.u16().to_be_bytes());
        }
        untagged.extend_from_slice(&frame[at..]);
        untagged
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        let len = MIN_FRAME + self.rng.below(160);
        let mut frame = self.rng.bytes(len);
        if len > MIN_FRAME && self.rng.one_in(2) {
            let (ether_type, version) = if self.rng.one_in(2) {
                (0x0800u16, 0x45)
            } else {
                (0x86dd, 0x60)
            };
            frame[12..14].copy_from_slice(&ether_type.to_be_bytes());
            frame[14] = version;
        }
        frame
    }

    fn not_for_us(&mut self) -> Vec<u8> {
        let mac = self.client_mac();
        let frame = match self.rng.below(6) {
            0 => Frame::arp_request(Ipv4Addr::new(203, 0, 113, 9), Ipv4Addr::new(192, 0, 2, 10)),
            1 => Frame::icmp_echo(Ipv4Addr::new(203, 0, 113, 9), Ipv4Addr::new(192, 0, 2, 10)),
            2 => Frame::icmpv6_echo(
                Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 9),
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100),
            ),
            // A VIP's port no service has, or the other protocol.
            3 => Frame::udp(
                SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 4000),
                SocketAddrV4::new(
                    Ipv4Addr::new(192, 0, 2, 10),
                    *self.rng.pick(&[80, 81, 8000, 9000, 1]),
                ),
            ),
            4 => Frame::tcp(
                SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 4000),
                SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, self.rng.byte()), 80),
            )
            .syn(),
            _ => Frame::ipv6_udp(
                SocketAddrV6::new(
                    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 9),
                    4000,
                    0,
                    0,
                ),
                SocketAddrV6::new(
                    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, self.rng.u16()),
                    80,
                    0,
                    0,
                ),
            ),
        };
        frame.src_mac(mac).dst_mac(BALANCER_MAC).build()
    }
}
