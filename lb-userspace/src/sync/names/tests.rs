//! Ids ↔ names across nodes, and the way back of NAT and full-NAT flows.

use lb_common::conntrack::{STATE_ESTABLISHED, STATE_FIN_WAIT, STATE_NONE};

use super::*;
use crate::sync::testing::{desired, desired_on_ifindex, tcp_record};

/// A master's reply lookup that finds no entry.
fn no_reply(_: &FlowKey) -> Result<Option<Reply>, ()> {
    Ok(None)
}

const MASTER: &str = "
instance: a
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}, {address: 192.0.2.12}]}
  - {vip: 192.0.2.100, port: 0, protocol: udp, reals: [{address: 192.0.2.13}]}
";
/// The same services, in another order, with a service of its own first: every id differs.
const BACKUP: &str = "
instance: b
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.200, port: 80, protocol: tcp, reals: [{address: 192.0.2.14}]}
  - {vip: 192.0.2.100, port: 0, protocol: udp, reals: [{address: 192.0.2.13}]}
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.12}, {address: 192.0.2.11}]}
";

fn key(protocol: u8, dst_port: u16) -> FlowKey {
    let (src, family) = address_bytes("203.0.113.9".parse().unwrap());
    let (dst, _) = address_bytes("192.0.2.100".parse().unwrap());
    FlowKey {
        src,
        dst,
        src_port_be: 40000u16.to_be(),
        dst_port_be: dst_port.to_be(),
        protocol,
        family,
        _pad: [0; 2],
    }
}

#[test]
fn a_flow_crosses_by_name_to_the_backups_ids() {
    let master = desired(MASTER);
    let backup = desired(BACKUP);
    let names = Names::new(&master);
    let ids = Ids::new(&backup);
    let id_of = |desired: &Desired, address: &str| {
        desired
            .services
            .iter()
            .flat_map(|service| service.reals.iter().map(move |real| (service.id, real)))
            .find(|(_, real)| real.config.address == address.parse::<IpAddr>().unwrap())
            .map(|(service, real)| (service, real.id))
            .unwrap()
    };
    for (protocol, port, real, state) in [
        (6, 80, "192.0.2.12", STATE_ESTABLISHED),
        (17, 5353, "192.0.2.13", STATE_UDP),
    ] {
        let (service_id, real_id) = id_of(&master, real);
        let flow = Flow {
            real_id,
            service_id,
            last_seen_ns: 10_000_000_000,
            state: u32::from(state),
            ..Flow::default()
        };
        let record = names
            .record(&key(protocol, port), &flow, 12_500_000_000, no_reply)
            .unwrap()
            .expect("named");
        assert_eq!(record.idle_ms, 2500);
        assert_eq!(record.real.to_string(), real);
        let Copied {
            key: backup_key,
            flow: backup_flow,
            reply,
            ..
        } = ids.flow(&record, 100_000_000_000).expect("known");
        assert_eq!(reply, None, "a DR flow has no reply entry");
        assert_eq!(backup_key, key(protocol, port));
        let (service_id, real_id) = id_of(&backup, real);
        assert_eq!(
            (backup_flow.service_id, backup_flow.real_id),
            (service_id, real_id)
        );
        assert_ne!(
            (backup_flow.service_id, backup_flow.real_id),
            (flow.service_id, flow.real_id),
            "the test must cross different ids"
        );
        assert_eq!(backup_flow.last_seen_ns, 97_500_000_000);
        assert_eq!(backup_flow.state, u32::from(state));
    }
}

#[test]
fn names_the_backup_lacks_are_told_apart() {
    let master = desired(MASTER);
    let names = Names::new(&master);
    let service = &master.services[0];
    let flow = Flow {
        real_id: service.reals[0].id,
        service_id: service.id,
        state: u32::from(STATE_ESTABLISHED),
        ..Flow::default()
    };
    let record = names
        .record(&key(6, 80), &flow, 0, no_reply)
        .unwrap()
        .expect("named");
    let without_service = desired(
        "instance: b\ninterfaces: [{name: eth0}]\nservices:\n  - {vip: 192.0.2.100, port: 81, protocol: tcp, reals: [{address: 192.0.2.11}]}\n",
    );
    assert_eq!(
        Ids::new(&without_service).flow(&record, 0).err(),
        Some(Unmatched::Service)
    );
    let without_real = desired(
        "instance: b\ninterfaces: [{name: eth0}]\nservices:\n  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.12}]}\n",
    );
    assert_eq!(
        Ids::new(&without_real).flow(&record, 0).err(),
        Some(Unmatched::Real)
    );
    // A flow whose ids the master no longer knows is not sent.
    let stale = Flow {
        real_id: 999,
        ..flow
    };
    assert_eq!(names.record(&key(6, 80), &stale, 0, no_reply), Ok(None));
}

#[test]
fn a_state_the_protocol_lacks_is_refused() {
    let ids = Ids::new(&desired(MASTER));
    for state in STATE_SYN_RECV..=STATE_CLOSE {
        let record = FlowRecord {
            state,
            ..tcp_record()
        };
        assert!(ids.flow(&record, 0).is_ok(), "TCP state {state}");
    }
    for state in [STATE_NONE, STATE_UDP, 7, 255] {
        let record = FlowRecord {
            state,
            ..tcp_record()
        };
        assert_eq!(
            ids.flow(&record, 0).err(),
            Some(Unmatched::Invalid),
            "TCP state {state}"
        );
    }
    let udp = FlowRecord {
        protocol: PROTO_UDP,
        vip_port: 5353,
        service_port: 0,
        real: "192.0.2.13".parse().unwrap(),
        real_port: 0,
        state: STATE_UDP,
        ..tcp_record()
    };
    assert!(ids.flow(&udp, 0).is_ok());
    for state in [STATE_NONE, STATE_ESTABLISHED, STATE_FIN_WAIT, 7] {
        let record = FlowRecord { state, ..udp };
        assert_eq!(
            ids.flow(&record, 0).err(),
            Some(Unmatched::Invalid),
            "UDP state {state}"
        );
    }
    let icmp = FlowRecord {
        protocol: 1,
        ..tcp_record()
    };
    assert_eq!(ids.flow(&icmp, 0).err(), Some(Unmatched::Invalid));
}

#[test]
fn a_port_other_than_the_services_is_refused() {
    let ids = Ids::new(&desired(MASTER));
    let other_port = FlowRecord {
        vip_port: 81,
        ..tcp_record()
    };
    assert_eq!(ids.flow(&other_port, 0).err(), Some(Unmatched::Invalid));
    // An all-ports service takes any.
    let udp = FlowRecord {
        protocol: PROTO_UDP,
        vip_port: 5353,
        service_port: 0,
        real: "192.0.2.13".parse().unwrap(),
        real_port: 0,
        state: STATE_UDP,
        ..tcp_record()
    };
    let Copied { key, .. } = ids.flow(&udp, 0).expect("any port");
    assert_eq!(u16::from_be(key.dst_port_be), 5353);
}

#[test]
fn full_nat_fields_are_taken_only_for_a_full_nat_real() {
    // Without full NAT, both fields must be 0.
    let ids = Ids::new(&desired(MASTER));
    for (local_port, local_source) in [(1024, 0), (0, 1), (1024, 1)] {
        let record = FlowRecord {
            local_port,
            local_source,
            ..tcp_record()
        };
        assert_eq!(
            ids.flow(&record, 0).err(),
            Some(Unmatched::Invalid),
            "local {local_port}/{local_source} for a dr real"
        );
    }
    // A full-NAT real with two local sources.
    let full_nat = Ids::new(&desired(
        "
instance: b
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    snat_pool: [192.0.2.3, 192.0.2.4]
    reals: [{address: 192.0.2.11, forward: fullnat}]
",
    ));
    let record = FlowRecord {
        local_port: 1024,
        local_source: 1,
        ..tcp_record()
    };
    let Copied { flow, .. } = full_nat.flow(&record, 0).expect("taken");
    assert_eq!(
        (u16::from_be(flow.local_port_be), flow.local_source),
        (1024, 1)
    );
    for (local_port, local_source) in [(0, 0), (0, 1), (1024, 2)] {
        let record = FlowRecord {
            local_port,
            local_source,
            ..tcp_record()
        };
        assert_eq!(
            full_nat.flow(&record, 0).err(),
            Some(Unmatched::Invalid),
            "local {local_port}/{local_source} for a full-NAT real of two sources"
        );
    }
}

/// NAT to port 8080 and full NAT from two local sources, on eth0 at ifindex 7.
const NAT_MASTER: &str = "
instance: a
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11, port: 8080, forward: nat}, {address: 192.0.2.12, port: 8080, forward: nat}]}
  - vip: 192.0.2.100
    port: 443
    protocol: tcp
    snat_pool: [192.0.2.3, 192.0.2.4]
    reals: [{address: 192.0.2.11, forward: fullnat}]
";
/// The same, services and reals in another order (other ids), and eth0 at ifindex 9.
const NAT_BACKUP: &str = "
instance: b
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 443
    protocol: tcp
    snat_pool: [192.0.2.3, 192.0.2.4]
    reals: [{address: 192.0.2.11, forward: fullnat}]
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.12, port: 8080, forward: nat}, {address: 192.0.2.11, port: 8080, forward: nat}]}
";

/// The service and real ids of `real` in `desired`'s service on `port`.
fn ids_of(desired: &Desired, port: u16, real: &str) -> (u32, u32) {
    let service = desired
        .services
        .iter()
        .find(|service| service.config.port == port)
        .expect("the service");
    let real = service
        .reals
        .iter()
        .find(|candidate| candidate.config.address == real.parse::<IpAddr>().unwrap())
        .expect("the real");
    (service.id, real.id)
}

fn bytes(address: &str) -> [u8; 16] {
    address_bytes(address.parse().unwrap()).0
}

/// The reply entry a master's program wrote for `key`'s flow to `real_id`.
fn master_reply(key: &FlowKey, service_id: u32, real_id: u32) -> Reply {
    Reply {
        flow: *key,
        client_mac: [2, 0, 0, 0, 0, 0x42],
        vlan_proto_be: 0x8100u16.to_be(),
        ingress_ifindex: 7,
        vlan: 0x1_0064,
        real_id,
        service_id,
    }
}

#[test]
fn a_nat_flows_way_back_crosses_to_the_backups_ids_and_interface() {
    let master = desired(NAT_MASTER);
    let backup = desired_on_ifindex(NAT_BACKUP, 9);
    let names = Names::new(&master);
    let ids = Ids::new(&backup);
    let client = key(PROTO_TCP, 80);
    let (service_id, real_id) = ids_of(&master, 80, "192.0.2.12");
    let flow = Flow {
        real_id,
        service_id,
        state: u32::from(STATE_ESTABLISHED),
        ..Flow::default()
    };
    // The program keys the reply as the real sends it: from 192.0.2.12:8080 to the
    // client's address and port.
    let expected_key = FlowKey {
        src: bytes("192.0.2.12"),
        dst: bytes("203.0.113.9"),
        src_port_be: 8080u16.to_be(),
        dst_port_be: 40000u16.to_be(),
        protocol: PROTO_TCP,
        family: client.family,
        _pad: [0; 2],
    };
    let record = names
        .record(&client, &flow, 0, |reply_key| {
            assert_eq!(*reply_key, expected_key);
            Ok::<_, ()>(Some(master_reply(&client, service_id, real_id)))
        })
        .unwrap()
        .expect("named");
    assert_eq!(
        record.way_back,
        Some(WayBack {
            interface: InterfaceName::new("eth0").unwrap(),
            client_mac: [2, 0, 0, 0, 0, 0x42],
            vlan_proto: 0x8100,
            vlan: 0x1_0064,
            local: None,
        })
    );
    let copied = ids.flow(&record, 0).expect("known");
    let (backup_service, backup_real) = ids_of(&backup, 80, "192.0.2.12");
    assert_ne!((backup_service, backup_real), (service_id, real_id));
    assert_eq!(
        copied.reply,
        Some((
            expected_key,
            Reply {
                ingress_ifindex: 9,
                ..master_reply(&client, backup_service, backup_real)
            }
        ))
    );
}

#[test]
fn a_full_nat_flows_reply_is_keyed_by_its_local_source_and_port() {
    let master = desired(NAT_MASTER);
    let backup = desired_on_ifindex(NAT_BACKUP, 9);
    let client = key(PROTO_TCP, 443);
    let (service_id, real_id) = ids_of(&master, 443, "192.0.2.11");
    let flow = Flow {
        real_id,
        service_id,
        state: u32::from(STATE_ESTABLISHED),
        local_port_be: 1500u16.to_be(),
        local_source: 1,
        ..Flow::default()
    };
    // From the real (on the client's destination port: it has none of its own) to the
    // second local source, on the flow's local port.
    let expected_key = FlowKey {
        src: bytes("192.0.2.11"),
        dst: bytes("192.0.2.4"),
        src_port_be: 443u16.to_be(),
        dst_port_be: 1500u16.to_be(),
        protocol: PROTO_TCP,
        family: client.family,
        _pad: [0; 2],
    };
    let record = Names::new(&master)
        .record(&client, &flow, 0, |reply_key| {
            assert_eq!(*reply_key, expected_key);
            Ok::<_, ()>(Some(master_reply(&client, service_id, real_id)))
        })
        .unwrap()
        .expect("named");
    let copied = Ids::new(&backup).flow(&record, 0).expect("known");
    let (backup_service, backup_real) = ids_of(&backup, 443, "192.0.2.11");
    assert_eq!(
        copied.reply,
        Some((
            expected_key,
            Reply {
                ingress_ifindex: 9,
                ..master_reply(&client, backup_service, backup_real)
            }
        ))
    );
}

#[test]
fn a_reply_entry_that_is_not_the_flows_gives_no_way_back() {
    let master = desired(NAT_MASTER);
    let names = Names::new(&master);
    let client = key(PROTO_TCP, 80);
    let (service_id, real_id) = ids_of(&master, 80, "192.0.2.12");
    let flow = Flow {
        real_id,
        service_id,
        state: u32::from(STATE_ESTABLISHED),
        ..Flow::default()
    };
    let other_client = key(PROTO_TCP, 81);
    let (_, other_real) = ids_of(&master, 80, "192.0.2.11");
    for (why, reply) in [
        ("missing", None),
        (
            "another flow's",
            Some(master_reply(&other_client, service_id, real_id)),
        ),
        (
            "to another real",
            Some(master_reply(&client, service_id, other_real)),
        ),
        (
            "in on an interface the program does not run on",
            Some(Reply {
                ingress_ifindex: 8,
                ..master_reply(&client, service_id, real_id)
            }),
        ),
    ] {
        let record = names
            .record(&client, &flow, 0, |_| Ok::<_, ()>(reply))
            .unwrap()
            .expect("named");
        assert_eq!(record.way_back, None, "a reply entry {why}");
    }
    // A DR flow's reply entry is not even looked for.
    let dr = desired(MASTER);
    let service = &dr.services[0];
    let dr_flow = Flow {
        real_id: service.reals[0].id,
        service_id: service.id,
        state: u32::from(STATE_ESTABLISHED),
        ..Flow::default()
    };
    let record = Names::new(&dr)
        .record(&client, &dr_flow, 0, |_| -> Result<Option<Reply>, ()> {
            panic!("looked for a DR flow's reply")
        })
        .unwrap()
        .expect("named");
    assert_eq!(record.way_back, None);
}

#[test]
fn a_way_back_the_backup_cannot_use_is_refused_and_none_is_no_reply() {
    let backup = Ids::new(&desired_on_ifindex(NAT_BACKUP, 9));
    let nat_record = FlowRecord {
        vip_port: 80,
        real: "192.0.2.12".parse().unwrap(),
        real_port: 8080,
        way_back: Some(WayBack {
            interface: InterfaceName::new("eth0").unwrap(),
            client_mac: [2, 0, 0, 0, 0, 0x42],
            vlan_proto: 0,
            vlan: 0,
            local: None,
        }),
        ..tcp_record()
    };
    assert!(backup.flow(&nat_record, 0).unwrap().reply.is_some());
    // An interface this node's program does not run on.
    let elsewhere = FlowRecord {
        way_back: Some(WayBack {
            interface: InterfaceName::new("eth1").unwrap(),
            ..nat_record.way_back.unwrap()
        }),
        ..nat_record
    };
    assert_eq!(backup.flow(&elsewhere, 0).err(), Some(Unmatched::Interface));
    // From an older master (no way back): the flow, without a reply entry.
    let without = FlowRecord {
        way_back: None,
        ..nat_record
    };
    assert_eq!(backup.flow(&without, 0).unwrap().reply, None);
    // A way back for a real that is DR here.
    let dr = Ids::new(&desired(MASTER));
    let dr_record = FlowRecord {
        way_back: nat_record.way_back,
        ..tcp_record()
    };
    assert_eq!(dr.flow(&dr_record, 0).err(), Some(Unmatched::Invalid));
}

/// The full-NAT service of [`NAT_MASTER`] with its two local sources the other way round.
const SWAPPED_POOL: &str = "
instance: b
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 443
    protocol: tcp
    snat_pool: [192.0.2.4, 192.0.2.3]
    reals: [{address: 192.0.2.11, forward: fullnat}]
";

/// A full-NAT record from the master's second local source, 192.0.2.4, with its way back.
fn full_nat_record() -> FlowRecord {
    let master = desired(NAT_MASTER);
    let client = key(PROTO_TCP, 443);
    let (service_id, real_id) = ids_of(&master, 443, "192.0.2.11");
    let flow = Flow {
        real_id,
        service_id,
        state: u32::from(STATE_ESTABLISHED),
        local_port_be: 1500u16.to_be(),
        local_source: 1,
        ..Flow::default()
    };
    Names::new(&master)
        .record(&client, &flow, 0, |_| {
            Ok::<_, ()>(Some(master_reply(&client, service_id, real_id)))
        })
        .unwrap()
        .expect("named")
}

#[test]
fn a_full_nat_flow_keeps_its_local_address_whatever_the_pools_order() {
    let record = full_nat_record();
    assert_eq!(
        record.way_back.unwrap().local,
        Some("192.0.2.4".parse().unwrap())
    );
    let copied = Ids::new(&desired(SWAPPED_POOL))
        .flow(&record, 0)
        .expect("known");
    // The same address, first in this node's pool.
    assert_eq!(copied.flow.local_source, 0);
    let (reply_key, _) = copied.reply.expect("a reply entry");
    assert_eq!(reply_key.dst, bytes("192.0.2.4"));
    // A pool without that address cannot carry the flow on.
    let other_pool = SWAPPED_POOL.replace("192.0.2.4, ", "192.0.2.5, ");
    assert_eq!(
        Ids::new(&desired(&other_pool)).flow(&record, 0).err(),
        Some(Unmatched::Invalid)
    );
}

#[test]
fn a_way_back_the_program_could_not_have_written_is_refused() {
    let backup = Ids::new(&desired_on_ifindex(NAT_BACKUP, 9));
    let good = full_nat_record();
    assert!(backup.flow(&good, 0).is_ok());
    let way_back = good.way_back.unwrap();
    for (why, bad) in [
        (
            "an EtherType that is no tag",
            WayBack {
                vlan_proto: 0x0800,
                ..way_back
            },
        ),
        (
            "a tag without its bit",
            WayBack {
                vlan: 0x64,
                ..way_back
            },
        ),
        (
            "bits beyond the TCI",
            WayBack {
                vlan: 0x3_0064,
                ..way_back
            },
        ),
        (
            "a tag without its protocol",
            WayBack {
                vlan_proto: 0,
                ..way_back
            },
        ),
        (
            "no local address for a full-NAT real",
            WayBack {
                local: None,
                ..way_back
            },
        ),
    ] {
        let record = FlowRecord {
            way_back: Some(bad),
            ..good
        };
        assert_eq!(
            backup.flow(&record, 0).err(),
            Some(Unmatched::Invalid),
            "{why}"
        );
    }
}

#[test]
fn a_copy_replaces_only_entries_this_node_does_not_forward() {
    let client = key(PROTO_TCP, 80);
    let copy = master_reply(&client, 1, 2);
    let mut elsewhere = client;
    elsewhere.dst = bytes("192.0.2.200");
    let other_flow = Reply {
        flow: elsewhere,
        ..copy
    };
    let mut backup = desired(NAT_BACKUP);
    // A VIP no router carries: this node forwards it, and its entries are its program's.
    assert!(Ids::new(&backup).may_replace(&copy, &copy), "the same flow");
    assert!(!Ids::new(&backup).may_replace(&other_flow, &copy));
    // A router's VIP that is not master here: an entry of it is an older copy's.
    backup.standby.insert("192.0.2.200".parse().unwrap());
    assert!(Ids::new(&backup).may_replace(&other_flow, &copy));
}

#[test]
fn a_client_mac_no_frame_comes_from_merges_the_flow_without_its_reply_entry() {
    let backup = Ids::new(&desired_on_ifindex(NAT_BACKUP, 9));
    let good = full_nat_record();
    for mac in [[1, 0, 0x5e, 0, 0, 1], [0; 6]] {
        let record = FlowRecord {
            way_back: Some(WayBack {
                client_mac: mac,
                ..good.way_back.unwrap()
            }),
            ..good
        };
        let copied = backup.flow(&record, 0).expect("the flow is taken");
        assert_eq!(copied.reply, None, "{mac:?}");
        assert!(copied.lacks_way_back, "counted: {mac:?}");
    }
}
