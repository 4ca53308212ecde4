//! What the forwarding-method fixtures (`fixtures_tunnel.rs`, `fixtures_nat.rs`) share: one
//! config with a service per method and family (each with one real, so every new flow's real
//! is known), the addresses, and frames as they go between client, balancer and reals.
//!
//! Expected frames are built independently by the packet builder (`packet::ipip`,
//! `packet::gue`, `Frame`), whose checksums are computed from scratch, so an incremental
//! checksum update in the program that drifts by one bit fails a fixture.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use lb_common::{FlowKey, LOCAL_PORT_COUNT, LOCAL_PORT_FIRST, hash};
use lb_userspace::reconcile::address_bytes;

use crate::{
    fixture::{BALANCER_MAC, real_mac_for},
    packet::{CLIENT_MAC, Frame},
};

pub const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7);

/// One service per method and family; each has one real, so every new flow's real is known.
pub const CONFIG: &str = "
instance: fixtures-fwd
interfaces: [{name: lo}]
services:
  - {vip: 192.0.2.10, port: 80, protocol: tcp, scheduler: rr, forward: tun,
     reals: [{address: 198.51.100.11}]}
  - {vip: 2001:db8::100, port: 80, protocol: tcp, scheduler: rr, forward: tun,
     reals: [{address: '2001:db8::11'}]}
  - {vip: 192.0.2.10, port: 81, protocol: tcp, scheduler: rr, forward: tun,
     reals: [{address: '2001:db8::12'}]}
  - {vip: 2001:db8::100, port: 81, protocol: tcp, scheduler: rr, forward: tun,
     reals: [{address: 198.51.100.12}]}
  - {vip: 192.0.2.10, port: 53, protocol: udp, scheduler: rr, forward: tun, tunnel: gue,
     gue_port: 6080, reals: [{address: 198.51.100.13}]}
  - {vip: 2001:db8::100, port: 53, protocol: udp, scheduler: rr, forward: tun, tunnel: gue,
     gue_port: 6080, reals: [{address: '2001:db8::13'}]}
  - {vip: 192.0.2.10, port: 8000, protocol: tcp, scheduler: rr, forward: nat,
     reals: [{address: 198.51.100.21, port: 8080}]}
  - {vip: 2001:db8::100, port: 8000, protocol: tcp, scheduler: rr, forward: nat,
     reals: [{address: '2001:db8::21', port: 8080}]}
  - {vip: 192.0.2.10, port: 5353, protocol: udp, scheduler: rr, forward: nat,
     reals: [{address: 198.51.100.21, port: 53}]}
  - {vip: 192.0.2.10, port: 9000, protocol: tcp, scheduler: rr, forward: fullnat,
     reals: [{address: 198.51.100.31, port: 8080}]}
  - {vip: 2001:db8::100, port: 9000, protocol: udp, scheduler: rr, forward: fullnat,
     reals: [{address: '2001:db8::31', port: 53}]}
  - {vip: 192.0.2.10, port: 8001, protocol: tcp, scheduler: rr, forward: nat,
     reals: [{address: 198.51.100.21, port: 8080}]}
limits: {flows: 4096, services: 32, reals: 64}
";

pub fn v4(addr: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(addr, port)
}

pub fn v6(addr: Ipv6Addr, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(addr, port, 0, 0)
}

/// From the client to the balancer.
pub fn from_client(frame: Frame) -> Vec<u8> {
    frame.src_mac(CLIENT_MAC).dst_mac(BALANCER_MAC).build()
}

/// An IP packet as the balancer sends it to `next_hop`.
pub fn to_next_hop(ip: &[u8], next_hop: IpAddr) -> Vec<u8> {
    Frame::from_ip(ip)
        .src_mac(BALANCER_MAC)
        .dst_mac(real_mac_for(next_hop))
        .build()
}

/// Back to the client the way its packets came.
pub fn to_client(frame: Frame) -> Vec<u8> {
    frame.src_mac(BALANCER_MAC).dst_mac(CLIENT_MAC).build()
}

/// From a real (its replies route through the balancer).
pub fn from_real(frame: Frame, real: IpAddr) -> Vec<u8> {
    frame
        .src_mac(real_mac_for(real))
        .dst_mac(BALANCER_MAC)
        .build()
}

/// The flow table's key of a packet from `src` to `dst`.
pub fn flow_key(src: SocketAddr, dst: SocketAddr, protocol: u8) -> FlowKey {
    let (src_bytes, family) = address_bytes(src.ip());
    let (dst_bytes, _) = address_bytes(dst.ip());
    FlowKey {
        src: src_bytes,
        dst: dst_bytes,
        src_port_be: src.port().to_be(),
        dst_port_be: dst.port().to_be(),
        protocol,
        family,
        _pad: [0; 2],
    }
}

/// The GUE source port the program gives a connection.
pub fn gue_source_port(flow: &FlowKey) -> u16 {
    0xc000 | (hash::connection(flow) & 0x3fff) as u16
}

/// The first local port full NAT tries for a connection (the one it gets when free).
pub fn first_local_port(flow: &FlowKey) -> u16 {
    LOCAL_PORT_FIRST + (hash::connection(flow) % u32::from(LOCAL_PORT_COUNT)) as u16
}
