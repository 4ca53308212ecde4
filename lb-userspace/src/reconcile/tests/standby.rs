//! A VIP of a VRRP router that is not master here: its services are written whole but hidden
//! from the program, and come back when the router becomes master.

use std::collections::BTreeSet;

use super::*;

const WITH_ROUTER: &str = "
instance: t
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}
  - {vip: 192.0.2.100, port: 0, protocol: tcp, reals: [{address: 192.0.2.12}]}
  - {vip: 192.0.2.200, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}
vrrp:
  - {name: VI_1, interface: eth0, vrid: 51, virtual_addresses: [192.0.2.100]}
";

fn vip() -> IpAddr {
    "192.0.2.100".parse().unwrap()
}

fn started() -> (Desired, FakeDataplane) {
    let config = config::parse(WITH_ROUTER, "test.yaml").expect("config parses");
    let mut desired = Desired::new(&config, vec![eth0()], &Routes::new()).expect("state builds");
    desired.set_neighbours(7, &neighbours(&[(11, 11), (12, 12)]));
    let mut dataplane = FakeDataplane::default();
    desired.apply(&mut dataplane).expect("applies");
    (desired, dataplane)
}

#[test]
fn a_node_starts_with_its_routers_vips_hidden_but_written() {
    let (desired, dataplane) = started();
    assert_eq!(desired.standby, BTreeSet::from([vip()]));
    // Only the VIP no router carries is forwarded.
    let forwarded: Vec<u32> = dataplane.services.values().map(|s| s.id).collect();
    assert_eq!(forwarded, vec![3]);
    // The hidden ones keep ids, reals and schedules: synced flows point at them.
    let mut hidden: Vec<u32> = dataplane.hidden_services.values().map(|s| s.id).collect();
    hidden.sort();
    assert_eq!(hidden, vec![1, 2]);
    assert_eq!(dataplane.schedules.len(), 3);
    assert!(
        dataplane
            .reals
            .values()
            .all(|real| real.flags & REAL_AVAILABLE != 0)
    );
    // No fragment service names a hidden service.
    assert!(dataplane.fragment_services.values().all(|s| s.id == 3));
}

#[test]
fn becoming_master_shows_the_services_and_leaving_hides_them_again() {
    let (mut desired, mut dataplane) = started();
    let hidden_before = dataplane.hidden_services.clone();
    desired
        .set_standby(&mut dataplane, BTreeSet::new())
        .expect("writes");
    let mut forwarded: Vec<u32> = dataplane.services.values().map(|s| s.id).collect();
    forwarded.sort();
    assert_eq!(forwarded, vec![1, 2, 3]);
    assert!(dataplane.hidden_services.is_empty());
    // The all-ports service of the VIP places its early fragments again.
    let fragment_key = ServiceKey {
        port_be: 0,
        ..service_key_of(crate::config::Protocol::Tcp, vip(), 80)
    };
    assert_eq!(
        dataplane.fragment_services.get(&fragment_key).map(|s| s.id),
        Some(2)
    );

    dataplane.writes.clear();
    desired
        .set_standby(&mut dataplane, BTreeSet::from([vip()]))
        .expect("writes");
    assert_eq!(dataplane.hidden_services, hidden_before);
    assert!(!dataplane.fragment_services.contains_key(&fragment_key));
    // Fragment entries go before the services they name.
    let first_hide = dataplane
        .writes
        .iter()
        .position(|write| write.starts_with("hide service"))
        .expect("a service was hidden");
    let fragment_removed = dataplane
        .writes
        .iter()
        .position(|write| write.starts_with("remove fragment service"))
        .expect("the fragment entry was removed");
    assert!(fragment_removed < first_hide, "{:?}", dataplane.writes);
}

#[test]
fn a_replacement_keeps_what_vrrp_decided_and_ids_survive_hiding() {
    let (mut desired, mut dataplane) = started();
    desired
        .set_standby(&mut dataplane, BTreeSet::new())
        .expect("writes");
    // An edit (a new config) arrives while master: the VIPs stay served.
    let config = config::parse(WITH_ROUTER, "test.yaml").expect("config parses");
    let mut replacement =
        Desired::new(&config, vec![eth0()], &Routes::new()).expect("state builds");
    replacement.adopt(&Existing::read(&dataplane).expect("reads"));
    replacement.carry_over(&desired);
    assert!(replacement.standby.is_empty());
    // And a hidden service keeps its id for a restart: adoption finds it.
    desired
        .set_standby(&mut dataplane, BTreeSet::from([vip()]))
        .expect("writes");
    let existing = Existing::read(&dataplane).expect("reads");
    let mut ids: Vec<u32> = existing.services.iter().map(|(_, s)| s.id).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3]);
}
