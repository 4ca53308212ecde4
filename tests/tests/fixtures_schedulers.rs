//! The schedulers through `BPF_PROG_TEST_RUN`, IPv4 and IPv6: where a new flow goes under
//! `lc`/`wlc` (against a model of IPVS's rule, from crafted and then live connection counts),
//! `sh` and `mh` (against the table read back from the maps, indexed by a copy of the
//! program's hash), and persistence on `rr` (a client, under its netmask, sticks to a real
//! until that real is drained); and where a TCP segment that has no flow goes (the hash's or
//! the persistence entry's real, `forwarded_mid_stream`; otherwise it passes). Every packet is
//! checked for its action, its bytes (so its real) and the one reason counter it moved.
//! Needs root.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use lb_common::{
    ConnCounts, FAMILY_IPV4, FAMILY_IPV6, FlowKey, PROTO_TCP, Reason,
    conntrack::{STATE_ESTABLISHED, STATE_SYN_RECV},
    hash,
};
use lb_tests::{
    fixture::{BALANCER_MAC, Balancer, XDP_PASS, XDP_TX, check_exact, direct_routed},
    packet::{CLIENT_MAC, Frame, tcp_flags::*},
};

const VIP_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 150));
const VIP_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x150));

/// One service of a test's config: its index in `Desired::services` and its VIP and port.
#[derive(Clone, Copy, Debug)]
struct Vs {
    index: usize,
    vip: SocketAddr,
}

const fn vs(index: usize, vip: IpAddr, port: u16) -> Vs {
    Vs {
        index,
        vip: SocketAddr::new(vip, port),
    }
}

/// Loads `services` (YAML list items) under `instance`; `None` without root.
fn load(test: &str, instance: &str, services: &str) -> Option<Balancer> {
    Balancer::for_test(test, &config(instance, services))
}

fn config(instance: &str, services: &str) -> String {
    format!(
        "instance: {instance}\ninterfaces: [{{name: lo}}]\nservices:\n{services}\
         limits: {{flows: 4096, services: 16, reals: 64}}\n"
    )
}

fn client(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse().expect("a client address"), port)
}

/// A TCP segment from `client` to `vip` with `flags`, as it arrives at the balancer.
fn segment(client: SocketAddr, vip: SocketAddr, flags: u8) -> Vec<u8> {
    let frame = match (client, vip) {
        (SocketAddr::V4(c), SocketAddr::V4(v)) => Frame::tcp(c, v),
        (SocketAddr::V6(c), SocketAddr::V6(v)) => Frame::ipv6_tcp(c, v),
        _ => panic!("client {client} and VIP {vip} are of different families"),
    };
    let frame = frame.tcp_flags(flags).src_mac(CLIENT_MAC);
    frame.dst_mac(BALANCER_MAC).build()
}

/// The flow table's key for a segment from `client` to `vip`, as the program builds it.
fn flow_key(client: SocketAddr, vip: SocketAddr) -> FlowKey {
    // An IPv4 address fills the first four bytes.
    let bytes = |addr: IpAddr| match addr {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96).to_be_bytes(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let family = match client {
        SocketAddr::V4(_) => FAMILY_IPV4,
        SocketAddr::V6(_) => FAMILY_IPV6,
    };
    FlowKey {
        src: bytes(client.ip()),
        dst: bytes(vip.ip()),
        src_port_be: client.port().to_be(),
        dst_port_be: vip.port().to_be(),
        protocol: PROTO_TCP,
        family,
        _pad: [0; 2],
    }
}

/// (id, address) of each real of the service, in config order.
fn reals(balancer: &Balancer, service: Vs) -> Vec<(u32, IpAddr)> {
    let reals = &balancer.state.services[service.index].reals;
    reals.iter().map(|r| (r.id, r.config.address)).collect()
}

fn real_id(balancer: &Balancer, service: Vs, addr: IpAddr) -> u32 {
    let found = reals(balancer, service).into_iter().find(|r| r.1 == addr);
    found
        .unwrap_or_else(|| panic!("no real {addr} in {}", service.vip))
        .0
}

/// The service's table as the program reads it now.
fn table(balancer: &Balancer, service: Vs) -> Vec<u32> {
    let id = balancer.state.services[service.index].id;
    let table = balancer.dataplane.schedule(id);
    table.unwrap_or_else(|e| panic!("reading the table of {}: {e}", service.vip))
}

/// The service's table as real addresses (ids are the balancer's own). Read once per
/// service: a Maglev table is tens of thousands of lookups.
fn table_by_address(balancer: &Balancer, service: Vs) -> Vec<IpAddr> {
    let reals: HashMap<u32, IpAddr> = reals(balancer, service).into_iter().collect();
    let table = table(balancer, service).into_iter();
    table.map(|id| reals[&id]).collect()
}

/// The real `hash` picks from a table (`sh`, `mh`): `table[hash % len]`, as the program does.
fn hashed_real(table: &[IpAddr], hash: u32) -> IpAddr {
    assert!(!table.is_empty(), "hashing over an empty table");
    table[hash as usize % table.len()]
}

/// Checks that `frame` went to `real` with only its MACs changed, counted under `reason`.
#[track_caller]
fn forwarded(balancer: &mut Balancer, name: &str, frame: &[u8], reason: Reason, real: IpAddr) {
    let expected = direct_routed(frame, real);
    check_exact(balancer, name, frame, XDP_TX, reason, &expected);
}

/// Checks that a new flow's SYN went to `real`.
#[track_caller]
fn syn_to(balancer: &mut Balancer, service: Vs, from: SocketAddr, real: IpAddr) {
    let name = format!("SYN {from} -> {}", service.vip);
    let frame = segment(from, service.vip, SYN);
    forwarded(balancer, &name, &frame, Reason::ForwardedTx, real);
}

/// Checks that a SYN goes to the real the service's round robin gives next; returns it.
#[track_caller]
fn syn_to_next(balancer: &mut Balancer, service: Vs, from: SocketAddr) -> IpAddr {
    let real = balancer.next_scheduled_address(service.index);
    syn_to(balancer, service, from, real);
    real
}

/// Checks that an ACK that finds no flow goes to `real` (`forwarded_mid_stream`) and that
/// its flow is recorded there: the next ACK is an ordinary `forwarded_tx`.
#[track_caller]
fn mid_stream_to(balancer: &mut Balancer, service: Vs, from: SocketAddr, real: IpAddr) {
    let frame = segment(from, service.vip, ACK);
    let name = format!("ACK without flow {from} -> {}", service.vip);
    forwarded(balancer, &name, &frame, Reason::ForwardedMidStream, real);
    ack_to(balancer, service, from, real);
}

/// Checks that an ACK of a flow goes to `real`, the flow's.
#[track_caller]
fn ack_to(balancer: &mut Balancer, service: Vs, from: SocketAddr, real: IpAddr) {
    let frame = segment(from, service.vip, ACK);
    let name = format!("ACK {from} -> {}", service.vip);
    forwarded(balancer, &name, &frame, Reason::ForwardedTx, real);
}

/// Checks that a segment with `flags` that finds no flow passes untouched.
#[track_caller]
fn passes_without_flow(balancer: &mut Balancer, service: Vs, from: SocketAddr, flags: u8) {
    let frame = segment(from, service.vip, flags);
    let name = format!("flags {flags:#04x} without flow {from} -> {}", service.vip);
    let reason = Reason::PassTcpNoFlow;
    check_exact(balancer, &name, &frame, XDP_PASS, reason, &frame);
}

// ---------------------------------------------------------------------------------------
// lc / wlc

/// Four reals in this order: weight 1, 3, 0 (never chosen, though it has no connection at
/// all) and 2.
const LEAST_CONN_SERVICES: &str = "
  - {vip: 192.0.2.150, port: 80, protocol: tcp, scheduler: wlc, reals: [
      {address: 192.0.2.11, weight: 1}, {address: 192.0.2.12, weight: 3},
      {address: 192.0.2.13, weight: 0}, {address: 192.0.2.14, weight: 2}]}
  - {vip: 192.0.2.150, port: 81, protocol: tcp, scheduler: lc, reals: [
      {address: 192.0.2.21, weight: 1}, {address: 192.0.2.22, weight: 3},
      {address: 192.0.2.23, weight: 0}, {address: 192.0.2.24, weight: 2}]}
  - {vip: '2001:db8::150', port: 80, protocol: tcp, scheduler: wlc, reals: [
      {address: '2001:db8::11', weight: 1}, {address: '2001:db8::12', weight: 3},
      {address: '2001:db8::13', weight: 0}, {address: '2001:db8::14', weight: 2}]}
  - {vip: '2001:db8::150', port: 81, protocol: tcp, scheduler: lc, reals: [
      {address: '2001:db8::21', weight: 1}, {address: '2001:db8::22', weight: 3},
      {address: '2001:db8::23', weight: 0}, {address: '2001:db8::24', weight: 2}]}
";
const WLC_V4: Vs = vs(0, VIP_V4, 80);
const LC_V4: Vs = vs(1, VIP_V4, 81);
const WLC_V6: Vs = vs(2, VIP_V6, 80);
const LC_V6: Vs = vs(3, VIP_V6, 81);

/// (active, inactive) given to each real, in config order, before the first SYN. The first
/// real's single established connection outweighs the others' hundreds of inactive ones
/// under lc (256 against 200 and 300), and the second and fourth tie under wlc (100 per
/// weight each; the earlier wins).
const CRAFTED_COUNTS: [(u64, u64); 4] = [(1, 0), (0, 300), (0, 0), (0, 200)];

/// SYNs of the burst after the first one: enough that every weighted real takes some under
/// lc.
const BURST: u16 = 150;

/// One real as IPVS's least-connection schedulers see it.
#[derive(Clone, Debug)]
struct Member {
    address: IpAddr,
    weight: u64,
    counts: ConnCounts,
}

/// IPVS's `ip_vs_wlc_schedule` (`weighted`) and `ip_vs_lc_schedule`: skip reals of weight 0;
/// the overhead is `active × 256 + inactive`; a later real replaces the least only when
/// strictly better, compared by cross-multiplication (wlc) or directly (lc).
fn ipvs_least_connection(members: &[Member], weighted: bool) -> Option<usize> {
    let overhead = |m: &Member| (m.counts.active << 8) + m.counts.inactive;
    let weight = |m: &Member| if weighted { m.weight } else { 1 };
    let mut least: Option<usize> = None;
    for (index, dest) in members.iter().enumerate().filter(|(_, m)| m.weight > 0) {
        // IPVS: `if (loh * dest->weight > doh * least->weight) least = dest`.
        let better = least.is_none_or(|least| {
            let least = &members[least];
            overhead(least) * weight(dest) > overhead(dest) * weight(least)
        });
        if better {
            least = Some(index);
        }
    }
    least
}

/// Crafts [`CRAFTED_COUNTS`], then sends one SYN and a burst from distinct ports, each
/// checked against the model, which adds the new flow's SYN_RECV (one inactive connection)
/// to its real before the next. Returns how many flows each real took.
fn least_connection_burst(
    balancer: &mut Balancer,
    service: Vs,
    weighted: bool,
    from: IpAddr,
) -> BTreeMap<IpAddr, u32> {
    let mut members: Vec<Member> = balancer.state.services[service.index]
        .reals
        .iter()
        .map(|real| Member {
            address: real.config.address,
            weight: u64::from(real.config.weight),
            counts: ConnCounts::default(),
        })
        .collect();
    for (member, &(active, inactive)) in members.iter_mut().zip(&CRAFTED_COUNTS) {
        let id = real_id(balancer, service, member.address);
        for (state, count) in [(STATE_ESTABLISHED, active), (STATE_SYN_RECV, inactive)] {
            if count == 0 {
                continue;
            }
            balancer
                .reader
                .add_connection(id, state, count as i64)
                .unwrap_or_else(|e| panic!("crafting counts of {}: {e}", member.address));
        }
        member.counts = ConnCounts { active, inactive };
    }
    let mut taken = BTreeMap::new();
    for port in 30000..=30000 + BURST {
        let expected =
            ipvs_least_connection(&members, weighted).expect("a real with weight above 0");
        let real = members[expected].address;
        syn_to(balancer, service, (from, port).into(), real);
        members[expected].counts.inactive += 1;
        *taken.entry(real).or_default() += 1;
    }
    for member in &members {
        assert_eq!(
            balancer.connections(service.index, member.address),
            member.counts,
            "{}: connections of {} after the burst",
            service.vip,
            member.address
        );
    }
    // The model never picks a real of weight 0, so the program did not either; nor is it in
    // the table, which is (real id, weight) pairs.
    let drained = members.iter().find(|m| m.weight == 0).unwrap().address;
    let drained_id = real_id(balancer, service, drained);
    let listed: Vec<u32> = table(balancer, service).into_iter().step_by(2).collect();
    assert!(
        !listed.contains(&drained_id),
        "{}: {drained} listed",
        service.vip
    );
    taken
}

#[test]
fn wlc_sends_each_new_flow_where_ipvs_would() {
    let test = "wlc_sends_each_new_flow_where_ipvs_would";
    let Some(mut balancer) = load(test, "sched-wlc", LEAST_CONN_SERVICES) else {
        return;
    };
    for (service, from) in [(WLC_V4, "203.0.113.5"), (WLC_V6, "2001:db8:ffff::5")] {
        let taken = least_connection_burst(&mut balancer, service, true, from.parse().unwrap());
        // The model decided each flow; that the burst spread shows the counts it compared
        // were the live ones, not a snapshot.
        assert!(
            taken.len() >= 2,
            "{}: the burst stayed on one real: {taken:?}",
            service.vip
        );
    }
}

#[test]
fn lc_sends_each_new_flow_where_ipvs_would_ignoring_weights() {
    let test = "lc_sends_each_new_flow_where_ipvs_would_ignoring_weights";
    let Some(mut balancer) = load(test, "sched-lc", LEAST_CONN_SERVICES) else {
        return;
    };
    for (service, from) in [(LC_V4, "203.0.113.6"), (LC_V6, "2001:db8:ffff::6")] {
        let taken = least_connection_burst(&mut balancer, service, false, from.parse().unwrap());
        assert_eq!(
            taken.len(),
            3,
            "{}: every real of weight above 0 takes flows: {taken:?}",
            service.vip
        );
    }
}

// ---------------------------------------------------------------------------------------
// sh

const SH_SERVICES: &str = "
  - {vip: 192.0.2.150, port: 80, protocol: tcp, scheduler: sh, reals: [
      {address: 192.0.2.41, weight: 1}, {address: 192.0.2.42, weight: 2}]}
  - {vip: '2001:db8::150', port: 80, protocol: tcp, scheduler: sh, reals: [
      {address: '2001:db8::41', weight: 1}, {address: '2001:db8::42', weight: 2}]}
";
const SH_V4: Vs = vs(0, VIP_V4, 80);
const SH_V6: Vs = vs(1, VIP_V6, 80);

/// The real `sh` gives a client: its address's hash over the weighted ring.
fn source_hashed(table: &[IpAddr], service: Vs, client: IpAddr) -> IpAddr {
    let hash = hash::source(&flow_key(SocketAddr::new(client, 0), service.vip));
    hashed_real(table, hash)
}

#[test]
fn sh_sends_every_port_of_a_client_to_its_hashed_real() {
    let test = "sh_sends_every_port_of_a_client_to_its_hashed_real";
    let Some(mut balancer) = load(test, "sched-sh-ports", SH_SERVICES) else {
        return;
    };
    let clients = [
        (SH_V4, "203.0.113.7"),
        (SH_V4, "198.51.100.8"),
        (SH_V6, "2001:db8:ffff::7"),
        (SH_V6, "2001:db8:eeee::8"),
    ];
    for (service, address) in clients {
        let table = table_by_address(&balancer, service);
        let address: IpAddr = address.parse().unwrap();
        let real = source_hashed(&table, service, address);
        for port in (1024..65535).step_by(641) {
            syn_to(&mut balancer, service, (address, port).into(), real);
        }
    }
}

#[test]
fn sh_spreads_clients_by_weight() {
    let test = "sh_spreads_clients_by_weight";
    let Some(mut balancer) = load(test, "sched-sh-spread", SH_SERVICES) else {
        return;
    };
    const CLIENTS: u32 = 600;
    for service in [SH_V4, SH_V6] {
        let table = table_by_address(&balancer, service);
        let mut taken: HashMap<IpAddr, u32> = HashMap::new();
        for n in 0..CLIENTS {
            // 198.18.0.0/15 and 2001:db8:cccc::/48: a client per address.
            let address = match service.vip {
                SocketAddr::V4(_) => IpAddr::from(Ipv4Addr::from(0xc612_0000 + n * 7)),
                SocketAddr::V6(_) => {
                    IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0xcccc, 0, 0, 0, 0, n as u16))
                }
            };
            let real = source_hashed(&table, service, address);
            syn_to(&mut balancer, service, (address, 40000).into(), real);
            *taken.entry(real).or_default() += 1;
        }
        let (light, heavy) = if service.vip.is_ipv4() {
            ("192.0.2.41", "192.0.2.42")
        } else {
            ("2001:db8::41", "2001:db8::42")
        };
        let light = taken[&light.parse().unwrap()];
        let heavy = taken[&heavy.parse().unwrap()];
        // Weights 1:2 expect 200 and 400; a binomial's standard deviation here is 11.5, so
        // ±50 only fails on a broken hash or ring.
        assert!(
            (150..=250).contains(&light) && (350..=450).contains(&heavy),
            "{}: {light} and {heavy} of {CLIENTS} clients for weights 1 and 2",
            service.vip
        );
    }
}

#[test]
fn sh_sends_a_mid_stream_ack_without_flow_where_the_clients_syn_would_go() {
    let test = "sh_sends_a_mid_stream_ack_without_flow_where_the_clients_syn_would_go";
    let Some(mut balancer) = load(test, "sched-sh-mid", SH_SERVICES) else {
        return;
    };
    for (service, address) in [(SH_V4, "203.0.113.17"), (SH_V6, "2001:db8:ffff::17")] {
        let table = table_by_address(&balancer, service);
        let address: IpAddr = address.parse().unwrap();
        let real = source_hashed(&table, service, address);
        mid_stream_to(&mut balancer, service, (address, 50000).into(), real);
        // A SYN from the same client on another port agrees.
        syn_to(&mut balancer, service, (address, 50001).into(), real);
        let expected = ConnCounts {
            active: 1,
            inactive: 1,
        };
        assert_eq!(
            balancer.connections(service.index, real),
            expected,
            "{}: the mid-stream flow counts as established, the SYN as opening",
            service.vip
        );
    }
}

// ---------------------------------------------------------------------------------------
// mh

/// Weights 1:2:3; the IPv4 table is the smallest allowed, the IPv6 one the default 65537.
const MH_SERVICES: &str = "
  - {vip: 192.0.2.150, port: 80, protocol: tcp, scheduler: mh, mh_table_size: 251, reals: [
      {address: 192.0.2.51, weight: 1}, {address: 192.0.2.52, weight: 2},
      {address: 192.0.2.53, weight: 3}]}
  - {vip: '2001:db8::150', port: 80, protocol: tcp, scheduler: mh, reals: [
      {address: '2001:db8::51', weight: 1}, {address: '2001:db8::52', weight: 2},
      {address: '2001:db8::53', weight: 3}]}
";
const MH_V4: Vs = vs(0, VIP_V4, 80);
const MH_V6: Vs = vs(1, VIP_V6, 80);

/// 100 connections per service: 10 clients × 10 ports.
fn mh_clients(service: Vs) -> Vec<SocketAddr> {
    (1..=10u16)
        .flat_map(|host| {
            (0..10u16).map(move |n| {
                let port = 20000 + n * 997;
                match service.vip {
                    SocketAddr::V4(_) => client(&format!("203.0.113.{host}"), port),
                    SocketAddr::V6(_) => client(&format!("2001:db8:ffff::{host:x}"), port),
                }
            })
        })
        .collect()
}

/// The real `mh` gives a connection: its 5-tuple's hash over the Maglev table.
fn maglev_real(table: &[IpAddr], service: Vs, from: SocketAddr) -> IpAddr {
    let hash = hash::connection(&flow_key(from, service.vip));
    hashed_real(table, hash)
}

/// A flow's real is its Maglev slot; a second balancer with the same config (the other end
/// of an ECMP group, or this one restarted) has the same table, so it sends SYNs where the
/// first did, and the ACKs of the first's flows, which it never saw, to their real.
#[test]
fn mh_places_flows_by_maglev_slot_and_a_second_balancer_agrees() {
    let test = "mh_places_flows_by_maglev_slot_and_a_second_balancer_agrees";
    let Some(mut first) = load(test, "sched-mh", MH_SERVICES) else {
        return;
    };
    let mut second = Balancer::load(&config("sched-mh", MH_SERVICES));
    for service in [MH_V4, MH_V6] {
        let table = table_by_address(&first, service);
        assert_eq!(
            table,
            table_by_address(&second, service),
            "{}: two balancers built different Maglev tables",
            service.vip
        );
        let clients = mh_clients(service);
        let mut reals = HashSet::new();
        for &from in &clients {
            let real = maglev_real(&table, service, from);
            syn_to(&mut first, service, from, real);
            reals.insert(real);
        }
        assert_eq!(reals.len(), 3, "{}: 100 flows over 3 reals", service.vip);
        let (acked, opened) = clients.split_at(clients.len() / 2);
        for &from in acked {
            let real = maglev_real(&table, service, from);
            mid_stream_to(&mut second, service, from, real);
        }
        for &from in opened {
            let real = maglev_real(&table, service, from);
            syn_to(&mut second, service, from, real);
        }
    }
}

#[test]
fn mh_tables_have_their_size_and_share_slots_by_weight() {
    let test = "mh_tables_have_their_size_and_share_slots_by_weight";
    let Some(balancer) = load(test, "sched-mh-size", MH_SERVICES) else {
        return;
    };
    for (service, size) in [(MH_V4, 251), (MH_V6, 65537)] {
        let table = table_by_address(&balancer, service);
        assert_eq!(table.len(), size, "{}: table size", service.vip);
        for real in &balancer.state.services[service.index].reals {
            let (real, weight) = (real.config.address, real.config.weight);
            let slots = table.iter().filter(|&&slot| slot == real).count();
            let expected = size as f64 * f64::from(weight) / 6.0;
            // maglev::table's promise: off by fewer slots than there are reals.
            assert!(
                (slots as f64 - expected).abs() < 3.0,
                "{}: {real} (weight {weight}) holds {slots} of {size} slots, {expected:.1} \
                 expected",
                service.vip
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Persistence, and services that cannot place a segment without a flow

/// Three reals behind a persistent rr service per family (clients grouped by /24 and /64),
/// and the same reals behind a plain rr and a wrr service.
const PERSISTENT_SERVICES: &str = "
  - {vip: 192.0.2.150, port: 80, protocol: tcp, scheduler: rr, persistence: 60s,
     persistence_netmask: 24,
     reals: [{address: 192.0.2.31}, {address: 192.0.2.32}, {address: 192.0.2.33}]}
  - {vip: 192.0.2.150, port: 81, protocol: tcp, scheduler: rr,
     reals: [{address: 192.0.2.31}, {address: 192.0.2.32}, {address: 192.0.2.33}]}
  - {vip: 192.0.2.150, port: 82, protocol: tcp, scheduler: wrr, reals: [
      {address: 192.0.2.31, weight: 1}, {address: 192.0.2.32, weight: 2},
      {address: 192.0.2.33, weight: 3}]}
  - {vip: '2001:db8::150', port: 80, protocol: tcp, scheduler: rr, persistence: 60s,
     persistence_netmask: 64,
     reals: [{address: '2001:db8::31'}, {address: '2001:db8::32'}, {address: '2001:db8::33'}]}
";
const PERSISTENT_V4: Vs = vs(0, VIP_V4, 80);
const RR_V4: Vs = vs(1, VIP_V4, 81);
const WRR_V4: Vs = vs(2, VIP_V4, 82);
const PERSISTENT_V6: Vs = vs(3, VIP_V6, 80);

/// A client's SYNs on many ports stick to the real its first got (where rr would spread
/// them, as the plain service shows); a client in the same /24 or /64 shares it, one outside
/// gets the next real of the round.
#[test]
fn persistence_keeps_a_client_and_its_netmask_on_one_real() {
    let test = "persistence_keeps_a_client_and_its_netmask_on_one_real";
    let Some(mut balancer) = load(test, "sched-persist", PERSISTENT_SERVICES) else {
        return;
    };
    let cases = [
        (PERSISTENT_V4, "203.0.113.7", "203.0.113.99", "198.51.100.7"),
        (
            PERSISTENT_V6,
            "2001:db8:ffff:1::7",
            "2001:db8:ffff:1:ffff:ffff:ffff:99",
            "2001:db8:ffff:2::7",
        ),
    ];
    for (service, first, neighbour, outsider) in cases {
        let real = syn_to_next(&mut balancer, service, client(first, 1024));
        for port in (1025..65535).step_by(997) {
            syn_to(&mut balancer, service, client(first, port), real);
            syn_to(&mut balancer, service, client(neighbour, port), real);
        }
        let other = syn_to_next(&mut balancer, service, client(outsider, 1024));
        assert_ne!(
            other, real,
            "{}: {outsider} is outside {first}'s netmask; rr gives it the next real",
            service.vip
        );
    }
    let spread: HashSet<IpAddr> = (1024..1030)
        .map(|port| syn_to_next(&mut balancer, RR_V4, client("203.0.113.7", port)))
        .collect();
    assert_eq!(spread.len(), 3, "without persistence, rr spreads a client");
}

/// An ACK without flow from a client with a persistence entry (or from its netmask) goes to
/// the entry's real, even once that real is drained; from a client without an entry it
/// passes, as rr cannot place it.
#[test]
fn persistence_places_a_mid_stream_ack_without_flow_on_the_clients_real() {
    let test = "persistence_places_a_mid_stream_ack_without_flow_on_the_clients_real";
    let Some(mut balancer) = load(test, "sched-persist-mid", PERSISTENT_SERVICES) else {
        return;
    };
    let cases = [
        (PERSISTENT_V4, "203.0.113.7", "203.0.113.99", "198.51.100.7"),
        (
            PERSISTENT_V6,
            "2001:db8:ffff:1::7",
            "2001:db8:ffff:1::99",
            "2001:db8:ffff:2::7",
        ),
    ];
    for (service, first, neighbour, outsider) in cases {
        passes_without_flow(&mut balancer, service, client(first, 2000), ACK);
        let real = syn_to_next(&mut balancer, service, client(first, 2001));
        mid_stream_to(&mut balancer, service, client(first, 2002), real);
        mid_stream_to(&mut balancer, service, client(neighbour, 2003), real);
        passes_without_flow(&mut balancer, service, client(outsider, 2004), ACK);

        drain(&mut balancer, service, real);
        mid_stream_to(&mut balancer, service, client(first, 2005), real);
    }
}

/// Sets the weight of `real` to 0 and applies it, as lbd does on a config reload.
fn drain(balancer: &mut Balancer, service: Vs, real: IpAddr) {
    let reals = &mut balancer.state.services[service.index].reals;
    reals
        .iter_mut()
        .find(|r| r.config.address == real)
        .unwrap_or_else(|| panic!("no real {real} in {}", service.vip))
        .config
        .weight = 0;
    balancer.apply();
}

/// A persistent client with an established flow on the real it is drained from: returns
/// where the client's next SYN went. Checks that the entry is not followed to the drained
/// real, and that the established flow still is.
fn client_moved_off_a_drained_real(balancer: &mut Balancer, service: Vs, from: &str) -> IpAddr {
    let established = client(from, 3000);
    let drained = syn_to_next(balancer, service, established);
    ack_to(balancer, service, established, drained);
    drain(balancer, service, drained);

    let moved = syn_to_next(balancer, service, client(from, 3001));
    assert_ne!(
        moved, drained,
        "{}: a new flow on a drained real",
        service.vip
    );
    ack_to(balancer, service, established, drained);
    moved
}

#[test]
fn persistence_is_not_followed_to_a_drained_real_but_its_flows_are() {
    let test = "persistence_is_not_followed_to_a_drained_real_but_its_flows_are";
    let Some(mut balancer) = load(test, "sched-persist-drain", PERSISTENT_SERVICES) else {
        return;
    };
    client_moved_off_a_drained_real(&mut balancer, PERSISTENT_V4, "203.0.113.7");
    client_moved_off_a_drained_real(&mut balancer, PERSISTENT_V6, "2001:db8:ffff:1::7");
}

/// Once a client was moved off a drained real, its new flows stick to the real it moved to,
/// while its old flow lives on on the drained real: a packet of the old flow refreshes only an
/// entry naming its own real, and never points the entry back (an earlier version did, and
/// the client's new flows then spread over the remaining reals).
#[test]
fn persistence_sticks_to_the_new_real_while_old_flows_live_on_the_drained_one() {
    let test = "persistence_sticks_to_the_new_real_while_old_flows_live_on_the_drained_one";
    let Some(mut balancer) = load(test, "sched-persist-bug", PERSISTENT_SERVICES) else {
        return;
    };
    for (service, from) in [
        (PERSISTENT_V4, "203.0.113.7"),
        (PERSISTENT_V6, "2001:db8:ffff:1::7"),
    ] {
        let moved = client_moved_off_a_drained_real(&mut balancer, service, from);
        syn_to(&mut balancer, service, client(from, 3002), moved);
    }
}

/// `rr` and `wrr` have no answer that holds whatever came before, so a segment without SYN
/// and without flow passes, byte for byte, for the host to reset.
#[test]
fn ring_services_pass_a_mid_stream_segment_without_flow_untouched() {
    let test = "ring_services_pass_a_mid_stream_segment_without_flow_untouched";
    let Some(mut balancer) = load(test, "sched-ring-mid", PERSISTENT_SERVICES) else {
        return;
    };
    for service in [RR_V4, WRR_V4] {
        for flags in [ACK, ACK | PSH, FIN | ACK, RST] {
            passes_without_flow(&mut balancer, service, client("203.0.113.8", 4000), flags);
        }
    }
    // A persistent service without an entry for the client falls back on rr, and passes too.
    passes_without_flow(
        &mut balancer,
        PERSISTENT_V6,
        client("2001:db8:ffff::8", 4000),
        ACK,
    );
}
