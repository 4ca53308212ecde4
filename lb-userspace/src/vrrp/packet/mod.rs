//! VRRPv3 adverts on the wire (RFC 5798 §5), and the frames a new master sends to claim its
//! addresses (gratuitous ARP, unsolicited neighbour advertisement).
//!
//! Pure: bytes in, bytes out. Sockets belong to the I/O layer, and what an advert means (is the
//! VRID ours, do its addresses match, who wins on priority) belongs to the state machine. Here
//! [`Advert::parse`] refuses only what the packet alone proves wrong: RFC 5798 §7.1's discard
//! rules that need no configuration (TTL/hop limit 255, version 3, the complete packet, the
//! checksum), an unknown type (§5.2.3), and a Max Adver Int of 0 (see
//! [`AdvertError::IntervalZero`]). A Count IPvX Addr of 0 passes: §5.2.5 makes 1 the minimum a
//! sender puts there, but §7.1 does not discard on it, and comparing the addresses with the
//! configured ones is the state machine's business (§7.1's MAY).
//!
//! # Where we follow keepalived 2.2.7 rather than the RFC
//!
//! The hosts, switches and keepalived peers on a link know keepalived's frames, and a migration
//! runs us beside keepalived, so ours are the same byte for byte (the tests compare them with
//! captures of keepalived 2.2.7):
//!
//! - no virtual MAC: gratuitous ARPs and neighbour advertisements carry the interface's own MAC,
//!   where §6.4.1 names the virtual router MAC (00-00-5E-00-01-{VRID});
//! - the neighbour advertisement has Override set and Router clear, where §6.4.1 asks for
//!   Router set: our VIPs are service addresses, not a gateway, and the flag would tell the
//!   link's hosts otherwise (RFC 4861's IsRouter);
//! - it is sent from the VIP itself, not from a link-local address (see
//!   [`unsolicited_neighbour_advert`]).
//!
//! The checksum covers the pseudo-header of the packet's family, IPv4's included, as keepalived
//! computes it (the captures confirm it): RFC 5798 §5.2.8's text names only IPv6's
//! pseudo-header, and we read it, as keepalived does, as "the pseudo-header of the family".

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IP protocol number of VRRP (IPv4 protocol, IPv6 next header).
pub const IPPROTO_VRRP: u8 = 112;
/// Where adverts go when the peers are not configured by address (RFC 5798 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Where IPv6 adverts go when the peers are not configured by address (RFC 5798 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Max Adver Int is 12 bits of centiseconds.
pub const MAX_ADVERT_INTERVAL_CS: u16 = 4095;

/// Version, type, VRID, priority, count, Rsvd + Max Adver Int, checksum: the bytes before the
/// addresses.
const VRRP_HEADER_LENGTH: usize = 8;
const VRRP_VERSION: u8 = 3;
/// The only type RFC 5798 defines (§5.2.3).
const VRRP_TYPE_ADVERTISEMENT: u8 = 1;
/// RFC 5798 §7.1: a TTL or hop limit below 255 means the advert crossed a router, so it cannot
/// come from a peer on our link.
const REQUIRED_HOP_LIMIT: u8 = 255;

const IPV4_MIN_HEADER_LENGTH: usize = 20;
const IPV6_HEADER_LENGTH: usize = 40;
const ETHERNET_HEADER_LENGTH: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERNET_BROADCAST: [u8; 6] = [0xff; 6];

/// ARP (RFC 826) as it runs on Ethernet for IPv4.
const ARP_HARDWARE_ETHERNET: u16 = 1;
const ARP_REQUEST: u16 = 1;
const ARP_LENGTH: usize = 28;

const IPPROTO_ICMPV6: u8 = 58;
/// ff02::1, where unsolicited neighbour advertisements go (RFC 4861 §7.2.6).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::1 as an Ethernet multicast address: 33:33 and the address's low 32 bits (RFC 2464 §7).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;
/// The Override flag, the third of the message's 32 flag-and-reserved bits (RFC 4861 §4.4):
/// the receiver replaces whatever MAC it had cached for the address.
const NEIGHBOUR_ADVERT_OVERRIDE: u32 = 0x2000_0000;
const OPTION_TARGET_LINK_LAYER_ADDRESS: u8 = 2;
/// Type, code, checksum, flags, target, then the 8-byte target link-layer address option.
const NEIGHBOUR_ADVERT_LENGTH: usize = 4 + 4 + 16 + 8;

/// A VRRPv3 advertisement, as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
    /// Max Adver Int, centiseconds (12 bits).
    pub max_advert_interval_cs: u16,
    /// The virtual addresses it carries, all of the packet's family.
    pub addresses: Vec<IpAddr>,
}

impl Advert {
    /// Parses a VRRP payload (what follows the IP header) sent from `src` to `dst`: version 3,
    /// type 1 (advertisement), checksum over the IPv4/IPv6 pseudo-header (RFC 5798 §5.2.8),
    /// Count IPvX Addr consistent with the length and the family of `src`, every address of
    /// `src`'s family. Trailing bytes beyond the addresses are refused (a length mismatch).
    ///
    /// The Rsvd bits are ignored, as §5.2.6 asks; everything else in the payload is kept or
    /// checked, so `emit` gives back the same bytes for any advert with Rsvd zero.
    pub fn parse(payload: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, AdvertError> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(AdvertError::MixedFamilies { src, dst });
        }
        let Some(header) = payload.first_chunk::<VRRP_HEADER_LENGTH>() else {
            return Err(AdvertError::Truncated {
                what: "VRRP header",
                length: payload.len(),
                needed: VRRP_HEADER_LENGTH,
            });
        };
        let (vrid, priority, count) = (header[1], header[2], header[3]);
        let version_and_type = header[0];
        let version = version_and_type >> 4;
        if version != VRRP_VERSION {
            return Err(AdvertError::Version { version });
        }
        let packet_type = version_and_type & 0x0f;
        if packet_type != VRRP_TYPE_ADVERTISEMENT {
            return Err(AdvertError::Type { packet_type });
        }

        // A v4 advert read as v6 (or the reverse) fails here: addresses of another family than
        // src's cannot be told apart from a count that disagrees with the length.
        let address_length = address_length(src);
        let needed = VRRP_HEADER_LENGTH + usize::from(count) * address_length;
        if payload.len() != needed {
            return Err(AdvertError::AddressCount {
                count,
                family: family(src),
                needed,
                length: payload.len(),
            });
        }

        // Summing the message with its checksum in place gives 0 when it is right, whichever of
        // one's complement's two zeroes (0x0000, 0xffff) the sender wrote.
        let mut whole = InternetChecksum::default();
        whole
            .add_pseudo_header(src, dst, IPPROTO_VRRP, payload.len())
            .add_bytes(payload);
        if whole.finish() != 0 {
            return Err(AdvertError::Checksum {
                expected: vrrp_checksum(src, dst, payload),
                found: u16::from_be_bytes([header[6], header[7]]),
            });
        }

        // Rsvd is the top 4 bits.
        let max_advert_interval_cs =
            u16::from_be_bytes([header[4], header[5]]) & MAX_ADVERT_INTERVAL_CS;
        if max_advert_interval_cs == 0 {
            return Err(AdvertError::IntervalZero);
        }

        let octets = &payload[VRRP_HEADER_LENGTH..];
        let addresses = match src {
            IpAddr::V4(_) => octets
                .as_chunks::<4>()
                .0
                .iter()
                .map(|&a| a.into())
                .collect(),
            IpAddr::V6(_) => octets
                .as_chunks::<16>()
                .0
                .iter()
                .map(|&a| a.into())
                .collect(),
        };
        Ok(Advert {
            vrid,
            priority,
            max_advert_interval_cs,
            addresses,
        })
    }

    /// The VRRP payload with its checksum for `src`→`dst`. Never panics in a release build.
    /// What would make a wrong packet is a programming error (the config and the state machine
    /// rule it out), caught by `debug_assert!` in tests and kept harmless in release: addresses
    /// of the other family are left out, only the first 255 addresses are sent, a Max Adver Int
    /// beyond 12 bits is sent as 4095; an interval of 0, or `src` and `dst` of different
    /// families, give a packet peers refuse.
    pub fn emit(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        debug_assert_eq!(
            src.is_ipv4(),
            dst.is_ipv4(),
            "advert from {src} to {dst}: the families differ"
        );
        debug_assert!(
            self.addresses.iter().all(|a| a.is_ipv4() == src.is_ipv4()),
            "advert from {src} carries addresses of the other family: {:?}",
            self.addresses
        );
        debug_assert!(
            self.addresses.len() <= usize::from(u8::MAX),
            "advert carries {} addresses; Count IPvX Addr holds 255",
            self.addresses.len()
        );
        debug_assert!(
            (1..=MAX_ADVERT_INTERVAL_CS).contains(&self.max_advert_interval_cs),
            "Max Adver Int {} cs is outside 1..=4095",
            self.max_advert_interval_cs
        );

        let addresses: Vec<IpAddr> = self
            .addresses
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == src.is_ipv4())
            .take(usize::from(u8::MAX))
            .collect();
        let count = u8::try_from(addresses.len()).unwrap_or(u8::MAX);
        let interval = self.max_advert_interval_cs.min(MAX_ADVERT_INTERVAL_CS);

        let mut payload =
            Vec::with_capacity(VRRP_HEADER_LENGTH + addresses.len() * address_length(src));
        payload.push(VRRP_VERSION << 4 | VRRP_TYPE_ADVERTISEMENT);
        payload.extend_from_slice(&[self.vrid, self.priority, count]);
        // Rsvd is the top 4 bits, zero since the interval fits in 12.
        payload.extend_from_slice(&interval.to_be_bytes());
        payload.extend_from_slice(&[0, 0]); // the checksum, once the rest is written
        for address in addresses {
            match address {
                IpAddr::V4(v4) => payload.extend_from_slice(&v4.octets()),
                IpAddr::V6(v6) => payload.extend_from_slice(&v6.octets()),
            }
        }
        let checksum = vrrp_checksum(src, dst, &payload);
        payload[6..8].copy_from_slice(&checksum.to_be_bytes());
        payload
    }
}

/// An IPv4 packet as a raw `IPPROTO_VRRP` socket returns it (IP header included): checks IP
/// version 4, IHL >= 5, the total length equal to the buffer's (a raw socket hands over exactly
/// the packet, so more bytes or fewer are both wrong), protocol 112, TTL 255, then
/// [`Advert::parse`] on the payload. Returns (source, destination, advert).
///
/// The header checksum is not checked: the kernel drops packets whose header checksum is
/// wrong before any socket sees them. IP options are skipped.
pub fn parse_ipv4_packet(packet: &[u8]) -> Result<(Ipv4Addr, Ipv4Addr, Advert), AdvertError> {
    let Some(header) = packet.first_chunk::<IPV4_MIN_HEADER_LENGTH>() else {
        return Err(AdvertError::Truncated {
            what: "IPv4 header",
            length: packet.len(),
            needed: IPV4_MIN_HEADER_LENGTH,
        });
    };
    let version = header[0] >> 4;
    if version != 4 {
        return Err(AdvertError::Ipv4Version { version });
    }
    let total_length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if total_length != packet.len() {
        return Err(AdvertError::Ipv4TotalLength {
            total_length,
            buffer_length: packet.len(),
        });
    }
    let header_length = usize::from(header[0] & 0x0f) * 4;
    if header_length < IPV4_MIN_HEADER_LENGTH || header_length > total_length {
        return Err(AdvertError::Ipv4HeaderLength {
            header_length,
            total_length,
        });
    }
    let protocol = header[9];
    if protocol != IPPROTO_VRRP {
        return Err(AdvertError::NotVrrp { protocol });
    }
    check_hop_limit(header[8])?;

    let source = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let destination = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let advert = Advert::parse(&packet[header_length..], source.into(), destination.into())?;
    Ok((source, destination, advert))
}

/// The hop-limit/TTL check alone (IPv6 raw sockets give the hop limit in a cmsg, not a
/// header): `Err(AdvertError::Ttl)` unless 255.
pub fn check_hop_limit(hop_limit: u8) -> Result<(), AdvertError> {
    if hop_limit == REQUIRED_HOP_LIMIT {
        Ok(())
    } else {
        Err(AdvertError::Ttl { ttl: hop_limit })
    }
}

/// Why an advert was ignored. Each names the field and the values it saw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    /// `what` is the part that does not fit: "IPv4 header" or "VRRP header".
    #[error("{what} truncated: {length} bytes, needs {needed}")]
    Truncated {
        what: &'static str,
        length: usize,
        needed: usize,
    },
    #[error("IP version {version} in an IPv4 header, not 4")]
    Ipv4Version { version: u8 },
    #[error("IPv4 total length {total_length}, but the packet is {buffer_length} bytes")]
    Ipv4TotalLength {
        total_length: usize,
        buffer_length: usize,
    },
    /// `header_length` is IHL × 4, in bytes.
    #[error(
        "IPv4 header length (IHL × 4) {header_length} bytes, outside 20..={total_length} \
         (the total length)"
    )]
    Ipv4HeaderLength {
        header_length: usize,
        total_length: usize,
    },
    #[error("IP protocol {protocol}, not 112 (VRRP)")]
    NotVrrp { protocol: u8 },
    #[error("TTL/hop limit {ttl}, not 255")]
    Ttl { ttl: u8 },
    #[error("VRRP version {version}, not 3")]
    Version { version: u8 },
    /// RFC 5798 §5.2.3: a packet of unknown type MUST be discarded.
    #[error("VRRP type {packet_type}, not 1 (advertisement)")]
    Type { packet_type: u8 },
    /// The payload's length is not the 8-byte header plus `count` addresses of the source's
    /// family: truncated, padded, or of the other family.
    #[error(
        "Count IPvX Addr {count}: {count} IPv{family} addresses need a {needed}-byte VRRP \
         payload, but it is {length} bytes"
    )]
    AddressCount {
        count: u8,
        /// 4 or 6, the family of the packet's source address.
        family: u8,
        needed: usize,
        length: usize,
    },
    /// `expected` is what the payload and pseudo-header sum to, `found` what the packet says.
    #[error("VRRP checksum {found:#06x}, expected {expected:#06x}")]
    Checksum { expected: u16, found: u16 },
    /// RFC 5798 has no rule for it, but a backup would take Master_Adver_Interval 0 from it,
    /// hence a Master_Down_Interval of 0 (3 × 0 + a skew of 0 × …): it would declare the master
    /// dead the instant each advert arrived. Refused here so that the state machine never
    /// sees an interval it cannot time, and the metric shows the misconfigured peer.
    #[error("Max Adver Int 0 centiseconds")]
    IntervalZero,
    /// Only from a caller's mistake: the pseudo-header needs one family. (`src`, not `source`:
    /// thiserror would take a field named `source` for the underlying error.)
    #[error("source {src} and destination {dst} are of different families")]
    MixedFamilies { src: IpAddr, dst: IpAddr },
}

impl AdvertError {
    /// A short stable name for the metric label of ignored adverts.
    pub fn kind(&self) -> &'static str {
        match self {
            AdvertError::Truncated { .. } => "truncated",
            AdvertError::Ipv4Version { .. }
            | AdvertError::Ipv4TotalLength { .. }
            | AdvertError::Ipv4HeaderLength { .. } => "ip_header",
            AdvertError::NotVrrp { .. } => "protocol",
            AdvertError::Ttl { .. } => "ttl",
            AdvertError::Version { .. } => "version",
            AdvertError::Type { .. } => "type",
            AdvertError::AddressCount { .. } => "address_count",
            AdvertError::Checksum { .. } => "checksum",
            AdvertError::IntervalZero => "interval_zero",
            AdvertError::MixedFamilies { .. } => "address_family",
        }
    }
}

/// The frame a new master sends for each IPv4 virtual address, as keepalived 2.2.7 sends it:
/// an ARP request to the Ethernet broadcast, from `source_mac`, whose sender and target
/// protocol addresses are both `address`, so every host on the link updates its cache.
///
/// The target hardware address is the broadcast address too, where an RFC 5227 announcement
/// has zeroes; receivers ignore it in a request (RFC 826 fills it in only in replies). The
/// frame is 42 bytes, below Ethernet's 60-byte minimum: a NIC pads it on the wire, and the
/// captures, taken on a software bridge, show the same unpadded 42.
pub fn gratuitous_arp(source_mac: [u8; 6], address: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETHERNET_HEADER_LENGTH + ARP_LENGTH);
    push_ethernet_header(&mut frame, ETHERNET_BROADCAST, source_mac, ETHERTYPE_ARP);
    frame.extend_from_slice(&ARP_HARDWARE_ETHERNET.to_be_bytes());
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame.extend_from_slice(&[6, 4]); // hardware and protocol address lengths
    frame.extend_from_slice(&ARP_REQUEST.to_be_bytes());
    frame.extend_from_slice(&source_mac);
    frame.extend_from_slice(&address.octets());
    frame.extend_from_slice(&ETHERNET_BROADCAST);
    frame.extend_from_slice(&address.octets());
    frame
}

/// The frame a new master sends for each IPv6 virtual address, as keepalived 2.2.7 sends it:
/// an unsolicited neighbour advertisement (ICMPv6 type 136, RFC 4861 §7.2.6) to ff02::1
/// (33:33:00:00:00:01), hop limit 255, flags Override only (not Router, not Solicited), the
/// target `address`, and a target link-layer address option carrying `source_mac`.
///
/// `source` is the IPv6 source address: keepalived uses the VIP itself (`source` == `address`
/// in every capture), which RFC 4861 allows once the VIP is assigned to the interface; pass
/// the VIP to match it, or a link-local address of the interface.
pub fn unsolicited_neighbour_advert(
    source_mac: [u8; 6],
    source: Ipv6Addr,
    address: Ipv6Addr,
) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(NEIGHBOUR_ADVERT_LENGTH);
    icmp.extend_from_slice(&[ICMPV6_NEIGHBOUR_ADVERT, 0]); // type, code
    icmp.extend_from_slice(&[0, 0]); // the checksum, once the rest is written
    icmp.extend_from_slice(&NEIGHBOUR_ADVERT_OVERRIDE.to_be_bytes());
    icmp.extend_from_slice(&address.octets());
    // The option's length counts units of 8 bytes, its type and length included.
    icmp.extend_from_slice(&[OPTION_TARGET_LINK_LAYER_ADDRESS, 1]);
    icmp.extend_from_slice(&source_mac);
    let mut checksum = InternetChecksum::default();
    checksum
        .add_pseudo_header(source.into(), ALL_NODES.into(), IPPROTO_ICMPV6, icmp.len())
        .add_bytes(&icmp);
    icmp[2..4].copy_from_slice(&checksum.finish().to_be_bytes());

    let mut frame =
        Vec::with_capacity(ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH + NEIGHBOUR_ADVERT_LENGTH);
    push_ethernet_header(&mut frame, ALL_NODES_MAC, source_mac, ETHERTYPE_IPV6);
    // Version 6, traffic class 0, flow label 0: keepalived sets neither.
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    let payload_length = u16::try_from(icmp.len()).expect("a neighbour advert is 32 bytes");
    frame.extend_from_slice(&payload_length.to_be_bytes());
    // RFC 4861 §7.1.2: a receiver drops a neighbour advertisement whose hop limit is not 255.
    frame.extend_from_slice(&[IPPROTO_ICMPV6, 255]);
    frame.extend_from_slice(&source.octets());
    frame.extend_from_slice(&ALL_NODES.octets());
    frame.extend_from_slice(&icmp);
    frame
}

fn push_ethernet_header(
    frame: &mut Vec<u8>,
    destination: [u8; 6],
    source: [u8; 6],
    ethertype: u16,
) {
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&ethertype.to_be_bytes());
}

/// The checksum to write in a VRRP payload, computed as if its checksum field were zero.
fn vrrp_checksum(src: IpAddr, dst: IpAddr, payload: &[u8]) -> u16 {
    let mut checksum = InternetChecksum::default();
    checksum
        .add_pseudo_header(src, dst, IPPROTO_VRRP, payload.len())
        .add_bytes(&payload[..6])
        .add_bytes(&payload[8..]);
    checksum.finish()
}

fn address_length(address: IpAddr) -> usize {
    match address {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

fn family(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 6,
    }
}

/// RFC 1071's Internet checksum, fed in pieces: the one's complement sum of 16-bit big-endian
/// words. Every piece but the last must be of even length, or the words after it would be
/// misaligned; all of ours are.
#[derive(Debug, Default)]
struct InternetChecksum {
    /// Unfolded: 64 bits cannot overflow on anything that fits in a packet.
    sum: u64,
    /// A piece of odd length was added; only the last may be.
    odd: bool,
}

impl InternetChecksum {
    fn add_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        debug_assert!(!self.odd, "a piece of odd length was not the last");
        let mut words = bytes.chunks_exact(2);
        for word in &mut words {
            self.sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
        }
        // RFC 1071: an odd last byte is summed as if followed by a zero.
        if let &[last] = words.remainder() {
            self.sum += u64::from(u16::from_be_bytes([last, 0]));
            self.odd = true;
        }
        self
    }

    /// The IPv4 (RFC 768/793) or IPv6 (RFC 8200 §8.1) pseudo-header. The two sum the same way:
    /// the addresses, the protocol, and the upper-layer length, which IPv4 writes in 16 bits
    /// and IPv6 in 32; a length below 64 KiB, as all of ours are, adds the same words to both.
    fn add_pseudo_header(
        &mut self,
        source: IpAddr,
        destination: IpAddr,
        protocol: u8,
        length: usize,
    ) -> &mut Self {
        for address in [source, destination] {
            match address {
                IpAddr::V4(v4) => self.add_bytes(&v4.octets()),
                IpAddr::V6(v6) => self.add_bytes(&v6.octets()),
            };
        }
        let length = u32::try_from(length).unwrap_or(u32::MAX);
        self.add_bytes(&length.to_be_bytes())
            .add_bytes(&[0, protocol])
    }

    /// The one's complement of the folded sum: the value to write in the checksum field, or,
    /// over a message that already holds its checksum, 0 when the checksum is right.
    fn finish(&self) -> u16 {
        let mut sum = self.sum;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !u16::try_from(sum).expect("folded to 16 bits")
    }
}
