//! VRRPv3 adverts as the sockets hand them over: an IPv4 packet with its header (first byte
//! even), or an IPv6 payload with the source and destination the socket reported (first
//! byte odd, then 16 + 16 bytes of addresses). An advert that parses must emit bytes that
//! parse back to it.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use lb_userspace::vrrp::packet::{Advert, parse_ipv4_packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&family, rest)) = data.split_first() else {
        return;
    };
    let parsed = if family % 2 == 0 {
        parse_ipv4_packet(rest)
            .ok()
            .map(|(src, dst, advert)| (IpAddr::V4(src), IpAddr::V4(dst), advert))
    } else {
        let Some((addresses, payload)) = rest.split_first_chunk::<32>() else {
            return;
        };
        let (src, dst) = addresses.split_at(16);
        let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(src).unwrap()));
        let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(dst).unwrap()));
        Advert::parse(payload, src, dst)
            .ok()
            .map(|advert| (src, dst, advert))
    };
    if let Some((src, dst, advert)) = parsed {
        let emitted = advert.emit(src, dst);
        assert_eq!(
            Advert::parse(&emitted, src, dst).as_ref(),
            Ok(&advert),
            "{advert:?} from {src} to {dst} emitted as {emitted:02x?}"
        );
    }
});
