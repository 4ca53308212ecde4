//! Desired state → map writes, against the in-memory data plane.

use std::net::Ipv4Addr;

use std::{collections::HashMap, net::IpAddr};

use lb_common::{FAMILY_IPV4, PROTO_TCP, PROTO_UDP, REAL_AVAILABLE, Real, ServiceKey};

use super::{ids::Pending, *};
use crate::{
    config,
    dataplane::FakeDataplane,
    neighbour::{InterfaceInfo, Routes},
};

/// Tunnel and NAT reals.
mod forwarding;
/// VIPs on standby while their VRRP router is not master.
mod standby;

const CONFIG: &str = "
instance: t
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 192.0.2.11, weight: 1}
      - {address: 192.0.2.12, weight: 2}
      - {address: 192.0.2.13, weight: 0}
  - vip: 192.0.2.100
    port: 53
    protocol: udp
    scheduler: rr
    reals:
      - {address: 192.0.2.11}
";

fn eth0() -> InterfaceInfo {
    InterfaceInfo {
        name: "eth0".into(),
        index: 7,
        mac: [2, 0, 0, 0, 0, 2],
        prefixes: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
        mtu: 1500,
        vlan: None,
        egress: 7,
    }
}

fn state() -> Desired {
    let config = config::parse(CONFIG, "test.yaml").expect("test config parses");
    Desired::new(&config, vec![eth0()], &Routes::new()).expect("state builds")
}

fn mac(last: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, last]
}

fn neighbours(entries: &[(u8, u8)]) -> HashMap<IpAddr, [u8; 6]> {
    entries
        .iter()
        .map(|&(host, last)| (IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)), mac(last)))
        .collect()
}

#[test]
fn ids_start_at_one_and_follow_config_order() {
    let state = state();
    let ids: Vec<(u32, Vec<u32>)> = state
        .services
        .iter()
        .map(|s| (s.id, s.reals.iter().map(|r| r.id).collect()))
        .collect();
    assert_eq!(ids, vec![(1, vec![1, 2, 3]), (2, vec![4])]);
}

#[test]
fn unresolved_reals_take_no_flows_until_their_mac_is_known() {
    let mut state = state();
    let mut dataplane = FakeDataplane::default();
    state.apply(&mut dataplane).unwrap();
    let web = state.services[0].key;
    assert!(dataplane.active_ring(&web).is_empty());
    assert_eq!(dataplane.reals[&1].flags & REAL_AVAILABLE, 0);
    assert_eq!(state.unresolved().len(), 3, "192.0.2.11 counted once");

    let changed = state.set_neighbours(7, &neighbours(&[(11, 0x11), (12, 0x12)]));
    assert_eq!(
        rings(&changed),
        vec![1, 2],
        "192.0.2.11 serves both services"
    );
    state.apply_dirty(&mut dataplane, &changed).unwrap();
    let ring = dataplane.active_ring(&web);
    assert_eq!(ring.iter().filter(|&&id| id == 1).count(), 1);
    assert_eq!(ring.iter().filter(|&&id| id == 2).count(), 2);
    assert_eq!(dataplane.reals[&2].mac, mac(0x12));
    assert_eq!(dataplane.reals[&2].flags & REAL_AVAILABLE, REAL_AVAILABLE);
    assert_eq!(dataplane.reals[&2].ifindex, 7);
    assert_eq!(dataplane.interfaces[&7].mac, eth0().mac);
}

#[test]
fn drained_real_stays_available_for_its_flows_but_not_in_the_ring() {
    let mut state = state();
    let mut dataplane = FakeDataplane::default();
    state.set_neighbours(7, &neighbours(&[(11, 1), (12, 2), (13, 3)]));
    state.apply(&mut dataplane).unwrap();
    assert_eq!(dataplane.reals[&3].flags & REAL_AVAILABLE, REAL_AVAILABLE);
    assert!(!dataplane.active_ring(&state.services[0].key).contains(&3));
}

/// The services whose schedule a change rewrites.
fn rings(dirty: &Dirty) -> Vec<u32> {
    dirty.rings.iter().copied().collect()
}

/// The (service id, real id) entries a change rewrites.
fn reals(dirty: &Dirty) -> Vec<(u32, u32)> {
    dirty.reals.iter().copied().collect()
}

#[test]
fn neighbour_updates_rewrite_only_what_they_change() {
    let mut state = state();
    let first = state.set_neighbours(7, &neighbours(&[(11, 1)]));
    assert_eq!(
        reals(&first),
        vec![(1, 1), (2, 4)],
        "192.0.2.11 in both services"
    );
    assert_eq!(
        rings(&first),
        vec![1, 2],
        "a real that can take flows joins the schedules"
    );
    assert!(
        state.set_neighbours(7, &neighbours(&[(11, 1)])).is_empty(),
        "same MAC"
    );
    assert!(
        state.set_neighbours(7, &HashMap::new()).is_empty(),
        "entry gone: keep last MAC"
    );
    assert_eq!(
        rings(&state.set_neighbours(7, &neighbours(&[(12, 2)]))),
        vec![1],
        "only the web service"
    );
    let moved = state.set_neighbours(7, &neighbours(&[(11, 9)]));
    assert_eq!(reals(&moved), vec![(1, 1), (2, 4)], "new MAC is taken");
    assert!(
        rings(&moved).is_empty(),
        "a MAC change leaves the schedules alone"
    );
    assert!(
        state.set_neighbours(8, &neighbours(&[(13, 1)])).is_empty(),
        "other interface"
    );
    assert_eq!(state.services[0].reals[0].mac, Some(mac(9)));
    assert_eq!(
        state.services[1].reals[0].mac,
        Some(mac(9)),
        "same address, other service"
    );
}

#[test]
fn a_mac_change_writes_one_real_entry_and_no_schedule() {
    let mut state = state();
    let mut dataplane = FakeDataplane::default();
    state.set_neighbours(7, &neighbours(&[(11, 1), (12, 2), (13, 3)]));
    state.apply(&mut dataplane).unwrap();
    let (reals_before, rings_before) = (dataplane.real_writes, dataplane.ring_writes);
    let web = dataplane.services[&state.services[0].key];

    let changed = state.set_neighbours(7, &neighbours(&[(12, 0x22)]));
    state.apply_dirty(&mut dataplane, &changed).unwrap();
    assert_eq!(dataplane.real_writes - reals_before, 1);
    assert_eq!(dataplane.ring_writes, rings_before);
    assert_eq!(
        dataplane.services[&state.services[0].key], web,
        "service entry untouched"
    );
    assert_eq!(dataplane.reals[&2].mac, mac(0x22));
}

fn observation(host: u8, state: NeighbourStatus) -> Observation {
    Observation {
        ifindex: 7,
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
        state,
    }
}

#[test]
fn a_failed_real_takes_no_packets_until_it_answers_again() {
    let mut state = state();
    let mut dataplane = FakeDataplane::default();
    state.set_neighbours(7, &neighbours(&[(11, 1), (12, 2), (13, 3)]));
    state.apply(&mut dataplane).unwrap();
    let web = state.services[0].key;

    let failed = state.observe(&observation(12, NeighbourStatus::Failed));
    assert_eq!(reals(&failed), vec![(1, 2)]);
    assert_eq!(rings(&failed), vec![1]);
    state.apply_dirty(&mut dataplane, &failed).unwrap();
    assert_eq!(
        dataplane.reals[&2].flags & REAL_AVAILABLE,
        0,
        "its flows move"
    );
    assert_eq!(dataplane.reals[&2].mac, mac(2), "the last MAC is kept");
    assert!(!dataplane.active_ring(&web).contains(&2));
    assert_eq!(
        state.unresolved(),
        vec![(7, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 12)))]
    );

    // Asked again, the kernel probes (INCOMPLETE): still failed. Then it answers.
    assert!(
        state
            .observe(&observation(12, NeighbourStatus::Incomplete))
            .is_empty()
    );
    let back = state.observe(&observation(
        12,
        NeighbourStatus::Usable {
            mac: mac(2),
            stale: false,
        },
    ));
    state.apply_dirty(&mut dataplane, &back).unwrap();
    assert_eq!(dataplane.reals[&2].flags & REAL_AVAILABLE, REAL_AVAILABLE);
    assert_eq!(
        dataplane
            .active_ring(&web)
            .iter()
            .filter(|&&id| id == 2)
            .count(),
        2
    );
}

#[test]
fn a_probing_real_keeps_its_flows_but_takes_no_new_ones() {
    let mut state = state();
    let mut dataplane = FakeDataplane::default();
    state.set_neighbours(7, &neighbours(&[(11, 1), (12, 2)]));
    state.apply(&mut dataplane).unwrap();
    let web = state.services[0].key;

    let probing = state.observe(&observation(12, NeighbourStatus::Incomplete));
    assert_eq!(rings(&probing), vec![1]);
    state.apply_dirty(&mut dataplane, &probing).unwrap();
    assert_eq!(dataplane.reals[&2].flags & REAL_AVAILABLE, REAL_AVAILABLE);
    assert!(!dataplane.active_ring(&web).contains(&2));

    // An entry deleted says nothing: nothing changes.
    assert!(
        state
            .observe(&observation(12, NeighbourStatus::Unknown))
            .is_empty()
    );
    // A stale entry is a usable one.
    let answered = state.observe(&observation(
        12,
        NeighbourStatus::Usable {
            mac: mac(2),
            stale: true,
        },
    ));
    state.apply_dirty(&mut dataplane, &answered).unwrap();
    assert!(dataplane.active_ring(&web).contains(&2));
}

#[test]
fn a_new_schedule_goes_to_the_other_ring_half_and_only_where_it_changed() {
    let mut state = state();
    let mut dataplane = FakeDataplane::default();
    state.set_neighbours(7, &neighbours(&[(11, 1), (12, 2)]));
    state.apply(&mut dataplane).unwrap();
    let web = state.services[0].key;
    let dns_before = dataplane.schedules[&2].clone();
    assert_eq!(
        dataplane.schedules[&1].generation, 1,
        "the first schedule is in half 1"
    );
    assert_eq!(dataplane.schedules[&1].halves[1], vec![2, 1, 2]);

    // 192.0.2.13 (weight 0) resolves: only the web service is rewritten, into half 0.
    let changed = state.set_neighbours(7, &neighbours(&[(13, 3)]));
    let writes_before = dataplane.ring_writes;
    state.apply_dirty(&mut dataplane, &changed).unwrap();
    assert_eq!(dataplane.schedules[&1].generation, 2);
    assert_eq!(
        dataplane.ring_writes - writes_before,
        3,
        "one web ring of 1+2 slots"
    );
    assert_eq!(dataplane.schedules[&2], dns_before, "dns untouched");
    assert_eq!(
        dataplane.schedules[&1].halves[1],
        vec![2, 1, 2],
        "the previous schedule stays intact in the other half"
    );
    assert_eq!(dataplane.active_ring(&web).len(), 3);
}

#[test]
fn writes_come_in_an_order_the_program_can_read_at_any_moment() {
    let mut state = state();
    let mut dataplane = FakeDataplane::default();
    state.set_neighbours(7, &neighbours(&[(11, 1), (12, 2), (13, 3)]));
    state.apply(&mut dataplane).unwrap();
    // A new service appears with its reals and schedule already written.
    let web: Vec<&str> = dataplane
        .writes
        .iter()
        .map(String::as_str)
        .filter(|write| {
            matches!(
                *write,
                "real 1" | "real 2" | "real 3" | "schedule 1" | "service 1"
            )
        })
        .collect();
    assert_eq!(
        web,
        ["real 1", "real 2", "real 3", "schedule 1", "service 1"]
    );

    // A real going out leaves the schedule before its entry says so, so no new flow is
    // scheduled to it in between; one coming back is written before the schedule names it.
    dataplane.writes.clear();
    let failed = state.observe(&observation(12, NeighbourStatus::Failed));
    state.apply_dirty(&mut dataplane, &failed).unwrap();
    assert_eq!(dataplane.writes, ["schedule 1", "real 2"]);
    dataplane.writes.clear();
    let back = state.observe(&observation(
        12,
        NeighbourStatus::Usable {
            mac: mac(2),
            stale: false,
        },
    ));
    state.apply_dirty(&mut dataplane, &back).unwrap();
    assert_eq!(dataplane.writes, ["real 2", "schedule 1"]);

    // A restart with the same config rewrites no service entry.
    dataplane.writes.clear();
    let mut again = restarted(CONFIG, &dataplane);
    again.apply(&mut dataplane).unwrap();
    assert!(
        !dataplane
            .writes
            .iter()
            .any(|write| write.starts_with("service")),
        "{:?}",
        dataplane.writes
    );
}

/// The state after a restart: `config` adopting what `dataplane` holds.
fn restarted(config: &str, dataplane: &FakeDataplane) -> Desired {
    let config = config::parse(config, "test.yaml").expect("config parses");
    let mut state = Desired::new(&config, vec![eth0()], &Routes::new()).expect("state builds");
    state.adopt(&Existing::read(dataplane).unwrap());
    state
}

fn real_ids(state: &Desired, service: usize) -> Vec<(IpAddr, u32)> {
    state.services[service]
        .reals
        .iter()
        .map(|r| (r.config.address, r.id))
        .collect()
}

fn addr(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, host))
}

#[test]
fn a_restart_with_the_same_config_keeps_every_id_and_counter() {
    let mut first = state();
    let mut dataplane = FakeDataplane::default();
    first.apply(&mut dataplane).unwrap();
    let initialised = (
        dataplane.initialised_services.clone(),
        dataplane.initialised_reals.clone(),
    );
    assert_eq!(
        initialised,
        (vec![1, 2], vec![1, 2, 3, 4]),
        "a first start prepares every id"
    );

    let mut second = restarted(CONFIG, &dataplane);
    assert_eq!(second.services, first.services);
    assert_eq!(
        second.pending,
        Pending::default(),
        "nothing to remove, retire or zero"
    );
    second.apply(&mut dataplane).unwrap();
    assert_eq!(
        (
            dataplane.initialised_services.clone(),
            dataplane.initialised_reals.clone()
        ),
        initialised,
        "counters and cursors survive a restart: no id is prepared again"
    );
}

#[test]
fn adopting_writes_back_the_real_entries_the_program_uses() {
    let mut first = state();
    let mut dataplane = FakeDataplane::default();
    first.set_neighbours(7, &neighbours(&[(11, 1), (12, 2), (13, 3)]));
    first.apply(&mut dataplane).unwrap();
    let before = dataplane.clone();

    let mut second = restarted(CONFIG, &dataplane);
    assert!(second.unresolved().is_empty(), "MACs carried over");
    second.apply(&mut dataplane).unwrap();
    assert_eq!(
        dataplane.reals, before.reals,
        "no real taken out, not even briefly"
    );
    let web = first.services[0].key;
    assert_eq!(dataplane.active_ring(&web), before.active_ring(&web));
}

#[test]
fn a_restart_with_a_changed_config_keeps_ids_by_address_and_retires_the_rest() {
    let mut first = state();
    let mut dataplane = FakeDataplane::default();
    first.set_neighbours(7, &neighbours(&[(11, 1), (12, 2), (13, 3)]));
    first.apply(&mut dataplane).unwrap();
    // web: 11 → 1, 12 → 2, 13 → 3; dns: 11 → 4.
    dataplane.initialised_reals.clear();

    // A real added in front, one removed, the dns service gone, a new service.
    let changed = "
instance: t
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 123
    protocol: udp
    reals: [{address: 192.0.2.15}]
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    reals:
      - {address: 192.0.2.14}
      - {address: 192.0.2.12, weight: 2}
      - {address: 192.0.2.11}
";
    let mut second = restarted(changed, &dataplane);
    let web = &second.services[1];
    assert_eq!(web.id, 1, "the web service keeps its id");
    assert_eq!(
        second.services[0].id, 3,
        "a new service takes an id never used"
    );
    assert_eq!(
        real_ids(&second, 1),
        vec![(addr(14), 6), (addr(12), 2), (addr(11), 1)],
        "kept reals keep their ids; the new one takes one never used"
    );
    assert_eq!(
        real_ids(&second, 0),
        vec![(addr(15), 5)],
        "config order: this one first"
    );

    second.apply(&mut dataplane).unwrap();
    let dns = ServiceKey {
        port_be: 53u16.to_be(),
        protocol: PROTO_UDP,
        ..dataplane_key(&dataplane, 1)
    };
    assert!(
        !dataplane.services.contains_key(&dns),
        "removed service is gone"
    );
    assert_eq!(dataplane.reals[&3], Real::default(), "192.0.2.13 retired");
    assert_eq!(dataplane.reals[&4], Real::default(), "dns's real retired");
    assert_eq!(&dataplane.reals[&6].addr[..4], &[192, 0, 2, 14]);
    assert_eq!(
        dataplane.initialised_reals,
        vec![5, 6],
        "new ids start from zero, kept ones keep their counters"
    );
    assert_eq!(dataplane.reals[&1].mac, mac(1), "a kept real keeps its MAC");
    assert_eq!(
        dataplane.reals[&1].flags,
        REAL_AVAILABLE | lb_common::REAL_TAKES_NEW_FLOWS,
        "and stays available"
    );
    assert_eq!(dataplane.reals[&6].flags, 0, "a new real waits for its MAC");
}

/// The key of the service with this id in the fake data plane.
fn dataplane_key(dataplane: &FakeDataplane, id: u32) -> ServiceKey {
    *dataplane
        .services
        .iter()
        .find(|(_, s)| s.id == id)
        .expect("service")
        .0
}

#[test]
fn retired_ids_are_reused_only_when_no_other_is_left() {
    let small = |reals: &str| {
        format!(
            "instance: t\ninterfaces: [{{name: eth0}}]\nlimits: {{services: 4, reals: 4}}\n\
             services:\n  - {{vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{reals}]}}\n"
        )
    };
    let config = config::parse(
        &small("{address: 192.0.2.11}, {address: 192.0.2.12}"),
        "t.yaml",
    )
    .unwrap();
    let mut first = Desired::new(&config, vec![eth0()], &Routes::new()).unwrap();
    let mut dataplane = FakeDataplane::default();
    first.apply(&mut dataplane).unwrap();

    // Ids 1 and 2 are retired, 3 was never used: 3 first, then 1.
    let mut second = restarted(
        &small("{address: 192.0.2.13}, {address: 192.0.2.14}"),
        &dataplane,
    );
    assert_eq!(real_ids(&second, 0), vec![(addr(13), 3), (addr(14), 1)]);
    assert_eq!(
        second.pending.retired_reals,
        vec![2],
        "id 1 has a new meaning, not retired"
    );
    second.apply(&mut dataplane).unwrap();
    assert_eq!(&dataplane.reals[&1].addr[..4], &[192, 0, 2, 14]);
    assert_eq!(dataplane.reals[&2], Real::default());
}

#[test]
fn service_keys_are_in_network_byte_order() {
    let key = state().services[0].key;
    assert_eq!(&key.vip[..4], &[192, 0, 2, 100]);
    assert_eq!(key.vip[4..], [0; 12]);
    assert_eq!(key.port_be.to_ne_bytes(), [0, 80]);
    assert_eq!((key.protocol, key.family), (PROTO_TCP, FAMILY_IPV4));
}

#[test]
fn a_real_off_every_interface_subnet_is_an_error() {
    let config = config::parse(&CONFIG.replace("192.0.2.12", "203.0.113.12"), "test.yaml").unwrap();
    let error = Desired::new(&config, vec![eth0()], &Routes::new())
        .unwrap_err()
        .to_string();
    assert!(error.contains("203.0.113.12"), "{error}");
    assert!(error.contains("eth0: 192.0.2.2/24"), "{error}");
}

#[test]
fn each_vip_and_protocol_places_early_fragments_by_its_lowest_port_service() {
    let config = config::parse(
        "
instance: t
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 443, protocol: tcp, reals: [{address: 192.0.2.11}]}
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.12}]}
  - {vip: 192.0.2.100, port: 53, protocol: udp, reals: [{address: 192.0.2.13}]}
  - {vip: 192.0.2.101, port: 8080, protocol: tcp, reals: [{address: 192.0.2.14}]}
  - {vip: 192.0.2.101, port: 0, protocol: tcp, reals: [{address: 192.0.2.15}]}
",
        "test.yaml",
    )
    .expect("test config parses");
    let mut state = Desired::new(&config, vec![eth0()], &Routes::new()).expect("state builds");
    let mut dataplane = FakeDataplane::default();
    // A previous daemon's entry for a VIP this config no longer has.
    let stale = ServiceKey {
        vip: [192, 0, 2, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        port_be: 0,
        protocol: PROTO_TCP,
        family: FAMILY_IPV4,
    };
    dataplane.fragment_services.insert(
        stale,
        lb_common::Service {
            id: 9,
            ..Default::default()
        },
    );
    state.apply(&mut dataplane).unwrap();

    let by_port = |service_index: usize| {
        let key = ServiceKey {
            port_be: 0,
            ..state.services[service_index].key
        };
        dataplane.fragment_services[&key].id
    };
    assert_eq!(by_port(0), state.services[1].id, "TCP 192.0.2.100: port 80");
    assert_eq!(
        by_port(2),
        state.services[2].id,
        "UDP 192.0.2.100: its only service"
    );
    assert_eq!(
        by_port(3),
        state.services[4].id,
        "TCP 192.0.2.101: the all-ports service"
    );
    assert_eq!(
        dataplane.fragment_services.len(),
        3,
        "the stale entry is gone"
    );
    let removal = dataplane
        .writes
        .iter()
        .position(|write| write == "remove fragment service 9");
    assert_eq!(
        removal,
        Some(0),
        "stale entries go before anything else is written"
    );
}

#[test]
fn early_fragments_go_to_a_service_that_can_take_them() {
    let config = config::parse(
        "
instance: t
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}
  - {vip: 192.0.2.100, port: 443, protocol: tcp, reals: [{address: 192.0.2.12}]}
",
        "test.yaml",
    )
    .expect("test config parses");
    let mut state = Desired::new(&config, vec![eth0()], &Routes::new()).expect("state builds");
    let mut dataplane = FakeDataplane::default();
    let key = ServiceKey {
        port_be: 0,
        ..state.services[0].key
    };
    // Only the port-443 service's real answers: port 80's schedule is empty.
    state.set_neighbours(7, &neighbours(&[(12, 2)]));
    state.apply(&mut dataplane).unwrap();
    assert_eq!(dataplane.fragment_services[&key].id, state.services[1].id);

    // Port 80's real answers: the lower port takes over, overwritten in place (never
    // removed, which would let fragments pass meanwhile).
    dataplane.writes.clear();
    let changed = state.set_neighbours(7, &neighbours(&[(11, 1), (12, 2)]));
    state.apply_dirty(&mut dataplane, &changed).unwrap();
    assert_eq!(dataplane.fragment_services[&key].id, state.services[0].id);
    let fragment_writes: Vec<&String> = dataplane
        .writes
        .iter()
        .filter(|write| write.contains("fragment"))
        .collect();
    assert_eq!(fragment_writes, vec!["fragment service 1"]);

    // A restart finding the entry of a service of the same VIP keeps it until overwritten.
    let mut restarted = Desired::new(&config, vec![eth0()], &Routes::new()).expect("state builds");
    restarted.set_neighbours(7, &neighbours(&[(12, 2)]));
    dataplane.writes.clear();
    restarted.apply(&mut dataplane).unwrap();
    assert!(
        !dataplane
            .writes
            .iter()
            .any(|write| write.starts_with("remove")),
        "{:?}",
        dataplane.writes
    );
    assert_eq!(
        dataplane.fragment_services[&key].id,
        restarted.services[1].id
    );
}
