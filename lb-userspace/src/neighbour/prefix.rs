//! Which interface a real is reached through: the longest connected prefix containing it.
//! Pure, so it is tested without a kernel.

use std::net::IpAddr;

use super::InterfaceInfo;

/// The interface (among `interfaces`) with a connected prefix containing `addr`; the longest
/// prefix wins, and the first interface listed wins a tie (e.g. `fe80::/64` on several).
#[must_use]
pub fn interface_for(addr: IpAddr, interfaces: &[InterfaceInfo]) -> Option<&InterfaceInfo> {
    let mut best: Option<(&InterfaceInfo, u8)> = None;
    for interface in interfaces {
        for &(network, len) in &interface.prefixes {
            if prefix_contains(network, len, addr)
                && best.is_none_or(|(_, best_len)| len > best_len)
            {
                best = Some((interface, len));
            }
        }
    }
    best.map(|(interface, _)| interface)
}

/// Whether `network/len` contains `addr`. An impossible length contains nothing.
pub fn prefix_contains(network: IpAddr, len: u8, addr: IpAddr) -> bool {
    // IPv4 is widened to 128 bits: the upper 96 bits are zero on both sides, so a mask that
    // also covers them changes nothing.
    let (network, addr, bits) = match (network, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            (u128::from(u32::from(n)), u128::from(u32::from(a)), 32_u32)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
        _ => return false,
    };
    let Some(host_bits) = bits.checked_sub(u32::from(len)) else {
        return false;
    };
    let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
    (network ^ addr) & mask == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, index: u32, prefixes: &[(&str, u8)]) -> InterfaceInfo {
        InterfaceInfo {
            name: name.to_owned(),
            index,
            mac: [0x02, 0, 0, 0, 0, index as u8],
            mtu: 1500,
            vlan: None,
            egress: index,
            prefixes: prefixes
                .iter()
                .map(|&(a, len)| (a.parse().unwrap(), len))
                .collect(),
        }
    }

    fn pick<'a>(addr: &str, interfaces: &'a [InterfaceInfo]) -> Option<&'a str> {
        interface_for(addr.parse().unwrap(), interfaces).map(|i| i.name.as_str())
    }

    #[test]
    fn longest_prefix_wins_whatever_the_order() {
        let wide = iface("wide", 1, &[("10.0.0.1", 8)]);
        let narrow = iface("narrow", 2, &[("10.1.2.1", 24)]);
        for interfaces in [vec![wide.clone(), narrow.clone()], vec![narrow, wide]] {
            assert_eq!(pick("10.1.2.50", &interfaces), Some("narrow"));
            assert_eq!(pick("10.9.9.9", &interfaces), Some("wide"));
        }
    }

    #[test]
    fn ipv4_boundaries() {
        let interfaces = [iface("eth0", 2, &[("192.0.2.1", 25)])];
        assert_eq!(pick("192.0.2.0", &interfaces), Some("eth0"));
        assert_eq!(pick("192.0.2.127", &interfaces), Some("eth0"));
        assert_eq!(pick("192.0.2.128", &interfaces), None);
        assert_eq!(pick("192.0.3.1", &interfaces), None);
        // /32: only the address itself; /0: everything of the family.
        let host = [iface("lo", 1, &[("192.0.2.9", 32)])];
        assert_eq!(pick("192.0.2.9", &host), Some("lo"));
        assert_eq!(pick("192.0.2.8", &host), None);
        let default = [iface("any", 3, &[("0.0.0.0", 0)])];
        assert_eq!(pick("198.51.100.7", &default), Some("any"));
        assert_eq!(pick("2001:db8::1", &default), None);
    }

    #[test]
    fn ipv6_and_families_do_not_mix() {
        let interfaces = [
            iface("v4", 1, &[("192.0.2.1", 24)]),
            iface("v6", 2, &[("2001:db8:0:1::1", 64), ("fe80::1", 64)]),
            iface("v6wide", 3, &[("2001:db8::1", 32)]),
        ];
        assert_eq!(pick("2001:db8:0:1::99", &interfaces), Some("v6"));
        assert_eq!(pick("2001:db8:0:2::99", &interfaces), Some("v6wide"));
        assert_eq!(pick("fe80::abcd", &interfaces), Some("v6"));
        assert_eq!(pick("2001:db9::1", &interfaces), None);
        // An IPv4-mapped IPv6 address is not an IPv4 address here.
        assert_eq!(pick("::ffff:192.0.2.5", &interfaces), None);
        let host = [iface("h", 4, &[("2001:db8::5", 128)])];
        assert_eq!(pick("2001:db8::5", &host), Some("h"));
        assert_eq!(pick("2001:db8::4", &host), None);
    }

    #[test]
    fn first_interface_wins_a_tie_and_nothing_matches_nothing() {
        let interfaces = [
            iface("a", 1, &[("fe80::1", 64)]),
            iface("b", 2, &[("fe80::2", 64)]),
        ];
        assert_eq!(pick("fe80::99", &interfaces), Some("a"));
        assert_eq!(pick("192.0.2.1", &[]), None);
        assert_eq!(pick("192.0.2.1", &[iface("bare", 1, &[])]), None);
    }

    #[test]
    fn impossible_prefix_lengths_contain_nothing() {
        let interfaces = [iface("bad", 1, &[("192.0.2.1", 33), ("2001:db8::1", 129)])];
        assert_eq!(pick("192.0.2.1", &interfaces), None);
        assert_eq!(pick("2001:db8::1", &interfaces), None);
    }
}
