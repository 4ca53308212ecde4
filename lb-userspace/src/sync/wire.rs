//! The sync stream on the wire: frames over a TCP connection from the backup to the master.
//!
//! Every frame is a 4-byte length (network order, the bytes after it), a 1-byte kind and a
//! body. The backup opens with [`Message::Hello`]; the master answers [`Message::NotMaster`]
//! and closes, or streams: the bulk copy as [`Message::Flows`] batches, [`Message::BulkDone`],
//! then incremental batches. Batches carry consecutive sequence numbers from 1 per
//! connection: a gap means a lost batch, and the backup starts over (a new connection and a
//! new bulk copy).
//!
//! Flows name their service by VIP, port and protocol and their real by address and port,
//! never by id: ids depend on each node's history. A NAT or full-NAT flow also carries its
//! [`WayBack`], the master's reply entry with its interface named, so that the backup
//! translates the real's replies once it takes over.
//!
//! Features: the backup's hello ends with a byte of [`FEATURE_WAY_BACK`]-like bits, what it
//! takes beyond the first lbd's frames, and the master answers with only what both know. An
//! older master reads the hello's first six bytes and never sees the byte, and an older
//! backup's hello has none: so a pair can be upgraded one node at a time, each stream
//! carrying what both ends know.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// "LBSY".
pub const MAGIC: u32 = 0x4c42_5359;
pub const VERSION: u8 = 1;
/// A hello's feature bit: flows may come with their way back ([`KIND_FLOWS_WAY_BACK`]).
pub const FEATURE_WAY_BACK: u8 = 1;
/// Every feature this side knows.
pub const FEATURES: u8 = FEATURE_WAY_BACK;
/// The longest frame either side accepts (a batch of [`MAX_BATCH`] records fits well).
pub const MAX_FRAME: usize = 1 << 20;
/// Records per batch.
pub const MAX_BATCH: usize = 4096;

const KIND_HELLO: u8 = 1;
const KIND_NOT_MASTER: u8 = 2;
const KIND_FLOWS: u8 = 3;
const KIND_BULK_DONE: u8 = 4;
const KIND_HEARTBEAT: u8 = 5;
/// Flows with their way back, to a backup whose hello has [`FEATURE_WAY_BACK`].
const KIND_FLOWS_WAY_BACK: u8 = 6;

/// One flow as the master has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub protocol: u8,
    pub client: IpAddr,
    pub client_port: u16,
    /// The flow's destination: the VIP and the port the client sent to.
    pub vip: IpAddr,
    pub vip_port: u16,
    /// The service's port: `vip_port`, or 0 for an all-ports service.
    pub service_port: u16,
    pub real: IpAddr,
    pub real_port: u16,
    /// `STATE_*` of `lb_common::conntrack`.
    pub state: u8,
    /// How long ago the master last saw a packet of it, in milliseconds.
    pub idle_ms: u32,
    /// Full NAT: the local port and which of the real's local addresses.
    pub local_port: u16,
    pub local_source: u8,
    /// NAT and full NAT: how the real's replies go back to the client (`None` for the other
    /// methods, and from a master without [`FEATURE_WAY_BACK`]).
    pub way_back: Option<WayBack>,
}

/// How a NAT or full-NAT flow's replies reach its client: what the master's program recorded
/// in the flow's reply entry when the flow began, with the interface named (ifindexes are
/// each node's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WayBack {
    /// The interface the client's packets came in on.
    pub interface: InterfaceName,
    /// Where the client's packets came from (the client, or the router before it).
    pub client_mac: [u8; 6],
    /// `ETH_P_8021Q` or `ETH_P_8021AD` when the client's frames are tagged, else 0.
    pub vlan_proto: u16,
    /// The client's tag as the program keeps it (`VLAN_TAGGED` and the TCI), or 0.
    pub vlan: u32,
    /// Full NAT: the local address the real sees the flow come from (the backup finds its
    /// own local source by it, not by the master's index); `None` for NAT.
    pub local: Option<IpAddr>,
}

/// An interface name: at most 15 bytes (the kernel's `IFNAMSIZ` with its NUL).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceName([u8; 16]);

impl InterfaceName {
    /// `None` for a name the kernel could not have: empty, longer than 15 bytes, or with a
    /// NUL.
    pub fn new(name: &str) -> Option<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 15 || bytes.contains(&0) {
            return None;
        }
        let mut padded = [0u8; 16];
        padded[..bytes.len()].copy_from_slice(bytes);
        Some(Self(padded))
    }

    pub fn as_str(&self) -> &str {
        let length = self.0.iter().position(|&byte| byte == 0).unwrap_or(16);
        // Built from a `&str`, or checked when decoded.
        std::str::from_utf8(&self.0[..length]).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let length = bytes.iter().position(|&byte| byte == 0)?;
        let name = std::str::from_utf8(&bytes[..length]).ok()?;
        // Nothing after the NUL but padding.
        bytes[length..]
            .iter()
            .all(|&byte| byte == 0)
            .then_some(())?;
        Self::new(name)
    }
}

impl std::fmt::Debug for InterfaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Bytes of one record: protocol, family, client (16 + 2), VIP (16 + 2), service port, real
/// (16 + 2), state, idle, local port and source.
const RECORD_LEN: usize = 1 + 1 + 18 + 18 + 2 + 18 + 1 + 4 + 2 + 1;
/// A record with its way back: a record, then whether a way back follows (0 or 1) and the
/// way back (interface name, client MAC, tag protocol, tag, local address as the real is
/// written), zeroes when there is none.
const RECORD_WAY_BACK_LEN: usize = RECORD_LEN + 1 + 16 + 6 + 2 + 4 + 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The backup's opening: the features it takes (the master answers with those it knows).
    Hello {
        features: u8,
    },
    NotMaster,
    Flows {
        sequence: u64,
        flows: Vec<FlowRecord>,
    },
    /// The bulk copy is complete: every flow the master had when it began was sent.
    BulkDone {
        sequence: u64,
        flows: u64,
    },
    /// Nothing changed; the connection is alive.
    Heartbeat {
        sequence: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {length} bytes is longer than the {MAX_FRAME} allowed")]
    TooLong { length: usize },
    #[error("{what} is truncated: {length} bytes, {needed} needed")]
    Truncated {
        what: &'static str,
        length: usize,
        needed: usize,
    },
    #[error("not a sync stream (magic {found:#010x}) or version {version} (this is {VERSION})")]
    Hello { found: u32, version: u8 },
    #[error("unknown frame kind {kind}")]
    Kind { kind: u8 },
    #[error("record {index}: address family {family} (expected 4 or 6)")]
    Family { index: usize, family: u8 },
    #[error("{count} records do not fit {length} bytes")]
    Count { count: usize, length: usize },
    #[error("record {index}: malformed way back (flag {flag}, its interface name or padding)")]
    WayBack { index: usize, flag: u8 },
}

impl Message {
    /// The frame, its length prefix included, for a stream with `features` (those of the
    /// backup's hello this side knows): without [`FEATURE_WAY_BACK`], flows go without
    /// their way back.
    pub fn encode(&self, features: u8) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Message::Hello { features } => {
                body.push(KIND_HELLO);
                body.extend_from_slice(&MAGIC.to_be_bytes());
                body.push(VERSION);
                body.push(*features);
            }
            Message::NotMaster => body.push(KIND_NOT_MASTER),
            Message::Flows { sequence, flows } => {
                let way_back = features & FEATURE_WAY_BACK != 0;
                let (kind, length) = if way_back {
                    (KIND_FLOWS_WAY_BACK, RECORD_WAY_BACK_LEN)
                } else {
                    (KIND_FLOWS, RECORD_LEN)
                };
                body.reserve(1 + 8 + 4 + flows.len() * length);
                body.push(kind);
                body.extend_from_slice(&sequence.to_be_bytes());
                body.extend_from_slice(&(flows.len() as u32).to_be_bytes());
                for flow in flows {
                    encode_record(flow, &mut body);
                    if way_back {
                        encode_way_back(flow.way_back.as_ref(), &mut body);
                    }
                }
            }
            Message::BulkDone { sequence, flows } => {
                body.push(KIND_BULK_DONE);
                body.extend_from_slice(&sequence.to_be_bytes());
                body.extend_from_slice(&flows.to_be_bytes());
            }
            Message::Heartbeat { sequence } => {
                body.push(KIND_HEARTBEAT);
                body.extend_from_slice(&sequence.to_be_bytes());
            }
        }
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    /// A frame's body (what follows the length).
    pub fn decode(body: &[u8]) -> Result<Message, WireError> {
        let need = |what, needed: usize| {
            if body.len() < needed {
                Err(WireError::Truncated {
                    what,
                    length: body.len(),
                    needed,
                })
            } else {
                Ok(())
            }
        };
        need("frame", 1)?;
        let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        match body[0] {
            KIND_HELLO => {
                need("hello", 6)?;
                let found = u32::from_be_bytes(body[1..5].try_into().expect("4 bytes"));
                let version = body[5];
                if found != MAGIC || version != VERSION {
                    return Err(WireError::Hello { found, version });
                }
                // An older backup's hello ends here: no features.
                let features = body.get(6).copied().unwrap_or(0);
                Ok(Message::Hello { features })
            }
            KIND_NOT_MASTER => Ok(Message::NotMaster),
            kind @ (KIND_FLOWS | KIND_FLOWS_WAY_BACK) => {
                need("flows header", 13)?;
                let sequence = u64_at(1);
                let count = u32::from_be_bytes(body[9..13].try_into().expect("4 bytes")) as usize;
                let records = &body[13..];
                let length = if kind == KIND_FLOWS {
                    RECORD_LEN
                } else {
                    RECORD_WAY_BACK_LEN
                };
                if count.checked_mul(length) != Some(records.len()) {
                    return Err(WireError::Count {
                        count,
                        length: records.len(),
                    });
                }
                let flows = records
                    .chunks_exact(length)
                    .enumerate()
                    .map(|(index, record)| {
                        let mut flow = decode_record(index, &record[..RECORD_LEN])?;
                        if kind == KIND_FLOWS_WAY_BACK {
                            flow.way_back = decode_way_back(index, &record[RECORD_LEN..])?;
                        }
                        Ok(flow)
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Message::Flows { sequence, flows })
            }
            KIND_BULK_DONE => {
                need("bulk done", 17)?;
                Ok(Message::BulkDone {
                    sequence: u64_at(1),
                    flows: u64_at(9),
                })
            }
            KIND_HEARTBEAT => {
                need("heartbeat", 9)?;
                Ok(Message::Heartbeat {
                    sequence: u64_at(1),
                })
            }
            kind => Err(WireError::Kind { kind }),
        }
    }
}

/// Checks a frame's length prefix.
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, WireError> {
    let length = u32::from_be_bytes(prefix) as usize;
    if length > MAX_FRAME {
        return Err(WireError::TooLong { length });
    }
    Ok(length)
}

fn address_bytes(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn address_of(bytes: &[u8], ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).expect("16 bytes"),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

fn encode_record(flow: &FlowRecord, out: &mut Vec<u8>) {
    out.push(flow.protocol);
    out.push(if flow.vip.is_ipv6() { 6 } else { 4 });
    out.extend_from_slice(&address_bytes(flow.client));
    out.extend_from_slice(&flow.client_port.to_be_bytes());
    out.extend_from_slice(&address_bytes(flow.vip));
    out.extend_from_slice(&flow.vip_port.to_be_bytes());
    out.extend_from_slice(&flow.service_port.to_be_bytes());
    // A real may be of the other family (a NAT64-style full-NAT real): its own family byte
    // would cost a byte per record for a rare case, so its bytes say it: an IPv4 real is
    // written as an IPv4-mapped IPv6 address.
    out.extend_from_slice(&mapped(flow.real));
    out.extend_from_slice(&flow.real_port.to_be_bytes());
    out.push(flow.state);
    out.extend_from_slice(&flow.idle_ms.to_be_bytes());
    out.extend_from_slice(&flow.local_port.to_be_bytes());
    out.push(flow.local_source);
}

fn decode_record(index: usize, record: &[u8]) -> Result<FlowRecord, WireError> {
    let u16_at = |at: usize| u16::from_be_bytes([record[at], record[at + 1]]);
    let ipv6 = match record[1] {
        4 => false,
        6 => true,
        family => return Err(WireError::Family { index, family }),
    };
    let real = unmapped(&record[40..56]);
    Ok(FlowRecord {
        protocol: record[0],
        client: address_of(&record[2..18], ipv6),
        client_port: u16_at(18),
        vip: address_of(&record[20..36], ipv6),
        vip_port: u16_at(36),
        service_port: u16_at(38),
        real,
        real_port: u16_at(56),
        state: record[58],
        idle_ms: u32::from_be_bytes(record[59..63].try_into().expect("4 bytes")),
        local_port: u16_at(63),
        local_source: record[65],
        way_back: None,
    })
}

/// An address in 16 bytes of either family: an IPv4 one IPv4-mapped.
fn mapped(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// [`mapped`] read back.
fn unmapped(bytes: &[u8]) -> IpAddr {
    let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes"));
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

fn encode_way_back(way_back: Option<&WayBack>, out: &mut Vec<u8>) {
    match way_back {
        Some(way_back) => {
            out.push(1);
            out.extend_from_slice(&way_back.interface.0);
            out.extend_from_slice(&way_back.client_mac);
            out.extend_from_slice(&way_back.vlan_proto.to_be_bytes());
            out.extend_from_slice(&way_back.vlan.to_be_bytes());
            // All zeroes, the unspecified address, for none.
            out.extend_from_slice(&way_back.local.map(mapped).unwrap_or_default());
        }
        None => out.extend_from_slice(&[0; RECORD_WAY_BACK_LEN - RECORD_LEN]),
    }
}

/// The way back after a record's first [`RECORD_LEN`] bytes.
fn decode_way_back(index: usize, bytes: &[u8]) -> Result<Option<WayBack>, WireError> {
    let flag = bytes[0];
    let refused = WireError::WayBack { index, flag };
    match flag {
        0 if bytes.iter().all(|&byte| byte == 0) => Ok(None),
        1 => {
            let interface = InterfaceName::decode(&bytes[1..17]).ok_or(refused)?;
            let local = bytes[29..45]
                .iter()
                .any(|&byte| byte != 0)
                .then(|| unmapped(&bytes[29..45]));
            Ok(Some(WayBack {
                interface,
                client_mac: bytes[17..23].try_into().expect("6 bytes"),
                vlan_proto: u16::from_be_bytes([bytes[23], bytes[24]]),
                vlan: u32::from_be_bytes(bytes[25..29].try_into().expect("4 bytes")),
                local,
            }))
        }
        _ => Err(refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> FlowRecord {
        FlowRecord {
            protocol: 6,
            client: "203.0.113.7".parse().unwrap(),
            client_port: 40000,
            vip: "192.0.2.10".parse().unwrap(),
            vip_port: 80,
            service_port: 80,
            real: "198.51.100.2".parse().unwrap(),
            real_port: 8080,
            state: 2,
            idle_ms: 1234,
            local_port: 0,
            local_source: 0,
            way_back: None,
        }
    }

    fn way_back() -> WayBack {
        WayBack {
            interface: InterfaceName::new("eth0.100").unwrap(),
            client_mac: [2, 0, 0, 0, 0, 1],
            vlan_proto: 0x8100,
            vlan: 0x1_0064,
            local: Some("192.0.2.4".parse().unwrap()),
        }
    }

    /// A version-1 record's bytes for [`record`].
    fn record_bytes() -> Vec<u8> {
        let mut expected = vec![6, 4]; // TCP, IPv4
        expected.extend_from_slice(&[203, 0, 113, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&40000u16.to_be_bytes());
        expected.extend_from_slice(&[192, 0, 2, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&80u16.to_be_bytes()); // VIP port
        expected.extend_from_slice(&80u16.to_be_bytes()); // service port
        // The real, IPv4-mapped.
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 2]);
        expected.extend_from_slice(&8080u16.to_be_bytes());
        expected.push(2); // ESTABLISHED
        expected.extend_from_slice(&1234u32.to_be_bytes()); // idle
        expected.extend_from_slice(&[0, 0, 0]); // local port, source
        expected
    }

    #[test]
    fn a_record_is_laid_out_field_by_field() {
        let frame = Message::Flows {
            sequence: 7,
            flows: vec![record()],
        }
        .encode(0);
        let mut expected = vec![0, 0, 0, 13 + 66]; // length
        expected.push(KIND_FLOWS);
        expected.extend_from_slice(&7u64.to_be_bytes()); // sequence
        expected.extend_from_slice(&1u32.to_be_bytes()); // count
        expected.extend_from_slice(&record_bytes());
        assert_eq!(frame, expected);
        assert_eq!(
            Message::decode(&frame[4..]).unwrap(),
            Message::Flows {
                sequence: 7,
                flows: vec![record()]
            }
        );
    }

    #[test]
    fn records_carry_their_way_back_to_a_backup_that_takes_it() {
        let with = FlowRecord {
            way_back: Some(way_back()),
            ..record()
        };
        let frame = Message::Flows {
            sequence: 7,
            flows: vec![with, record()],
        }
        .encode(FEATURE_WAY_BACK);
        let mut expected = vec![0, 0, 0, 13 + 2 * 111]; // length
        expected.push(KIND_FLOWS_WAY_BACK);
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(&record_bytes());
        expected.push(1);
        expected.extend_from_slice(b"eth0.100\0\0\0\0\0\0\0\0");
        expected.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0x81, 0x00, 0, 1, 0, 0x64]);
        // The local address, IPv4-mapped.
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 4]);
        expected.extend_from_slice(&record_bytes());
        expected.extend_from_slice(&[0; 45]);
        assert_eq!(frame, expected);
        assert_eq!(
            Message::decode(&frame[4..]).unwrap(),
            Message::Flows {
                sequence: 7,
                flows: vec![with, record()]
            }
        );
        // To a backup without the feature (an older lbd), the same flows without it.
        assert_eq!(
            Message::decode(
                &Message::Flows {
                    sequence: 7,
                    flows: vec![with]
                }
                .encode(0)[4..]
            )
            .unwrap(),
            Message::Flows {
                sequence: 7,
                flows: vec![record()]
            }
        );
    }

    #[test]
    fn every_message_round_trips() {
        let v6 = FlowRecord {
            client: "2001:db8::7".parse().unwrap(),
            vip: "2001:db8::10".parse().unwrap(),
            real: "2001:db8:1::2".parse().unwrap(),
            service_port: 0,
            // NAT's: no local address.
            way_back: Some(WayBack {
                local: None,
                ..way_back()
            }),
            ..record()
        };
        for message in [
            Message::Hello { features: 0 },
            Message::Hello { features: FEATURES },
            Message::NotMaster,
            Message::Flows {
                sequence: 1,
                flows: vec![record(), v6],
            },
            Message::Flows {
                sequence: 2,
                flows: Vec::new(),
            },
            Message::BulkDone {
                sequence: 3,
                flows: 2,
            },
            Message::Heartbeat { sequence: 4 },
        ] {
            let frame = message.encode(FEATURES);
            let length = frame_length(frame[..4].try_into().unwrap()).unwrap();
            assert_eq!(length, frame.len() - 4);
            assert_eq!(Message::decode(&frame[4..]).unwrap(), message);
        }
    }

    #[test]
    fn bad_frames_are_refused_with_what_is_wrong() {
        assert_eq!(
            frame_length((MAX_FRAME as u32 + 1).to_be_bytes()),
            Err(WireError::TooLong {
                length: MAX_FRAME + 1
            })
        );
        assert_eq!(Message::decode(&[9]), Err(WireError::Kind { kind: 9 }));
        for version in [0, 2] {
            let mut hello = Message::Hello { features: FEATURES }.encode(FEATURES);
            hello[9] = version;
            assert_eq!(
                Message::decode(&hello[4..]),
                Err(WireError::Hello {
                    found: MAGIC,
                    version
                })
            );
        }
        for features in [0, FEATURE_WAY_BACK] {
            let flows = Message::Flows {
                sequence: 1,
                flows: vec![FlowRecord {
                    way_back: Some(way_back()),
                    ..record()
                }],
            }
            .encode(features);
            // One byte short, at every length.
            for cut in 5..flows.len() {
                assert!(Message::decode(&flows[4..cut]).is_err(), "cut at {cut}");
            }
            let mut bad_family = flows.clone();
            bad_family[4 + 13 + 1] = 5;
            assert_eq!(
                Message::decode(&bad_family[4..]),
                Err(WireError::Family {
                    index: 0,
                    family: 5
                })
            );
        }
    }

    #[test]
    fn a_way_back_that_is_none_is_refused() {
        let frame = Message::Flows {
            sequence: 1,
            flows: vec![FlowRecord {
                way_back: Some(way_back()),
                ..record()
            }],
        }
        .encode(FEATURE_WAY_BACK);
        let flag_at = 4 + 13 + RECORD_LEN;
        let refused = |change: &dyn Fn(&mut Vec<u8>), flag| {
            let mut bad = frame.clone();
            change(&mut bad);
            assert_eq!(
                Message::decode(&bad[4..]),
                Err(WireError::WayBack { index: 0, flag })
            );
        };
        // A flag that is neither 0 nor 1.
        refused(&|bad| bad[flag_at] = 2, 2);
        // No way back, but bytes where it would be.
        refused(&|bad| bad[flag_at] = 0, 0);
        // An empty name, a name without its NUL, bytes after the NUL, not UTF-8.
        refused(&|bad| bad[flag_at + 1] = 0, 1);
        refused(&|bad| bad[flag_at + 1..flag_at + 17].fill(b'e'), 1);
        refused(&|bad| bad[flag_at + 16] = b'x', 1);
        refused(&|bad| bad[flag_at + 1] = 0xff, 1);
    }

    #[test]
    fn hellos_old_and_new_are_understood_both_ways() {
        // The first lbd's hello: kind, magic, version. No features.
        let old = [KIND_HELLO, 0x4c, 0x42, 0x53, 0x59, 1];
        assert_eq!(
            Message::decode(&old).unwrap(),
            Message::Hello { features: 0 }
        );
        // This one's adds a byte, which the first lbd (reading six bytes) never looks at.
        let new = Message::Hello { features: FEATURES }.encode(0);
        assert_eq!(&new[4..10], &old);
        assert_eq!(new[10], FEATURE_WAY_BACK);
        // Bits this side does not know yet are carried, for the master to mask.
        assert_eq!(
            Message::decode(&[&old[..], &[0xff]].concat()).unwrap(),
            Message::Hello { features: 0xff }
        );
    }

    #[test]
    fn interface_names_are_those_the_kernel_could_have() {
        assert_eq!(InterfaceName::new("eth0").unwrap().as_str(), "eth0");
        assert_eq!(
            InterfaceName::new("fifteen-bytes-x").unwrap().as_str(),
            "fifteen-bytes-x"
        );
        for bad in ["", "sixteen-bytes-xx", "a\0b"] {
            assert_eq!(InterfaceName::new(bad), None, "{bad:?}");
        }
    }
}
