//! The IPv4 header and the knobs that set its fields.

use std::net::Ipv4Addr;

use super::{Frame, checks::checksum};

#[derive(Clone, Debug)]
pub(super) struct Ipv4 {
    pub(super) src: Ipv4Addr,
    pub(super) dst: Ipv4Addr,
    tos: u8,
    id: u16,
    dont_fragment: bool,
    more_fragments: bool,
    /// In bytes; a multiple of 8.
    fragment_offset: u16,
    pub(super) ttl: u8,
    options: Vec<u8>,
    ihl: Option<u8>,
    total_length: Option<u16>,
    checksum: Option<u16>,
}

impl Ipv4 {
    pub(super) fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4 {
        Ipv4 {
            src,
            dst,
            tos: 0,
            id: 0,
            dont_fragment: false,
            more_fragments: false,
            fragment_offset: 0,
            ttl: 64,
            options: Vec::new(),
            ihl: None,
            total_length: None,
            checksum: None,
        }
    }

    pub(super) fn header(&self, protocol: u8, segment_len: usize) -> Vec<u8> {
        let header_len = 20 + self.options.len();
        let ihl = self.ihl.unwrap_or((header_len / 4) as u8);
        let total_length = self.total_length.unwrap_or_else(|| {
            u16::try_from(header_len + segment_len).expect("IPv4 packet over 64 KiB")
        });
        let flags_offset = (u16::from(self.dont_fragment) << 14)
            | (u16::from(self.more_fragments) << 13)
            | (self.fragment_offset / 8);
        let mut header = Vec::with_capacity(header_len);
        header.push(0x40 | ihl);
        header.push(self.tos);
        header.extend_from_slice(&total_length.to_be_bytes());
        header.extend_from_slice(&self.id.to_be_bytes());
        header.extend_from_slice(&flags_offset.to_be_bytes());
        header.push(self.ttl);
        header.push(protocol);
        header.extend_from_slice(&[0, 0]);
        header.extend_from_slice(&self.src.octets());
        header.extend_from_slice(&self.dst.octets());
        header.extend_from_slice(&self.options);
        let checksum = self.checksum.unwrap_or_else(|| checksum(&[&header]));
        header[10..12].copy_from_slice(&checksum.to_be_bytes());
        header
    }
}

impl Frame {
    pub fn tos(mut self, tos: u8) -> Frame {
        self.ipv4_mut("tos").tos = tos;
        self
    }

    pub fn ip_id(mut self, id: u16) -> Frame {
        self.ipv4_mut("ip_id").id = id;
        self
    }

    pub fn dont_fragment(mut self) -> Frame {
        self.ipv4_mut("dont_fragment").dont_fragment = true;
        self
    }

    /// Marks the packet a fragment: `more` sets MF, `offset` is in bytes (a multiple of 8).
    /// The builder still writes the L4 header after the IP header: for a non-first fragment
    /// those bytes are simply fragment data. (To cut a whole packet into fragments, see
    /// [`super::fragments`]; for IPv6, [`Frame::ipv6_fragment_header`].)
    pub fn fragment(mut self, more: bool, offset: u16) -> Frame {
        assert!(
            offset.is_multiple_of(8) && offset / 8 < 0x2000,
            "fragment offset {offset} is not a multiple of 8 below 65536"
        );
        let ip = self.ipv4_mut("fragment");
        ip.more_fragments = more;
        ip.fragment_offset = offset;
        self
    }

    /// IPv4 options, padded by the caller to a multiple of 4 bytes (at most 40); IHL follows.
    pub fn ip_options(mut self, options: &[u8]) -> Frame {
        assert!(
            options.len().is_multiple_of(4) && options.len() <= 40,
            "IPv4 options must be 0..=40 bytes, a multiple of 4"
        );
        self.ipv4_mut("ip_options").options = options.to_vec();
        self
    }

    /// Malformed on purpose: writes this IHL instead of the true one.
    pub fn ip_ihl(mut self, ihl: u8) -> Frame {
        assert!(ihl < 16, "IHL {ihl} does not fit 4 bits");
        self.ipv4_mut("ip_ihl").ihl = Some(ihl);
        self
    }

    /// Malformed on purpose: writes this total length instead of the true one.
    pub fn ip_total_length(mut self, length: u16) -> Frame {
        self.ipv4_mut("ip_total_length").total_length = Some(length);
        self
    }

    /// Malformed on purpose: writes this header checksum instead of the true one.
    pub fn ip_checksum(mut self, checksum: u16) -> Frame {
        self.ipv4_mut("ip_checksum").checksum = Some(checksum);
        self
    }
}
