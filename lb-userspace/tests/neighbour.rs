//! Privileged: `Neighbours` against a real kernel neighbour table.
//!
//! Builds two namespaces, `lbt-nb-<pid>-a` and `-b`, joined by a veth pair (`eth0` in each)
//! with 192.0.2.0/24 and 2001:db8::/64 on it. The test body runs in a thread that has joined
//! namespace a, so its netlink socket sees a's tables; b answers ARP and neighbour
//! solicitations. Nothing is created in the root namespace, and the namespaces are removed
//! by a guard even if the test panics.

use std::{
    ffi::CString,
    net::IpAddr,
    process::Command,
    time::{Duration, Instant},
};

use lb_userspace::neighbour::{NeighbourError, Neighbours, interface_for};

const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x4e, 0x42, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x4e, 0x42, 0x0b];
/// Operator-configured static entry for an address nobody owns.
const MAC_STATIC: [u8; 6] = [0x02, 0x00, 0x00, 0x4e, 0x42, 0x33];

const POLLS: u32 = 50;
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Upper bound on the whole body, so a hung netlink exchange fails instead of hanging CI.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

fn mac_str(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn ip(args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `ip {}`: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Two namespaces joined by a veth pair; removed on drop.
struct Topology {
    a: String,
    b: String,
}

impl Topology {
    fn build() -> Self {
        let pid = std::process::id();
        let topology = Topology {
            a: format!("lbt-nb-{pid}-a"),
            b: format!("lbt-nb-{pid}-b"),
        };
        let (a, b) = (topology.a.as_str(), topology.b.as_str());
        // The guard exists before the first namespace, so a failing step still cleans up.
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        // Created from inside a, with the peer placed straight into b: never in the root.
        ip(&[
            "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b,
        ]);
        for (ns, mac, v4, v6) in [
            (a, MAC_A, "192.0.2.1/24", "2001:db8::1/64"),
            (b, MAC_B, "192.0.2.2/24", "2001:db8::2/64"),
        ] {
            ip(&["-n", ns, "link", "set", "eth0", "address", &mac_str(mac)]);
            ip(&["-n", ns, "addr", "add", v4, "dev", "eth0"]);
            ip(&["-n", ns, "addr", "add", v6, "dev", "eth0", "nodad"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        topology
    }

    /// `ip neigh show` for one address in namespace a.
    fn neigh_a(&self, addr: &str) -> String {
        ip(&["-n", &self.a, "neigh", "show", addr, "dev", "eth0"])
            .trim()
            .to_owned()
    }

    fn ifindex_a(&self) -> u32 {
        // `2: eth0@if2: <BROADCAST,...`
        let line = ip(&["-n", &self.a, "-o", "link", "show", "dev", "eth0"]);
        line.split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex in `ip link show`: {line:?}"))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            // Best effort: the namespace may not have been created.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Moves the calling thread into the named namespace.
fn enter_netns(name: &str) {
    let path = CString::new(format!("/run/netns/{name}")).expect("namespace path has no NUL");
    // SAFETY: a valid NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(
        fd >= 0,
        "opening /run/netns/{name}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is an open namespace descriptor; setns only affects this thread.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    let error = std::io::Error::last_os_error();
    // SAFETY: fd is ours and not used afterwards.
    unsafe { libc::close(fd) };
    assert_eq!(rc, 0, "setns into {name}: {error}");
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

async fn body(topology: &Topology) {
    let neighbours = Neighbours::new().expect("opening a netlink socket in namespace a");
    let v4_peer: IpAddr = "192.0.2.2".parse().unwrap();
    let v4_nobody: IpAddr = "192.0.2.99".parse().unwrap();
    let v4_static: IpAddr = "192.0.2.3".parse().unwrap();
    let v6_peer: IpAddr = "2001:db8::2".parse().unwrap();

    // interface(): index, MAC and addresses as `ip` sees them.
    let eth0 = neighbours
        .interface("eth0")
        .await
        .expect("interface(\"eth0\") in namespace a");
    assert_eq!(eth0.name, "eth0");
    assert_eq!(
        eth0.index,
        topology.ifindex_a(),
        "ifindex of eth0 in {}",
        topology.a
    );
    assert_eq!(eth0.mac, MAC_A, "MAC of eth0 in {}", topology.a);
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
    assert_eq!(
        interface_for(v4_peer, std::slice::from_ref(&eth0)).map(|i| i.index),
        Some(eth0.index)
    );
    let all = neighbours
        .interfaces()
        .await
        .expect("interfaces() in namespace a");
    assert_eq!(
        interface_for(v6_peer, &all),
        Some(&eth0),
        "interfaces(): {all:?}"
    );
    println!("interface: {eth0:?}");

    // A missing interface is an error naming it.
    match neighbours.interface("lbt-nope0").await {
        Err(error @ NeighbourError::NoSuchInterface { .. }) => {
            assert!(
                error.to_string().contains("lbt-nope0"),
                "error does not name it: {error}"
            );
        }
        other => panic!("interface(\"lbt-nope0\"): expected NoSuchInterface, got {other:?}"),
    }

    // Loopback has no MAC to rewrite from.
    match neighbours.interface("lo").await {
        Err(NeighbourError::NoMac { name, .. }) => assert_eq!(name, "lo"),
        other => panic!("interface(\"lo\"): expected NoMac, got {other:?}"),
    }

    // Nothing has talked to the peer yet, so only our trigger can resolve it.
    let before = neighbours
        .resolved(eth0.index)
        .await
        .expect("resolved() before triggering");
    assert!(
        !before.contains_key(&v6_peer),
        "2001:db8::2 resolved before any trigger: {before:?}"
    );
    assert!(
        !before.contains_key(&v4_peer),
        "192.0.2.2 resolved before any trigger: {before:?}"
    );

    let started = Instant::now();
    neighbours
        .trigger_resolution(eth0.index, v4_peer)
        .await
        .expect("trigger_resolution(192.0.2.2)");
    let mac = wait_resolved(&neighbours, eth0.index, v4_peer).await;
    assert_eq!(
        mac,
        Some(MAC_B),
        "192.0.2.2 after {:?}; kernel says: {:?}",
        started.elapsed(),
        topology.neigh_a("192.0.2.2")
    );
    println!(
        "192.0.2.2 resolved in {:?}: {}",
        started.elapsed(),
        topology.neigh_a("192.0.2.2")
    );
    // Triggering an entry that exists is not an error.
    neighbours
        .trigger_resolution(eth0.index, v4_peer)
        .await
        .expect("trigger_resolution(192.0.2.2) again, entry exists");

    // Nobody owns 192.0.2.99: triggering works (twice, the second time on the INCOMPLETE
    // entry the first made) but nothing resolves.
    for attempt in 1..=2 {
        neighbours
            .trigger_resolution(eth0.index, v4_nobody)
            .await
            .unwrap_or_else(|e| panic!("trigger_resolution(192.0.2.99), attempt {attempt}: {e}"));
    }
    assert_eq!(
        wait_resolved(&neighbours, eth0.index, v4_nobody).await,
        None,
        "192.0.2.99 resolved; kernel says: {:?}",
        topology.neigh_a("192.0.2.99")
    );
    println!("192.0.2.99 unresolved: {}", topology.neigh_a("192.0.2.99"));

    // An operator's PERMANENT entry survives a trigger (NTF_USE alone would demote it).
    ip(&[
        "-n",
        &topology.a,
        "neigh",
        "add",
        "192.0.2.3",
        "lladdr",
        &mac_str(MAC_STATIC),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    neighbours
        .trigger_resolution(eth0.index, v4_static)
        .await
        .expect("trigger_resolution(192.0.2.3)");
    let shown = topology.neigh_a("192.0.2.3");
    assert!(
        shown.contains("PERMANENT"),
        "192.0.2.3 is no longer permanent: {shown:?}"
    );
    let table = neighbours
        .resolved(eth0.index)
        .await
        .expect("resolved() after the static entry");
    assert_eq!(table.get(&v4_static), Some(&MAC_STATIC), "table: {table:?}");

    // IPv6: neighbour solicitation, sent by the kernel likewise.
    neighbours
        .trigger_resolution(eth0.index, v6_peer)
        .await
        .expect("trigger_resolution(2001:db8::2)");
    assert_eq!(
        wait_resolved(&neighbours, eth0.index, v6_peer).await,
        Some(MAC_B),
        "2001:db8::2; kernel says: {:?}",
        topology.neigh_a("2001:db8::2")
    );
    println!("2001:db8::2 resolved: {}", topology.neigh_a("2001:db8::2"));

    // Every entry resolved() returns belongs to the interface and has a usable state.
    let table = neighbours
        .resolved(eth0.index)
        .await
        .expect("final resolved()");
    assert_eq!(table.get(&v4_peer), Some(&MAC_B));
    assert!(!table.contains_key(&v4_nobody), "table: {table:?}");
    // The NOARP entries the kernel keeps for multicast destinations it sends to (MLD
    // reports, solicitations) are left out: no real has a multicast MAC.
    assert!(
        table.keys().all(|addr| !addr.is_multicast()),
        "multicast entries in resolved(): {table:?}"
    );
    let other = neighbours
        .resolved(eth0.index + 1000)
        .await
        .expect("resolved() on an unused ifindex");
    assert!(other.is_empty(), "entries on an unused ifindex: {other:?}");
}

#[test]
fn resolves_real_macs_in_a_namespace_pair() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var_os("CI").is_some() {
            panic!("needs root; CI runs as root");
        }
        // Straight to the stderr handle: the harness captures `eprintln!` of passing tests.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipping resolves_real_macs_in_a_namespace_pair: needs root (creates network namespaces)\n",
        );
        return;
    }
    let topology = Topology::build();
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(&topology.a);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building a tokio runtime");
                runtime.block_on(async {
                    tokio::time::timeout(BODY_TIMEOUT, body(&topology))
                        .await
                        .unwrap_or_else(|_| panic!("test body took longer than {BODY_TIMEOUT:?}"));
                });
            })
            .join()
    });
    drop(topology);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
