//! Packet fixtures for the Ethernet side of forwarding: VLAN tags set for the real's own
//! interface, jumbo (multi-buffer) frames, and reals behind another interface (XDP_REDIRECT).
//! Needs root.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use lb_common::Reason;
use lb_tests::{
    fixture::{
        BALANCER_MAC, Balancer, INGRESS_IFINDEX, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX,
        check_exact, loopback, pin_to_current_cpu, real_mac_for,
    },
    netns::{self, Netns},
    packet::{Frame, Mac, TPID_8021AD, TPID_8021Q},
    privilege::require_root,
};
use lb_userspace::neighbour::{InterfaceInfo, Vlan};

const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const UNTAGGED_REAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const VLAN_REAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const VLAN_ID: u16 = 100;
const VLAN_MAC: Mac = [0x02, 0, 0, 0, 0xbb, 0x64];

fn syn(port: u16) -> Frame {
    syn_from(40000, port)
}

/// A SYN from the client's `client_port` to the VIP's `port`, addressed to the balancer.
fn syn_from(client_port: u16, port: u16) -> Frame {
    Frame::tcp(
        SocketAddrV4::new(CLIENT, client_port),
        SocketAddrV4::new(VIP, port),
    )
    .src_mac(CLIENT_MAC)
    .dst_mac(BALANCER_MAC)
    .syn()
}

/// VLAN 100 on the loopback, where 198.51.100.0/25 lives (longer than the loopback's /24,
/// so reals there are reached through the VLAN).
fn vlan_interface() -> InterfaceInfo {
    InterfaceInfo {
        name: "lo.100".into(),
        index: 100,
        mac: VLAN_MAC,
        prefixes: vec![(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 25)],
        mtu: 1500,
        vlan: Some(Vlan {
            id: VLAN_ID,
            protocol: TPID_8021Q,
        }),
        egress: INGRESS_IFINDEX,
    }
}

#[test]
fn frames_leave_with_the_tag_of_the_reals_interface() {
    if !require_root("frames_leave_with_the_tag_of_the_reals_interface") {
        return;
    }
    pin_to_current_cpu();
    let config = "
instance: vlan
interfaces: [{name: lo}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}
  - {vip: 192.0.2.100, port: 443, protocol: tcp, reals: [{address: 198.51.100.11}]}
limits: {flows: 1024, services: 8, reals: 8}
";
    let mut balancer = Balancer::load_with_interfaces(config, vec![loopback(), vlan_interface()]);
    let to_untagged = |frame: Frame| {
        frame
            .dst_mac(real_mac_for(UNTAGGED_REAL))
            .src_mac(BALANCER_MAC)
            .build()
    };
    let to_vlan = |frame: Frame, tci: u16| {
        frame
            .tag(TPID_8021Q, tci)
            .dst_mac(real_mac_for(VLAN_REAL))
            .src_mac(VLAN_MAC)
            .build()
    };
    // (name, frame in, frame out): the output always carries the real's interface's tag.
    let priority_5 = 5 << 13;
    let cases = [
        (
            "tagged_client_to_untagged_real_loses_the_tag",
            syn(80).tag(TPID_8021Q, 7).build(),
            to_untagged(syn(80)),
        ),
        (
            "untagged_client_to_untagged_real",
            Frame::tcp(SocketAddrV4::new(CLIENT, 40001), SocketAddrV4::new(VIP, 80))
                .src_mac(CLIENT_MAC)
                .dst_mac(BALANCER_MAC)
                .syn()
                .build(),
            to_untagged(
                Frame::tcp(SocketAddrV4::new(CLIENT, 40001), SocketAddrV4::new(VIP, 80)).syn(),
            ),
        ),
        (
            "untagged_client_to_vlan_real_gains_the_tag",
            syn(443).build(),
            to_vlan(syn(443), VLAN_ID),
        ),
        (
            "other_vlan_to_vlan_real_keeps_its_priority",
            syn_from(40002, 443).tag(TPID_8021Q, priority_5 | 7).build(),
            to_vlan(syn_from(40002, 443), priority_5 | VLAN_ID),
        ),
        (
            "802_1ad_tag_becomes_the_reals_802_1q_tag",
            syn_from(40003, 443).tag(TPID_8021AD, 9).build(),
            to_vlan(syn_from(40003, 443), VLAN_ID),
        ),
    ];
    for (name, frame, expected) in &cases {
        check_exact(
            &mut balancer,
            name,
            frame,
            XDP_TX,
            Reason::ForwardedTx,
            expected,
        );
    }
    // Bytes are counted as received: the tag a frame came with, not the one it left with.
    let received: u64 = cases.iter().map(|(_, frame, _)| frame.len() as u64).sum();
    let counted = balancer.service_counters(0).bytes + balancer.service_counters(1).bytes;
    assert_eq!(counted, received);
}

#[test]
fn jumbo_frames_are_balanced_whole() {
    if !require_root("jumbo_frames_are_balanced_whole") {
        return;
    }
    pin_to_current_cpu();
    let mut balancer = Balancer::load(
        "instance: jumbo\ninterfaces: [{name: lo}]\nservices:\n  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}\n",
    );
    // 9,000-byte IP packets: more than a page, so the kernel hands the program a frame in
    // several buffers (the program is built with xdp.frags).
    let payload: Vec<u8> = (0..8960u32).map(|i| i as u8).collect();
    // A SYN carrying data (as TCP Fast Open sends): a segment that may open a flow.
    let jumbo = syn(80).payload(&payload).build();
    assert!(jumbo.len() > 9000, "{}", jumbo.len());
    let expected = syn(80)
        .payload(&payload)
        .dst_mac(real_mac_for(UNTAGGED_REAL))
        .src_mac(BALANCER_MAC)
        .build();
    check_exact(
        &mut balancer,
        "jumbo_tcp",
        &jumbo,
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    assert_eq!(balancer.service_counters(0).bytes, jumbo.len() as u64);

    // A length field claiming more than even the whole multi-buffer frame holds.
    let mut lying = jumbo.clone();
    let claimed = (jumbo.len() - 14 + 100) as u16;
    lying[16..18].copy_from_slice(&claimed.to_be_bytes());
    check_exact(
        &mut balancer,
        "jumbo_total_length_past_the_last_buffer",
        &lying,
        XDP_PASS,
        Reason::PassTruncated,
        &lying,
    );
}

#[test]
fn a_real_behind_another_interface_is_reached_with_a_redirect() {
    if !require_root("a_real_behind_another_interface_is_reached_with_a_redirect") {
        return;
    }
    // Redirects need interfaces that exist: a veth pair in a namespace of the test's own.
    let prefix = format!("lbt-fr-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let ns = Netns::create(&format!("{prefix}redirect"));
    let second_mac: Mac = [0x02, 0, 0, 0, 0xbb, 0x02];
    ns.ip(&[
        "link",
        "add",
        "eth1",
        "address",
        "02:00:00:00:bb:02",
        "type",
        "veth",
        "peer",
        "name",
        "eth2",
    ]);
    ns.ip(&["link", "set", "eth1", "up"]);
    ns.ip(&["link", "set", "eth2", "up"]);
    ns.ip(&["link", "set", "lo", "up"]);
    ns.run(|| {
        pin_to_current_cpu();
        let index = |name: &str| {
            let name = std::ffi::CString::new(name).unwrap();
            // SAFETY: a NUL-terminated name.
            unsafe { libc::if_nametoindex(name.as_ptr()) }
        };
        let (eth1, eth2) = (index("eth1"), index("eth2"));
        assert!(eth1 != 0 && eth2 != 0);
        // Reals on 198.51.100.0/25 sit behind eth1, an interface the program runs on. Reals on
        // 203.0.113.0/25 sit on a VLAN of eth2, where it does not run.
        let behind = InterfaceInfo {
            name: "eth1".into(),
            index: eth1,
            mac: second_mac,
            prefixes: vec![(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 25)],
            mtu: 1500,
            vlan: None,
            egress: eth1,
        };
        let elsewhere = InterfaceInfo {
            name: "eth2.7".into(),
            index: 1000,
            mac: [0x02, 0, 0, 0, 0xbb, 0x03],
            prefixes: vec![(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 25)],
            mtu: 1500,
            vlan: Some(Vlan {
                id: 7,
                protocol: TPID_8021Q,
            }),
            egress: eth2,
        };
        let mut balancer = Balancer::load_with_interfaces(
            "
instance: redirect
interfaces: [{name: lo}, {name: eth1}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 198.51.100.21}]}
  - {vip: 192.0.2.100, port: 81, protocol: tcp, reals: [{address: 203.0.113.21}]}
limits: {flows: 1024, services: 8, reals: 8}
",
            vec![loopback(), behind, elsewhere],
        );
        let expected = syn(80)
            .dst_mac(real_mac_for(Ipv4Addr::new(198, 51, 100, 21)))
            .src_mac(second_mac)
            .build();
        check_exact(
            &mut balancer,
            "real_behind_eth1",
            &syn(80).build(),
            XDP_REDIRECT,
            Reason::ForwardedRedirect,
            &expected,
        );
        assert_eq!(balancer.service_counters(0).packets, 1);
        let frame = syn(81).build();
        check_exact(
            &mut balancer,
            "real_behind_an_interface_without_the_program",
            &frame,
            XDP_DROP,
            Reason::DropRedirectFailed,
            &frame,
        );
        assert_eq!(
            balancer.service_counters(1).packets,
            0,
            "a failed redirect is not counted as forwarded"
        );
    });
}
