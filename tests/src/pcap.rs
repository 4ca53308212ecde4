//! What a failing packet fixture leaves behind: a pcap to open in Wireshark and a diff that
//! names the fields that differ.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use lb_userspace::lbadm::dump::pcap::PcapWriter;

use crate::packet::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, PROTO_ICMP, PROTO_IPIP, PROTO_TCP, PROTO_UDP,
    TPID_8021AD, TPID_8021Q, tcp_flags,
};

/// Writes `frames` to `path` as a classic pcap file (microsecond timestamps 0, 1, 2, … so
/// the order shows), with lbadm dump's writer. Panics with the path on failure.
pub fn write_pcap(path: &Path, frames: &[&[u8]]) {
    let mut bytes = Vec::new();
    let mut writer = PcapWriter::new(&mut bytes, 65535).expect("writing to memory");
    for (index, frame) in frames.iter().enumerate() {
        let len = u32::try_from(frame.len()).expect("frame over 4 GiB");
        writer
            .write(index as u64 * 1_000, len, frame)
            .expect("writing to memory");
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
    }
    std::fs::write(path, bytes)
        .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

/// Where [`assert_frame_eq`] writes its pcaps: `$LB_PCAP_DIR`, else `<tmp>/lb-tests-pcap`.
pub fn pcap_dir() -> PathBuf {
    std::env::var_os("LB_PCAP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("lb-tests-pcap"))
}

/// Panics if the frames differ, with the field-level diff and the path of a pcap holding
/// `expected` then `actual`.
#[track_caller]
pub fn assert_frame_eq(name: &str, expected: &[u8], actual: &[u8]) {
    if expected == actual {
        return;
    }
    let path = pcap_dir().join(format!("{name}.pcap"));
    write_pcap(&path, &[expected, actual]);
    panic!(
        "{name}: output frame differs (expected then actual in {}):\n{}",
        path.display(),
        field_diff(expected, actual)
    );
}

/// One line per differing field, laid out from `expected`: e.g.
/// `eth.dst @0: expected 02:00:00:00:00:01 got 02:00:00:00:00:0b`. Bytes past the known
/// headers are compared as `payload` runs; a length difference gets its own line. Empty if
/// the frames are equal.
pub fn field_diff(expected: &[u8], actual: &[u8]) -> String {
    let mut out = String::new();
    if expected == actual {
        return out;
    }
    let fields = fields(expected);
    let covered = fields.last().map_or(0, |field| field.start + field.len);
    for field in &fields {
        let end = field.start + field.len;
        let want = &expected[field.start..end];
        let got = actual
            .get(field.start..end.min(actual.len()))
            .unwrap_or(&[]);
        if want != got {
            let _ = writeln!(
                out,
                "{} @{}: expected {} got {}",
                field.name,
                field.start,
                render(field.kind, want),
                if got.len() < want.len() && got.is_empty() {
                    "<missing>".to_owned()
                } else {
                    render(field.kind, got)
                }
            );
        }
    }
    diff_runs(&mut out, covered, expected, actual);
    if expected.len() != actual.len() {
        let _ = writeln!(
            out,
            "length: expected {} got {}",
            expected.len(),
            actual.len()
        );
    }
    out
}

/// Differing byte runs from `start` on: payload, or the whole frame if nothing parsed.
fn diff_runs(out: &mut String, start: usize, expected: &[u8], actual: &[u8]) {
    let end = expected.len().max(actual.len());
    let mut at = start;
    while at < end {
        if expected.get(at) == actual.get(at) {
            at += 1;
            continue;
        }
        let run_start = at;
        while at < end && expected.get(at) != actual.get(at) {
            at += 1;
        }
        let show = |frame: &[u8]| {
            let bytes = frame.get(run_start..at.min(frame.len())).unwrap_or(&[]);
            if bytes.is_empty() {
                "<missing>".to_owned()
            } else {
                hex_bytes(&bytes[..bytes.len().min(32)])
            }
        };
        let _ = writeln!(
            out,
            "payload @{run_start} (+{}, {} bytes): expected {} got {}",
            run_start - start,
            at - run_start,
            show(expected),
            show(actual)
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Mac,
    Ipv4,
    Ipv6,
    Dec,
    Hex,
    Tci,
    TcpFlags,
    Bytes,
}

struct Field {
    name: String,
    start: usize,
    len: usize,
    kind: Kind,
}

/// Fields of a frame in order, as far as its bytes go.
struct Fields<'a> {
    frame: &'a [u8],
    list: Vec<Field>,
}

impl Fields<'_> {
    /// Adds a field if the frame holds it whole; returns whether it did.
    fn add(&mut self, name: impl Into<String>, start: usize, len: usize, kind: Kind) -> bool {
        if start + len > self.frame.len() || len == 0 {
            return false;
        }
        self.list.push(Field {
            name: name.into(),
            start,
            len,
            kind,
        });
        true
    }

    fn u8_at(&self, at: usize) -> Option<u8> {
        self.frame.get(at).copied()
    }

    fn u16_at(&self, at: usize) -> Option<u16> {
        Some(u16::from_be_bytes(
            self.frame.get(at..at + 2)?.try_into().ok()?,
        ))
    }
}

fn fields(frame: &[u8]) -> Vec<Field> {
    let mut f = Fields {
        frame,
        list: Vec::new(),
    };
    f.add("eth.dst", 0, 6, Kind::Mac);
    f.add("eth.src", 6, 6, Kind::Mac);
    let mut at = 12;
    let mut tag = 0;
    while matches!(f.u16_at(at), Some(TPID_8021Q | TPID_8021AD)) {
        f.add(format!("vlan[{tag}].tpid"), at, 2, Kind::Hex);
        f.add(format!("vlan[{tag}].tci"), at + 2, 2, Kind::Tci);
        at += 4;
        tag += 1;
    }
    if f.add("eth.type", at, 2, Kind::Hex) {
        match f.u16_at(at) {
            Some(ETHERTYPE_IPV4) => ipv4(&mut f, at + 2, "ip"),
            Some(ETHERTYPE_IPV6) => ipv6(&mut f, at + 2),
            Some(ETHERTYPE_ARP) => arp(&mut f, at + 2),
            _ => {}
        }
    }
    f.list
}

fn ipv4(f: &mut Fields, at: usize, name: &str) {
    let Some(ihl) = f.u8_at(at).map(|byte| usize::from(byte & 0x0f) * 4) else {
        return;
    };
    for (field, offset, len, kind) in [
        ("version_ihl", 0, 1, Kind::Hex),
        ("tos", 1, 1, Kind::Hex),
        ("total_length", 2, 2, Kind::Dec),
        ("id", 4, 2, Kind::Hex),
        ("flags_fragment", 6, 2, Kind::Hex),
        ("ttl", 8, 1, Kind::Dec),
        ("protocol", 9, 1, Kind::Dec),
        ("checksum", 10, 2, Kind::Hex),
        ("src", 12, 4, Kind::Ipv4),
        ("dst", 16, 4, Kind::Ipv4),
    ] {
        f.add(format!("{name}.{field}"), at + offset, len, kind);
    }
    if ihl < 20 {
        return;
    }
    f.add(format!("{name}.options"), at + 20, ihl - 20, Kind::Bytes);
    let first_fragment = f.u16_at(at + 6).is_some_and(|flags| flags & 0x1fff == 0);
    if !first_fragment {
        return;
    }
    let l4 = at + ihl;
    match f.u8_at(at + 9) {
        Some(PROTO_IPIP) => ipv4(f, l4, &format!("inner.{name}")),
        Some(protocol) => transport(f, protocol, l4, name.strip_suffix("ip").unwrap_or("")),
        None => {}
    }
}

fn ipv6(f: &mut Fields, at: usize) {
    for (field, offset, len, kind) in [
        ("ip6.version_class_flow", 0, 4, Kind::Hex),
        ("ip6.payload_length", 4, 2, Kind::Dec),
        ("ip6.next_header", 6, 1, Kind::Dec),
        ("ip6.hop_limit", 7, 1, Kind::Dec),
        ("ip6.src", 8, 16, Kind::Ipv6),
        ("ip6.dst", 24, 16, Kind::Ipv6),
    ] {
        f.add(field, at + offset, len, kind);
    }
    if let Some(protocol) = f.u8_at(at + 6) {
        transport(f, protocol, at + 40, "");
    }
}

/// TCP, UDP or ICMP at `at`; `prefix` is "" or "inner." for the headers inside a tunnel.
fn transport(f: &mut Fields, protocol: u8, at: usize, prefix: &str) {
    let layout: &[(&str, usize, usize, Kind)] = match protocol {
        PROTO_TCP => &[
            ("tcp.sport", 0, 2, Kind::Dec),
            ("tcp.dport", 2, 2, Kind::Dec),
            ("tcp.seq", 4, 4, Kind::Dec),
            ("tcp.ack", 8, 4, Kind::Dec),
            ("tcp.data_offset", 12, 1, Kind::Hex),
            ("tcp.flags", 13, 1, Kind::TcpFlags),
            ("tcp.window", 14, 2, Kind::Dec),
            ("tcp.checksum", 16, 2, Kind::Hex),
            ("tcp.urgent", 18, 2, Kind::Dec),
        ],
        PROTO_UDP => &[
            ("udp.sport", 0, 2, Kind::Dec),
            ("udp.dport", 2, 2, Kind::Dec),
            ("udp.length", 4, 2, Kind::Dec),
            ("udp.checksum", 6, 2, Kind::Hex),
        ],
        PROTO_ICMP => &[
            ("icmp.type", 0, 1, Kind::Dec),
            ("icmp.code", 1, 1, Kind::Dec),
            ("icmp.checksum", 2, 2, Kind::Hex),
            ("icmp.rest", 4, 4, Kind::Hex),
        ],
        _ => return,
    };
    for (field, offset, len, kind) in layout {
        f.add(format!("{prefix}{field}"), at + offset, *len, *kind);
    }
    if protocol == PROTO_TCP
        && let Some(data_offset) = f.u8_at(at + 12).map(|byte| usize::from(byte >> 4) * 4)
        && data_offset > 20
    {
        f.add(
            format!("{prefix}tcp.options"),
            at + 20,
            data_offset - 20,
            Kind::Bytes,
        );
    }
}

fn arp(f: &mut Fields, at: usize) {
    for (field, offset, len, kind) in [
        ("arp.htype", 0, 2, Kind::Dec),
        ("arp.ptype", 2, 2, Kind::Hex),
        ("arp.hlen", 4, 1, Kind::Dec),
        ("arp.plen", 5, 1, Kind::Dec),
        ("arp.oper", 6, 2, Kind::Dec),
        ("arp.sha", 8, 6, Kind::Mac),
        ("arp.spa", 14, 4, Kind::Ipv4),
        ("arp.tha", 18, 6, Kind::Mac),
        ("arp.tpa", 24, 4, Kind::Ipv4),
    ] {
        f.add(field, at + offset, len, kind);
    }
}

fn render(kind: Kind, bytes: &[u8]) -> String {
    let number = || {
        bytes
            .iter()
            .fold(0u64, |value, byte| value << 8 | u64::from(*byte))
    };
    let hex = || format!("0x{:0width$x}", number(), width = bytes.len() * 2);
    let whole = |len: usize| bytes.len() == len;
    match kind {
        Kind::Mac if whole(6) => bytes
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        Kind::Ipv4 if whole(4) => {
            Ipv4Addr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string()
        }
        Kind::Ipv6 if whole(16) => {
            Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string()
        }
        Kind::Dec => format!("{} ({})", number(), hex()),
        Kind::Hex => hex(),
        Kind::Tci if whole(2) => {
            let tci = number();
            format!("{} (vlan {}, prio {})", hex(), tci & 0x0fff, tci >> 13)
        }
        Kind::TcpFlags if whole(1) => {
            let names = [
                (tcp_flags::FIN, "FIN"),
                (tcp_flags::SYN, "SYN"),
                (tcp_flags::RST, "RST"),
                (tcp_flags::PSH, "PSH"),
                (tcp_flags::ACK, "ACK"),
                (tcp_flags::URG, "URG"),
            ]
            .iter()
            .filter(|(bit, _)| bytes[0] & bit != 0)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>();
            format!("{} [{}]", hex(), names.join("|"))
        }
        _ => hex_bytes(bytes),
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use super::*;
    use crate::packet::Frame;

    fn syn() -> Frame {
        let client: SocketAddrV4 = "192.0.2.1:40000".parse().unwrap();
        let vip: SocketAddrV4 = "192.0.2.100:80".parse().unwrap();
        Frame::tcp(client, vip).syn().vlan(100)
    }

    #[test]
    fn names_the_fields_that_differ() {
        let expected = syn()
            .dst_mac([2, 0, 0, 0, 0, 0x0b])
            .ttl(63)
            .payload(b"abc")
            .build();
        let actual = syn().payload(b"abd").build();
        let diff = field_diff(&expected, &actual);
        let lines = diff.lines().collect::<Vec<_>>();
        assert_eq!(
            lines[0], "eth.dst @0: expected 02:00:00:00:00:0b got 02:00:00:00:00:02",
            "{diff}"
        );
        assert!(
            lines[1].starts_with("ip.ttl @26: expected 63 (0x3f) got 64 (0x40)"),
            "{diff}"
        );
        assert!(lines[2].starts_with("ip.checksum @28: "), "{diff}");
        assert!(lines[3].starts_with("tcp.checksum @54: "), "{diff}");
        assert_eq!(
            lines[4], "payload @60 (+2, 1 bytes): expected 63 got 64",
            "{diff}"
        );
        assert_eq!(lines.len(), 5, "{diff}");
        assert_eq!(field_diff(&expected, &expected), "");
    }

    #[test]
    fn reports_missing_fields_and_length() {
        let expected = syn().build();
        let actual = crate::packet::truncated(&expected, 40);
        let diff = field_diff(&expected, &actual);
        assert!(
            diff.contains("tcp.seq @42: expected 1 (0x00000001) got <missing>"),
            "{diff}"
        );
        assert!(!diff.contains("tcp.sport"), "{diff}");
        assert!(
            diff.contains("tcp.dport @40: expected 80 (0x0050) got <missing>"),
            "{diff}"
        );
        assert!(diff.ends_with("length: expected 58 got 40\n"), "{diff}");
        let flags = field_diff(&syn().build(), &syn().ack().build());
        assert!(
            flags.starts_with("tcp.flags @51: expected 0x02 [SYN] got 0x12 [SYN|ACK]\n"),
            "{flags}"
        );
    }

    #[test]
    fn pcap_layout() {
        let frame = syn().build();
        let path = std::env::temp_dir().join(format!("lb-tests-pcap-{}.pcap", std::process::id()));
        write_pcap(&path, &[&frame, &frame[..20]]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bytes.len(), 24 + 16 + frame.len() + 16 + 20);
        assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&bytes[20..24], &[1, 0, 0, 0]); // Ethernet
        assert_eq!(&bytes[32..36], &(frame.len() as u32).to_le_bytes());
        assert_eq!(&bytes[40..40 + frame.len()], &frame[..]);
    }
}
