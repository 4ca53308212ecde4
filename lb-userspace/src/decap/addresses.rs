//! Which addresses the decapsulation program acts for, from the host's address list (pure).
//!
//! A tunnel packet is for this host when its outer destination is an address of one of its
//! interfaces other than a loopback (where the balancer sends it) and its inner destination is
//! a VIP the host serves. LVS reals keep their VIPs on `lo`, so every address on a loopback
//! interface that is not itself a loopback address (127.0.0.0/8, ::1) counts as a VIP, and
//! `--vip` adds any other.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use lb_common::{
    FAMILY_IPV4, FAMILY_IPV6,
    decap::{DECAP_LOCAL, DECAP_VIP, DecapAddrKey},
};

use crate::neighbour::HostAddress;

/// Each address the program acts for, with its `DECAP_*` flags: what the address map holds.
pub type DecapAddresses = BTreeMap<IpAddr, u32>;

/// The address map wanted for the host's addresses `host` and the extra VIPs `vips`.
pub fn wanted(host: &[HostAddress], vips: &[IpAddr]) -> DecapAddresses {
    let mut addresses = DecapAddresses::new();
    for address in host {
        if is_loopback(address.addr) {
            continue;
        }
        let flag = if address.loopback {
            DECAP_VIP
        } else {
            DECAP_LOCAL
        };
        *addresses.entry(address.addr).or_default() |= flag;
    }
    for &vip in vips {
        *addresses.entry(vip).or_default() |= DECAP_VIP;
    }
    addresses
}

/// Why `addr` cannot be a VIP given with `--vip`, if it cannot.
pub fn refuse_vip(addr: IpAddr) -> Option<&'static str> {
    if is_loopback(addr) {
        Some("a loopback address is never a tunnel's destination")
    } else if addr.is_unspecified() {
        Some("the unspecified address is no VIP")
    } else if addr.is_multicast() || addr == IpAddr::V4(Ipv4Addr::BROADCAST) {
        Some("a multicast or broadcast address is no VIP")
    } else {
        None
    }
}

fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The key the program looks `addr` up by.
pub fn key(addr: IpAddr) -> DecapAddrKey {
    match addr {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            DecapAddrKey {
                addr: bytes,
                family: u32::from(FAMILY_IPV4),
            }
        }
        IpAddr::V6(v6) => DecapAddrKey {
            addr: v6.octets(),
            family: u32::from(FAMILY_IPV6),
        },
    }
}

/// The address a key holds (for reading the map back).
pub fn addr_of(key: &DecapAddrKey) -> Option<IpAddr> {
    match u8::try_from(key.family).ok()? {
        FAMILY_IPV4 => {
            let octets: [u8; 4] = key.addr[..4].try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        FAMILY_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(key.addr))),
        _ => None,
    }
}

/// What the program decapsulates, in one line for the log: `to 192.0.2.2, 2001:db8::2 for
/// VIPs 203.0.113.10`.
pub fn describe(addresses: &DecapAddresses) -> String {
    let list = |flag: u32| {
        let chosen: Vec<String> = addresses
            .iter()
            .filter(|(_, flags)| *flags & flag != 0)
            .map(|(addr, _)| addr.to_string())
            .collect();
        if chosen.is_empty() {
            "(none)".to_owned()
        } else {
            chosen.join(", ")
        }
    };
    let mut line = format!("to {} for VIPs {}", list(DECAP_LOCAL), list(DECAP_VIP));
    if !addresses.values().any(|flags| flags & DECAP_VIP != 0) {
        let _ = write!(
            line,
            " (no VIP: nothing is decapsulated until one is added to lo or named with --vip)"
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(interface: &str, loopback: bool, addr: &str) -> HostAddress {
        HostAddress {
            addr: addr.parse().unwrap(),
            ifindex: if loopback { 1 } else { 2 },
            interface: interface.to_owned(),
            loopback,
        }
    }

    fn ip(addr: &str) -> IpAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn interface_addresses_are_local_and_loopback_ones_vips() {
        let host = [
            on("lo", true, "127.0.0.1"),
            on("lo", true, "::1"),
            on("lo", true, "203.0.113.10"),
            on("lo", true, "2001:db8:100::10"),
            on("eth0", false, "192.0.2.2"),
            on("eth0", false, "2001:db8::2"),
            on("eth0", false, "fe80::1"),
            // The same address on both: both flags.
            on("eth1", false, "198.51.100.5"),
            on("lo", true, "198.51.100.5"),
        ];
        let wanted = wanted(&host, &[ip("203.0.113.20"), ip("203.0.113.10")]);
        let expected = DecapAddresses::from([
            (ip("192.0.2.2"), DECAP_LOCAL),
            (ip("198.51.100.5"), DECAP_LOCAL | DECAP_VIP),
            (ip("203.0.113.10"), DECAP_VIP),
            (ip("203.0.113.20"), DECAP_VIP),
            (ip("2001:db8::2"), DECAP_LOCAL),
            (ip("2001:db8:100::10"), DECAP_VIP),
            (ip("fe80::1"), DECAP_LOCAL),
        ]);
        assert_eq!(wanted, expected);
        assert_eq!(
            describe(&wanted),
            "to 192.0.2.2, 198.51.100.5, 2001:db8::2, fe80::1 for VIPs 198.51.100.5, \
             203.0.113.10, 203.0.113.20, 2001:db8:100::10"
        );
    }

    #[test]
    fn a_host_without_vips_says_so() {
        let wanted = wanted(&[on("eth0", false, "192.0.2.2")], &[]);
        assert!(describe(&wanted).contains("VIPs (none) (no VIP: nothing is decapsulated"));
    }

    #[test]
    fn keys_round_trip_and_match_the_programs_layout() {
        for addr in ["192.0.2.2", "2001:db8::2"] {
            assert_eq!(addr_of(&key(ip(addr))), Some(ip(addr)));
        }
        let v4 = key(ip("192.0.2.2"));
        assert_eq!(v4.addr, [192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(v4.family, 2);
        assert_eq!(key(ip("2001:db8::2")).family, 10);
    }

    #[test]
    fn vips_that_cannot_be_are_refused() {
        for bad in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::",
            "224.0.0.18",
            "ff02::12",
            "::ffff:127.0.0.1",
        ] {
            assert!(refuse_vip(ip(bad)).is_some(), "{bad}");
        }
        for good in ["203.0.113.10", "2001:db8::10"] {
            assert_eq!(refuse_vip(ip(good)), None, "{good}");
        }
    }
}
