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
//! never by id: ids depend on each node's history.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// "LBSY".
pub const MAGIC: u32 = 0x4c42_5359;
pub const VERSION: u8 = 1;
/// The longest frame either side accepts (a batch of [`MAX_BATCH`] records fits well).
pub const MAX_FRAME: usize = 1 << 20;
/// Records per batch.
pub const MAX_BATCH: usize = 4096;

const KIND_HELLO: u8 = 1;
const KIND_NOT_MASTER: u8 = 2;
const KIND_FLOWS: u8 = 3;
const KIND_BULK_DONE: u8 = 4;
const KIND_HEARTBEAT: u8 = 5;

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
}

/// Bytes of one record: protocol, family, client (16 + 2), VIP (16 + 2), service port,
/// real (16 + 2), state, idle, local port and source.
const RECORD_LEN: usize = 1 + 1 + 18 + 18 + 2 + 18 + 1 + 4 + 2 + 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello,
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
}

impl Message {
    /// The frame, its length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Message::Hello => {
                body.push(KIND_HELLO);
                body.extend_from_slice(&MAGIC.to_be_bytes());
                body.push(VERSION);
            }
            Message::NotMaster => body.push(KIND_NOT_MASTER),
            Message::Flows { sequence, flows } => {
                body.reserve(1 + 8 + 4 + flows.len() * RECORD_LEN);
                body.push(KIND_FLOWS);
                body.extend_from_slice(&sequence.to_be_bytes());
                body.extend_from_slice(&(flows.len() as u32).to_be_bytes());
                for flow in flows {
                    encode_record(flow, &mut body);
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
                Ok(Message::Hello)
            }
            KIND_NOT_MASTER => Ok(Message::NotMaster),
            KIND_FLOWS => {
                need("flows header", 13)?;
                let sequence = u64_at(1);
                let count = u32::from_be_bytes(body[9..13].try_into().expect("4 bytes")) as usize;
                let records = &body[13..];
                if count.checked_mul(RECORD_LEN) != Some(records.len()) {
                    return Err(WireError::Count {
                        count,
                        length: records.len(),
                    });
                }
                let flows = records
                    .chunks_exact(RECORD_LEN)
                    .enumerate()
                    .map(|(index, record)| decode_record(index, record))
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
    let real = match flow.real {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    out.extend_from_slice(&real);
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
    let real_v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&record[40..56]).expect("16 bytes"));
    let real = real_v6
        .to_ipv4_mapped()
        .map_or(IpAddr::V6(real_v6), IpAddr::V4);
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
    })
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
        }
    }

    #[test]
    fn a_record_is_laid_out_field_by_field() {
        let frame = Message::Flows {
            sequence: 7,
            flows: vec![record()],
        }
        .encode();
        let mut expected = vec![0, 0, 0, 13 + 66]; // length
        expected.push(KIND_FLOWS);
        expected.extend_from_slice(&7u64.to_be_bytes()); // sequence
        expected.extend_from_slice(&1u32.to_be_bytes()); // count
        expected.extend_from_slice(&[6, 4]); // TCP, IPv4
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
    fn every_message_round_trips() {
        let v6 = FlowRecord {
            client: "2001:db8::7".parse().unwrap(),
            vip: "2001:db8::10".parse().unwrap(),
            real: "2001:db8:1::2".parse().unwrap(),
            service_port: 0,
            ..record()
        };
        for message in [
            Message::Hello,
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
            let frame = message.encode();
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
        let mut hello = Message::Hello.encode();
        hello[9] = 2;
        assert_eq!(
            Message::decode(&hello[4..]),
            Err(WireError::Hello {
                found: MAGIC,
                version: 2
            })
        );
        let flows = Message::Flows {
            sequence: 1,
            flows: vec![record()],
        }
        .encode();
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
