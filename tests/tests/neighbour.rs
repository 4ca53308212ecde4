//! `lb_userspace::neighbour` against a real kernel: interfaces and the VLANs on them, MAC
//! resolution, neighbour notifications and the XDP attachment read back. Needs root.
//!
//! Two namespaces, `lbt-nb-<pid>-a` and `-b`, joined by a veth pair (`eth0` in each) with
//! 192.0.2.0/24 and 2001:db8::/64 on it. The body runs on a thread inside namespace a; b
//! answers ARP and neighbour solicitations. (This machine's kernel has no 802.1Q support, so
//! VLAN interfaces are covered by the netlink parsing's unit tests and the packet fixtures.)

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{Netns, netns, privilege::require_root};
use lb_userspace::{
    admin::format_mac,
    neighbour::{
        NeighbourError, NeighbourStatus, Neighbours,
        events::{NeighbourEvents, Notification},
        interface_for,
    },
};

const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x4e, 0x42, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x4e, 0x42, 0x0b];
/// Operator-configured static entry for an address nobody owns.
const MAC_STATIC: [u8; 6] = [0x02, 0x00, 0x00, 0x4e, 0x42, 0x33];

const POLLS: u32 = 50;
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Upper bound on the whole body, so a hung netlink exchange fails instead of hanging CI.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

struct Pair {
    a: Netns,
    b: Netns,
}

impl Pair {
    fn build(prefix: &str) -> Pair {
        netns::remove_leftovers(prefix);
        let pair = Pair {
            a: Netns::create(&format!("{prefix}a")),
            b: Netns::create(&format!("{prefix}b")),
        };
        // Created from inside a, with the peer placed straight into b: never in the root.
        pair.a.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pair.b.name(),
        ]);
        for (ns, mac, v4, v6) in [
            (&pair.a, MAC_A, "192.0.2.1/24", "2001:db8::1/64"),
            (&pair.b, MAC_B, "192.0.2.2/24", "2001:db8::2/64"),
        ] {
            ns.ip(&["link", "set", "eth0", "address", &format_mac(&mac)]);
            ns.ip(&["addr", "add", v4, "dev", "eth0"]);
            ns.ip(&["addr", "add", v6, "dev", "eth0", "nodad"]);
            ns.ip(&["link", "set", "lo", "up"]);
            ns.ip(&["link", "set", "eth0", "up"]);
        }
        pair
    }

    /// `ip neigh show` for one address in namespace a.
    fn neigh_a(&self, addr: &str, dev: &str) -> String {
        self.a
            .ip(&["neigh", "show", addr, "dev", dev])
            .trim()
            .to_owned()
    }
}

/// Polls `resolved()` until `addr` shows up, at most `POLLS` times.
async fn wait_resolved(neighbours: &Neighbours, ifindex: u32, addr: IpAddr) -> Option<[u8; 6]> {
    for _ in 0..POLLS {
        let table = neighbours
            .resolved(ifindex)
            .await
            .unwrap_or_else(|e| panic!("resolved({ifindex}) while waiting for {addr}: {e}"));
        if let Some(mac) = table.get(&addr) {
            return Some(*mac);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    None
}

async fn body(pair: &Pair) {
    let neighbours = Neighbours::new().expect("opening a netlink socket in namespace a");
    let mut events = NeighbourEvents::subscribe().expect("subscribing to neighbour events");
    let v4_peer: IpAddr = "192.0.2.2".parse().unwrap();
    let v4_nobody: IpAddr = "192.0.2.99".parse().unwrap();
    let v4_static: IpAddr = "192.0.2.3".parse().unwrap();
    let v6_peer: IpAddr = "2001:db8::2".parse().unwrap();

    // interface(): index, MAC, MTU and addresses as `ip` sees them.
    let eth0 = neighbours
        .interface("eth0")
        .await
        .expect("interface(\"eth0\") in namespace a");
    assert_eq!(eth0.name, "eth0");
    assert_eq!(eth0.mac, MAC_A);
    assert_eq!((eth0.mtu, eth0.vlan, eth0.egress), (1500, None, eth0.index));
    for prefix in [
        ("192.0.2.1".parse().unwrap(), 24),
        ("2001:db8::1".parse().unwrap(), 64),
    ] {
        assert!(
            eth0.prefixes.contains(&prefix),
            "{prefix:?} missing from {:?}",
            eth0.prefixes
        );
    }
    let all = neighbours.interfaces().await.expect("interfaces()");
    assert_eq!(
        interface_for(v6_peer, &all).map(|i| i.index),
        Some(eth0.index)
    );

    // vlans_on(): there are none here.
    let vlans = neighbours
        .vlans_on(std::slice::from_ref(&eth0))
        .await
        .expect("vlans_on(eth0)");
    assert!(vlans.is_empty(), "{vlans:?}");

    // A missing interface is an error naming it; loopback has no MAC to rewrite from.
    match neighbours.interface("lbt-nope0").await {
        Err(error @ NeighbourError::NoSuchInterface { .. }) => {
            assert!(error.to_string().contains("lbt-nope0"), "{error}");
        }
        other => panic!("interface(\"lbt-nope0\"): expected NoSuchInterface, got {other:?}"),
    }
    match neighbours.interface("lo").await {
        Err(NeighbourError::NoMac { name, .. }) => assert_eq!(name, "lo"),
        other => panic!("interface(\"lo\"): expected NoMac, got {other:?}"),
    }

    // Nothing has talked to the peer yet, so only our request can resolve it; the
    // notification of it arrives as well.
    let before = neighbours
        .resolved(eth0.index)
        .await
        .expect("resolved() before");
    assert!(!before.contains_key(&v4_peer), "{before:?}");
    let started = Instant::now();
    neighbours
        .trigger_resolution(eth0.index, v4_peer)
        .await
        .expect("trigger_resolution(192.0.2.2)");
    assert_eq!(
        wait_resolved(&neighbours, eth0.index, v4_peer).await,
        Some(MAC_B),
        "192.0.2.2 after {:?}; kernel says: {:?}",
        started.elapsed(),
        pair.neigh_a("192.0.2.2", "eth0")
    );
    let notified = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.next().await {
                Some(Notification::Neighbour(observation))
                    if observation.addr == v4_peer
                        && matches!(observation.state, NeighbourStatus::Usable { .. }) =>
                {
                    return observation;
                }
                Some(_) => continue,
                None => panic!("the notification socket closed"),
            }
        }
    })
    .await
    .expect("a notification that 192.0.2.2 resolved");
    assert_eq!(notified.ifindex, eth0.index);
    assert_eq!(
        notified.state,
        NeighbourStatus::Usable {
            mac: MAC_B,
            stale: false
        }
    );
    // Triggering an entry that exists is not an error.
    neighbours
        .trigger_resolution(eth0.index, v4_peer)
        .await
        .expect("trigger_resolution(192.0.2.2) again");

    // Nobody owns 192.0.2.99: INCOMPLETE, then FAILED once the kernel gives up, as both the
    // table and the notifications say.
    neighbours
        .trigger_resolution(eth0.index, v4_nobody)
        .await
        .expect("trigger_resolution(192.0.2.99)");
    let failed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Notification::Neighbour(observation)) = events.next().await
                && observation.addr == v4_nobody
                && observation.state == NeighbourStatus::Failed
            {
                return;
            }
        }
    })
    .await;
    assert!(
        failed.is_ok(),
        "no FAILED notification; kernel says {:?}",
        pair.neigh_a("192.0.2.99", "eth0")
    );
    let observed = neighbours
        .observations(eth0.index)
        .await
        .expect("observations()");
    let nobody = observed.iter().find(|o| o.addr == v4_nobody);
    assert_eq!(
        nobody.map(|o| o.state),
        Some(NeighbourStatus::Failed),
        "{observed:?}"
    );

    // An operator's PERMANENT entry survives a trigger (NTF_USE alone would demote it).
    pair.a.ip(&[
        "neigh",
        "add",
        "192.0.2.3",
        "lladdr",
        &format_mac(&MAC_STATIC),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    neighbours
        .trigger_resolution(eth0.index, v4_static)
        .await
        .expect("trigger_resolution(192.0.2.3)");
    let shown = pair.neigh_a("192.0.2.3", "eth0");
    assert!(
        shown.contains("PERMANENT"),
        "192.0.2.3 is no longer permanent: {shown:?}"
    );
    let table = neighbours.resolved(eth0.index).await.expect("resolved()");
    assert_eq!(table.get(&v4_static), Some(&MAC_STATIC), "table: {table:?}");

    // IPv6: neighbour solicitation, sent by the kernel likewise.
    neighbours
        .trigger_resolution(eth0.index, v6_peer)
        .await
        .expect("trigger_resolution(2001:db8::2)");
    assert_eq!(
        wait_resolved(&neighbours, eth0.index, v6_peer).await,
        Some(MAC_B)
    );

    // Only unicast MACs, only this interface.
    let table = neighbours
        .resolved(eth0.index)
        .await
        .expect("final resolved()");
    assert!(!table.contains_key(&v4_nobody), "table: {table:?}");
    assert!(table.keys().all(|addr| !addr.is_multicast()), "{table:?}");
    let other = neighbours
        .resolved(eth0.index + 1000)
        .await
        .expect("unused ifindex");
    assert!(other.is_empty(), "entries on an unused ifindex: {other:?}");

    // The XDP attachment as the kernel reports it: none yet, then generic mode.
    assert_eq!(neighbours.xdp_attachment(eth0.index).await.unwrap(), None);
    let mut ebpf = aya::Ebpf::load(lb_userspace::EBPF_OBJECT).expect("loading the object");
    let program: &mut aya::programs::Xdp = ebpf
        .program_mut(lb_userspace::PROGRAM_PASS)
        .unwrap()
        .try_into()
        .unwrap();
    program.load().unwrap();
    program
        .attach("eth0", aya::programs::XdpMode::Skb)
        .expect("attaching xdp_pass in generic mode");
    let id = program.info().unwrap().id();
    let attachment = neighbours.xdp_attachment(eth0.index).await.unwrap();
    assert_eq!(
        attachment.map(|a| (a.mode, a.program_id)),
        Some(("generic", id))
    );
    drop(ebpf);
}

#[test]
fn netlink_access_in_a_namespace_pair() {
    if !require_root("netlink_access_in_a_namespace_pair") {
        return;
    }
    let pair = Pair::build(&format!("lbt-nb-{}-", std::process::id()));
    pair.a.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime");
        runtime.block_on(async {
            tokio::time::timeout(BODY_TIMEOUT, body(&pair))
                .await
                .unwrap_or_else(|_| panic!("test body took longer than {BODY_TIMEOUT:?}"));
        });
    });
}
