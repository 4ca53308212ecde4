//! Tunnel and NAT reals: placement by route, next hops shared by reals, egress entries and
//! the settings flag, against the in-memory data plane.

use lb_common::{
    Egress, FORWARD_FULLNAT, FORWARD_NAT, FORWARD_TUN, TUNNEL_GUE, TUNNEL_IPIP,
    conntrack::{SETTINGS_NO_ALL_PORTS_SERVICE, SETTINGS_TRANSLATES_REPLIES},
};

use super::*;
use crate::neighbour::Route;

/// Reals on eth0's 192.0.2.0/24 and behind the router 192.0.2.1 (198.51.100.0/24 and
/// 2001:db8:1::/64, an IPv6 real of an IPv4 VIP).
const ROUTED: &str = "
instance: t
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    forward: tun
    reals:
      - {address: 198.51.100.11}
      - {address: 198.51.100.12}
      - {address: 192.0.2.13}
      - {address: 2001:db8:1::14}
  - vip: 192.0.2.100
    port: 53
    protocol: udp
    forward: fullnat
    snat_pool: [192.0.2.3, 192.0.2.4]
    reals:
      - {address: 198.51.100.21, port: 5353}
      - {address: 192.0.2.22, forward: nat, port: 5353}
";

const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const ROUTER6: &str = "fe80::1";

/// eth0 (ifindex 7) with IPv4 192.0.2.2/24 and IPv6 2001:db8::2/64.
fn dual_stack() -> InterfaceInfo {
    InterfaceInfo {
        prefixes: vec![(addr(2), 24), ("2001:db8::2".parse().unwrap(), 64)],
        ..eth0()
    }
}

/// The routes lbd would read: the 198.51.100.0/24 reals and the IPv6 one through routers on
/// eth0, the connected ones straight.
fn routes() -> Routes {
    let via = |gateway: IpAddr, source: IpAddr| Route {
        ifindex: 7,
        interface: "eth0".into(),
        gateway: Some(gateway),
        prefsrc: Some(source),
    };
    let direct = Route {
        ifindex: 7,
        interface: "eth0".into(),
        gateway: None,
        prefsrc: Some(addr(2)),
    };
    let v6 = "2001:db8::2".parse().unwrap();
    Routes::from([
        ("198.51.100.11".parse().unwrap(), via(ROUTER, addr(2))),
        ("198.51.100.12".parse().unwrap(), via(ROUTER, addr(2))),
        ("198.51.100.21".parse().unwrap(), via(ROUTER, addr(2))),
        (
            "2001:db8:1::14".parse().unwrap(),
            via(ROUTER6.parse().unwrap(), v6),
        ),
        (addr(13), direct.clone()),
        (addr(22), direct),
    ])
}

fn routed_state(yaml: &str, routes: &Routes) -> Result<Desired, ReconcileError> {
    let config = config::parse(yaml, "test.yaml").expect("test config parses");
    Desired::new(&config, vec![dual_stack()], routes)
}

fn real<'a>(state: &'a Desired, address: &str) -> &'a DesiredReal {
    let address: IpAddr = address.parse().unwrap();
    state
        .services
        .iter()
        .flat_map(|service| &service.reals)
        .find(|real| real.config.address == address)
        .unwrap_or_else(|| panic!("no real {address}"))
}

#[test]
fn reals_behind_a_router_have_it_as_next_hop_and_share_its_entry() {
    let mut state = routed_state(ROUTED, &routes()).unwrap();
    let placed = |address: &str| {
        let real = real(&state, address);
        (real.ifindex, real.next_hop, real.local)
    };
    assert_eq!(placed("198.51.100.11"), (7, ROUTER, Some(addr(2))));
    assert_eq!(placed("192.0.2.13"), (7, addr(13), Some(addr(2))));
    assert_eq!(
        placed("2001:db8:1::14"),
        (
            7,
            ROUTER6.parse().unwrap(),
            Some("2001:db8::2".parse().unwrap())
        )
    );
    // One neighbour entry for the router, however many reals are behind it.
    assert_eq!(
        state.next_hops(),
        vec![
            (7, ROUTER),
            (7, addr(13)),
            (7, addr(22)),
            (7, ROUTER6.parse().unwrap()),
        ]
    );
    assert!(state.has_next_hop(7, ROUTER));
    assert!(!state.has_next_hop(7, "198.51.100.11".parse().unwrap()));

    // The router's MAC is every real's behind it; its failure takes them all out.
    let changed = state.set_neighbours(7, &HashMap::from([(ROUTER, mac(1))]));
    assert_eq!(changed.reals.len(), 3, "{changed:?}");
    for address in ["198.51.100.11", "198.51.100.12", "198.51.100.21"] {
        assert_eq!(real(&state, address).mac, Some(mac(1)), "{address}");
    }
    let failed = state.observe(&Observation {
        ifindex: 7,
        addr: ROUTER,
        state: NeighbourStatus::Failed,
    });
    assert_eq!(failed.rings, BTreeSet::from([1, 2]));
    assert!(!real(&state, "198.51.100.12").available());
    assert!(real(&state, "192.0.2.13").mac.is_none(), "its own entry");
}

#[test]
fn placement_errors_name_the_real_and_the_way() {
    // A tunnel real elsewhere, with no route known (a fixture without routes).
    let message = routed_state(ROUTED, &Routes::new())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("real 198.51.100.11 of TCP 192.0.2.100:80 (tun)")
            && message.contains("no route to it is known"),
        "{message}"
    );

    // A route out of an interface the program does not run on.
    let mut elsewhere = routes();
    elsewhere.insert(
        "198.51.100.12".parse().unwrap(),
        Route {
            ifindex: 9,
            interface: "eth9".into(),
            gateway: Some("10.9.9.1".parse().unwrap()),
            prefsrc: Some("10.9.9.2".parse().unwrap()),
        },
    );
    let message = routed_state(ROUTED, &elsewhere).unwrap_err().to_string();
    assert!(
        message.contains("real 198.51.100.12 of TCP 192.0.2.100:80 (tun)")
            && message.contains("(via 10.9.9.1 dev eth9) leaves through eth9")
            && message.contains("not an XDP interface or a VLAN on one")
            && message.contains("eth0: 192.0.2.2/24"),
        "{message}"
    );

    // Direct routing needs the segment, route or not.
    let dr = "
instance: t
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 198.51.100.11}]}
";
    let message = routed_state(dr, &routes()).unwrap_err().to_string();
    assert!(
        message.contains("real 198.51.100.11 of TCP 192.0.2.100:80")
            && message.contains("direct routing needs the real on the same L2 segment"),
        "{message}"
    );

    // No local address of the real's family, and none configured.
    let mut no_source = routes();
    for route in no_source.values_mut() {
        route.prefsrc = None;
    }
    let v4_only = InterfaceInfo {
        prefixes: vec![(addr(2), 24)],
        ..eth0()
    };
    let config = config::parse(ROUTED, "test.yaml").unwrap();
    let message = Desired::new(&config, vec![v4_only.clone()], &no_source)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("real 2001:db8:1::14 of TCP 192.0.2.100:80 (tun): no IPv6 outer source")
            && message.contains("set tunnel_source"),
        "{message}"
    );
    // Configured, it needs none.
    let with_source = ROUTED.replace(
        "    forward: tun\n",
        "    forward: tun\n    tunnel_source: [2001:db8::99]\n",
    );
    let config = config::parse(&with_source, "test.yaml").unwrap();
    let state = Desired::new(&config, vec![v4_only], &no_source).unwrap();
    assert_eq!(
        real(&state, "2001:db8:1::14").sources,
        vec!["2001:db8::99".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        real(&state, "198.51.100.11").sources,
        vec![addr(2)],
        "the interface's own address when the route names none"
    );
}

fn egress(sources: &[IpAddr], tunnel: u8, gue_port: u16) -> Egress {
    let mut egress = Egress {
        source_count: sources.len() as u32,
        tunnel,
        gue_port_be: gue_port.to_be(),
        ..Egress::default()
    };
    for (slot, source) in egress.sources.iter_mut().zip(sources) {
        *slot = address_bytes(*source).0;
    }
    egress
}

#[test]
fn tunnel_and_full_nat_reals_get_egress_entries_before_their_real_entries() {
    let mut state = routed_state(ROUTED, &routes()).unwrap();
    let mut dataplane = FakeDataplane::default();
    state.apply(&mut dataplane).unwrap();
    // Ids: tun 1..=4, fullnat 5, nat 6.
    let v6: IpAddr = "2001:db8::2".parse().unwrap();
    assert_eq!(
        dataplane.egress,
        HashMap::from([
            (1, egress(&[addr(2)], TUNNEL_IPIP, 0)),
            (2, egress(&[addr(2)], TUNNEL_IPIP, 0)),
            (3, egress(&[addr(2)], TUNNEL_IPIP, 0)),
            (4, egress(&[v6], TUNNEL_IPIP, 0)),
            (5, egress(&[addr(3), addr(4)], 0, 0)),
        ]),
        "the NAT real needs none"
    );
    let written = |entry: &str| {
        dataplane
            .writes
            .iter()
            .position(|write| write == entry)
            .unwrap_or_else(|| panic!("no {entry} in {:?}", dataplane.writes))
    };
    for id in 1..=5 {
        assert!(written(&format!("egress {id}")) < written(&format!("real {id}")));
    }

    // Each real entry says its method, its port and its next hop's interface; the IPv6 real
    // of the IPv4 VIP is an IPv6 entry.
    let entry = |dataplane: &FakeDataplane, id: u32| dataplane.reals[&id];
    assert_eq!(
        (
            entry(&dataplane, 1).forward,
            entry(&dataplane, 5).forward,
            entry(&dataplane, 6).forward
        ),
        (FORWARD_TUN, FORWARD_FULLNAT, FORWARD_NAT)
    );
    assert_eq!(u16::from_be(entry(&dataplane, 5).port_be), 5353);
    assert_eq!(u16::from_be(entry(&dataplane, 1).port_be), 80);
    assert_eq!(entry(&dataplane, 4).family, lb_common::FAMILY_IPV6);
    assert_eq!(entry(&dataplane, 4).ifindex, 7);

    // The router answers: its MAC is in every entry behind it.
    let dirty = state.set_neighbours(7, &HashMap::from([(ROUTER, mac(1))]));
    state.apply_dirty(&mut dataplane, &dirty).unwrap();
    assert_eq!(entry(&dataplane, 1).mac, mac(1));
    assert_eq!(entry(&dataplane, 5).mac, mac(1));
    assert_eq!(entry(&dataplane, 1).flags & REAL_AVAILABLE, REAL_AVAILABLE);
    assert_eq!(
        entry(&dataplane, 3).flags & REAL_AVAILABLE,
        0,
        "192.0.2.13 unresolved"
    );
}

#[test]
fn gue_entries_carry_the_port() {
    let gue = ROUTED.replace(
        "    forward: tun\n",
        "    forward: tun\n    tunnel: gue\n    gue_port: 5555\n",
    );
    let mut state = routed_state(&gue, &routes()).unwrap();
    let mut dataplane = FakeDataplane::default();
    state.apply(&mut dataplane).unwrap();
    assert_eq!(dataplane.egress[&1], egress(&[addr(2)], TUNNEL_GUE, 5555));
    assert_eq!(
        dataplane.egress[&5],
        egress(&[addr(3), addr(4)], 0, 0),
        "full NAT has no tunnel"
    );
}

#[test]
fn the_settings_say_when_replies_need_translating() {
    let mut dataplane = FakeDataplane::default();
    routed_state(ROUTED, &routes())
        .unwrap()
        .apply(&mut dataplane)
        .unwrap();
    let settings = dataplane.settings.unwrap();
    assert_eq!(
        settings.flags,
        SETTINGS_TRANSLATES_REPLIES | SETTINGS_NO_ALL_PORTS_SERVICE
    );
    assert_eq!(
        settings.timeouts_s,
        state().timeouts.settings().timeouts_s,
        "the timeouts are kept"
    );

    let mut dataplane = FakeDataplane::default();
    let tunnels_only = "
instance: t
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, forward: tun, reals: [{address: 192.0.2.13}]}
";
    routed_state(tunnels_only, &routes())
        .unwrap()
        .apply(&mut dataplane)
        .unwrap();
    assert_eq!(
        dataplane.settings.unwrap().flags,
        SETTINGS_NO_ALL_PORTS_SERVICE
    );

    let mut dataplane = FakeDataplane::default();
    let all_ports = tunnels_only.replace("port: 80", "port: 0");
    routed_state(&all_ports, &routes())
        .unwrap()
        .apply(&mut dataplane)
        .unwrap();
    assert_eq!(
        dataplane.settings.unwrap().flags,
        0,
        "an all-ports service: the program looks for it"
    );
}

#[test]
fn egress_entries_go_with_their_need() {
    let mut first = routed_state(ROUTED, &routes()).unwrap();
    let mut dataplane = FakeDataplane::default();
    first.set_neighbours(7, &HashMap::from([(ROUTER, mac(1)), (addr(13), mac(13))]));
    first.apply(&mut dataplane).unwrap();
    // An entry nobody needs, as a daemon stopped half-way could leave.
    dataplane.egress.insert(60, Egress::default());

    // Restarted with 192.0.2.13 routed directly, 198.51.100.12 gone, the fullnat service
    // gone.
    let changed = "
instance: t
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    forward: tun
    reals:
      - {address: 198.51.100.11}
      - {address: 192.0.2.13, forward: dr}
      - {address: 2001:db8:1::14}
";
    let config = config::parse(changed, "test.yaml").unwrap();
    let mut second = Desired::new(&config, vec![dual_stack()], &routes()).unwrap();
    second.adopt(&Existing::read(&dataplane).unwrap());
    assert_eq!(
        real(&second, "192.0.2.13").mac,
        None,
        "no MAC carried over a change of method"
    );
    assert_eq!(real(&second, "198.51.100.11").mac, Some(mac(1)));
    dataplane.writes.clear();
    second.apply(&mut dataplane).unwrap();
    let mut kept: Vec<u32> = dataplane.egress.keys().copied().collect();
    kept.sort_unstable();
    assert_eq!(kept, [1, 4], "{:?}", dataplane.writes);
    // Gone after the real entries that stopped needing them.
    let written = |entry: &str| {
        dataplane
            .writes
            .iter()
            .position(|write| write == entry)
            .unwrap_or_else(|| panic!("no {entry} in {:?}", dataplane.writes))
    };
    assert!(written("real 3") < written("remove egress 3"));
    assert!(written("real 2") < written("remove egress 2"));
    assert!(written("remove egress 60") > 0);
    assert_eq!(
        dataplane.settings.unwrap().flags & SETTINGS_TRANSLATES_REPLIES,
        0,
        "no NAT real left"
    );
}

/// A config of one service whose two reals are `first` and `second` (flow-style real
/// entries), restarted over the data plane `dataplane` holds.
fn restarted(dataplane: &FakeDataplane, first: &str, second: &str) -> Desired {
    let text = format!(
        "
instance: t
interfaces: [{{name: eth0}}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    reals:
      - {first}
      - {second}
"
    );
    let config = config::parse(&text, "test.yaml").unwrap();
    let mut desired = Desired::new(&config, vec![dual_stack()], &routes()).unwrap();
    desired.adopt(&Existing::read(dataplane).unwrap());
    desired
}

#[test]
fn a_real_keeps_its_id_across_a_restart_only_if_its_flows_can_go_on() {
    let first = "{address: 192.0.2.13, forward: tun}";
    let second = "{address: 192.0.2.22, forward: fullnat, port: 8080}";
    let mut dataplane = FakeDataplane::default();
    let mut before = restarted(&dataplane, first, second);
    before.apply(&mut dataplane).unwrap();
    let id = |desired: &Desired, address: &str| real(desired, address).id;
    let (tun_id, fullnat_id) = (id(&before, "192.0.2.13"), id(&before, "192.0.2.22"));

    // Unchanged: both keep their ids. tun → dr: the packet reaches the real as sent either
    // way, so its flows go on.
    let same = restarted(&dataplane, first, second);
    assert_eq!(
        (id(&same, "192.0.2.13"), id(&same, "192.0.2.22")),
        (tun_id, fullnat_id)
    );
    let dr = restarted(&dataplane, "{address: 192.0.2.13, forward: dr}", second);
    assert_eq!(id(&dr, "192.0.2.13"), tun_id);

    // tun → nat, fullnat → nat: the flows' packets would change addresses mid-connection
    // (and a flow without a local port would go out from port 0): new ids.
    let nat = restarted(
        &dataplane,
        "{address: 192.0.2.13, forward: nat}",
        "{address: 192.0.2.22, forward: nat, port: 8080}",
    );
    assert_ne!(id(&nat, "192.0.2.13"), tun_id);
    assert_ne!(id(&nat, "192.0.2.22"), fullnat_id);

    // Full NAT from other local addresses: its flows name theirs by index, so a new id.
    let text = "
instance: t
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    snat_pool: [192.0.2.5]
    reals:
      - {address: 192.0.2.13, forward: tun}
      - {address: 192.0.2.22, forward: fullnat, port: 8080}
";
    let config = config::parse(text, "test.yaml").unwrap();
    let mut pooled = Desired::new(&config, vec![dual_stack()], &routes()).unwrap();
    pooled.adopt(&Existing::read(&dataplane).unwrap());
    assert_eq!(id(&pooled, "192.0.2.13"), tun_id);
    assert_ne!(id(&pooled, "192.0.2.22"), fullnat_id);
}

#[test]
fn a_vip_or_a_link_local_address_toward_a_routed_real_is_never_a_default_source() {
    let text = "
instance: t
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    forward: fullnat
    reals: [{address: 198.51.100.21}]
";
    let config = config::parse(text, "test.yaml").unwrap();
    let vip: IpAddr = "192.0.2.100".parse().unwrap();
    let mut routes = routes();
    routes
        .get_mut(&"198.51.100.21".parse().unwrap())
        .unwrap()
        .prefsrc = Some(vip);
    let message = match Desired::new(&config, vec![dual_stack()], &routes) {
        // The route's source is the VIP: eth0's own 192.0.2.2 is taken instead.
        Ok(desired) => {
            assert_eq!(real(&desired, "198.51.100.21").sources, [addr(2)]);
            String::new()
        }
        Err(error) => error.to_string(),
    };
    assert_eq!(message, "");

    // An interface whose only address is the VIP leaves nothing: set snat_pool, says lbd.
    let only_vip = InterfaceInfo {
        prefixes: vec![(vip, 24)],
        ..eth0()
    };
    let error = Desired::new(&config, vec![only_vip], &routes)
        .map(|_| ())
        .expect_err("no usable local address")
        .to_string();
    assert!(error.contains("set snat_pool"), "{error}");
}
