//! What the HA tests share: a balancer pair's config, waiting for VRRP states, long-lived
//! connections that must survive a failover, and a bounded request loop that counts failures.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lb_userspace::admin::RouterStatus;

use crate::{
    VIP,
    http::{self, HttpClient},
    lbd::Lbd,
    netns::Netns,
};

/// The VRRP side of a balancer's config: one router (for [`VIP`], or the addresses given to
/// [`Pair::config_with`]), and sync with `sync_peer` when given.
pub struct Pair {
    pub priority: u8,
    pub advert: Duration,
    /// `None`: multicast.
    pub unicast_peer: Option<Ipv4Addr>,
    pub sync_peer: Option<Ipv4Addr>,
    pub preempt: bool,
}

impl Pair {
    /// A whole balancer config body (for [`Lbd::start`]): one DR service on the VIP with rr
    /// over `reals` (so a flow the new master did not know would go to another real and be
    /// reset), and the router.
    pub fn config(&self, reals: &[Ipv4Addr], extra: &str) -> String {
        let reals: String = reals
            .iter()
            .map(|real| format!("      - {{address: {real}}}\n"))
            .collect();
        let service = format!(
            "  - vip: {VIP}
    port: 80
    protocol: tcp
    scheduler: rr
    reals:
{reals}"
        );
        self.config_with(&service, &[VIP], extra)
    }

    /// A whole balancer config body with `services` (the items of the `services:` list, as
    /// YAML), and one router for `virtual_addresses` (each a /32 or /128, all of one family:
    /// the router's), the first of which is the VIP of the router's services.
    pub fn config_with<Address: Into<IpAddr> + Copy>(
        &self,
        services: &str,
        virtual_addresses: &[Address],
        extra: &str,
    ) -> String {
        let virtual_addresses = virtual_addresses
            .iter()
            .map(|address| match (*address).into() {
                IpAddr::V4(address) => format!("{address}/32"),
                IpAddr::V6(address) => format!("{address}/128"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let unicast = self
            .unicast_peer
            .map(|peer| format!("    unicast_peers: [{peer}]\n"))
            .unwrap_or_default();
        let sync = self
            .sync_peer
            .map(|peer| format!("sync: {{peer: {peer}, port: 8849}}\n"))
            .unwrap_or_default();
        format!(
            "interfaces:
  - name: eth0
    xdp_mode: native
services:
{services}limits: {{flows: 1048576, services: 16, reals: 64}}
vrrp:
  - name: VI_1
    interface: eth0
    vrid: 51
    priority: {}
    advert_interval: {}ms
    preempt: {}
    virtual_addresses: [{virtual_addresses}]
{unicast}{extra}{sync}",
            self.priority,
            self.advert.as_millis(),
            self.preempt,
        )
    }
}

/// The first router's status, if the daemon answers.
pub fn router(lbd: &Lbd) -> Option<RouterStatus> {
    routers(lbd).into_iter().next()
}

/// The router named `name`'s status, if the daemon answers.
pub fn router_named(lbd: &Lbd, name: &str) -> Option<RouterStatus> {
    routers(lbd).into_iter().find(|router| router.name == name)
}

/// Every router's status (none if the daemon does not answer).
fn routers(lbd: &Lbd) -> Vec<RouterStatus> {
    use lb_userspace::admin::{self, Reply, Request};
    match admin::request(lbd.socket(), &Request::Status) {
        Ok(Reply::Status(status)) => status.vrrp,
        _ => Vec::new(),
    }
}

pub fn state(lbd: &Lbd) -> String {
    router(lbd).map_or_else(|| "no answer".to_owned(), |router| router.state)
}

/// Polls (every 5 ms, at most `limit`) until the first router is in `wanted`; returns how
/// long it took.
pub fn wait_for_state(lbd: &Lbd, wanted: &str, limit: Duration) -> Duration {
    wait_until_in(lbd, "router", wanted, limit, || state(lbd))
}

/// [`wait_for_state`] for the router named `name`.
pub fn wait_for_named_state(lbd: &Lbd, name: &str, wanted: &str, limit: Duration) -> Duration {
    wait_until_in(lbd, name, wanted, limit, || {
        router_named(lbd, name).map_or_else(|| "no answer".to_owned(), |router| router.state)
    })
}

fn wait_until_in(
    lbd: &Lbd,
    which: &str,
    wanted: &str,
    limit: Duration,
    state: impl Fn() -> String,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = state();
        if now == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{which} still {now} after {limit:?}, not {wanted}:\n{}",
            lbd.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) until the daemon's sync status says it holds a full copy with at least
/// `flows` flows received.
pub fn wait_for_copy(lbd: &Lbd, flows: u64, limit: Duration) {
    use lb_userspace::admin::{self, Reply, Request};
    let started = Instant::now();
    loop {
        if let Ok(Reply::Status(status)) = admin::request(lbd.socket(), &Request::Status)
            && let Some(sync) = status.sync
        {
            if sync.complete && sync.flows_received >= flows {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "no full copy of {flows} flows after {limit:?}: {sync:?}\n{}",
                lbd.log()
            );
        }
        assert!(started.elapsed() < limit, "no sync status after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kept-alive connections to the VIP, each with the real that answered its first request.
pub struct LongLived {
    connections: Vec<(HttpClient, String)>,
}

impl LongLived {
    pub fn open(client: &Netns, count: usize, timeout: Duration) -> LongLived {
        let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
        let connections = client.run(|| {
            (0..count)
                .map(|index| {
                    let mut connection = HttpClient::connect(vip, timeout)
                        .unwrap_or_else(|e| panic!("long-lived connection {index}: {e}"));
                    let real = connection
                        .get("/")
                        .unwrap_or_else(|e| panic!("long-lived connection {index}: {e}"));
                    (connection, real)
                })
                .collect()
        });
        LongLived { connections }
    }

    pub fn len(&self) -> usize {
        self.connections.len()
    }

    /// The connections, each with the real that answered its first request, for a caller
    /// that checks them its own way.
    pub fn into_connections(self) -> Vec<(HttpClient, String)> {
        self.connections
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// One request on every connection: the descriptions of those that broke (an error, or
    /// another real answering).
    pub fn check(&mut self) -> Vec<String> {
        let mut broken = Vec::new();
        for (index, (connection, real)) in self.connections.iter_mut().enumerate() {
            let port = connection.local_addr().map_or(0, |address| address.port());
            match connection.get("/") {
                Ok(body) if body == *real => {}
                Ok(body) => broken.push(format!(
                    "connection {index} (port {port}): answered by {} instead of {}",
                    body.trim(),
                    real.trim()
                )),
                Err(error) => broken.push(format!("connection {index} (port {port}): {error}")),
            }
        }
        broken
    }

    /// Panics, naming them, if any connection broke ([`LongLived::check_at_once`]) `when`.
    pub fn assert_none_broke(&mut self, when: &str) {
        let broken = self.check_at_once();
        assert!(
            broken.is_empty(),
            "{} of {} long-lived connections broke {when}: {broken:#?}",
            broken.len(),
            self.len()
        );
    }

    /// [`LongLived::check`] with every connection's request at once, each on a thread of its
    /// own: when connections hang, the check takes one timeout rather than one per connection.
    pub fn check_at_once(&mut self) -> Vec<String> {
        std::thread::scope(|scope| {
            let checks: Vec<_> = self
                .connections
                .iter_mut()
                .enumerate()
                .map(|(index, (connection, real))| {
                    scope.spawn(move || {
                        let port = connection.local_addr().map_or(0, |address| address.port());
                        match connection.get("/") {
                            Ok(body) if body == *real => None,
                            Ok(body) => Some(format!(
                                "connection {index} (port {port}): answered by {} instead of {}",
                                body.trim(),
                                real.trim()
                            )),
                            Err(error) => {
                                Some(format!("connection {index} (port {port}): {error}"))
                            }
                        }
                    })
                })
                .collect();
            checks
                .into_iter()
                .filter_map(|check| check.join().expect("a connection's check"))
                .collect()
        })
    }
}

/// Requests on fresh connections every `every` until stopped (at most `limit` requests),
/// counting those that failed.
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl RequestLoop {
    pub fn start(client: &Netns, every: Duration, limit: usize) -> RequestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (stop_flag, ok_count, failed_count) = (stop.clone(), ok.clone(), failed.clone());
        let thread = client.spawn_thread(move || {
            let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
            let mut errors = Vec::new();
            for _ in 0..limit {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                match http::get(vip, "/", Duration::from_secs(3)) {
                    Ok(_) => {
                        ok_count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(error) => {
                        failed_count.fetch_add(1, Ordering::SeqCst);
                        if errors.len() < 10 {
                            errors.push(error.to_string());
                        }
                    }
                }
                std::thread::sleep(every);
            }
            errors
        });
        RequestLoop {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    /// (requests that succeeded, failed) so far, the loop going on.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }

    /// Stops the loop: (requests that succeeded, failed, the first errors).
    pub fn stop(mut self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self
            .thread
            .take()
            .map(|thread| thread.join().expect("request loop"))
            .unwrap_or_default();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An IPv4 VRRP advert as a whole Ethernet frame from `source` (MAC `source_mac`) to
/// `destination` (the multicast group, or a peer at `destination_mac`), with `ttl`; the VRRP
/// checksum broken when `corrupt` (the IPv4 header's is always right).
pub fn advert_frame(
    source_mac: [u8; 6],
    source: Ipv4Addr,
    destination_mac: [u8; 6],
    destination: Ipv4Addr,
    ttl: u8,
    advert: &lb_userspace::vrrp::packet::Advert,
    corrupt: bool,
) -> Vec<u8> {
    let mut payload = advert.emit(IpAddr::V4(source), IpAddr::V4(destination));
    if corrupt {
        payload[6] ^= 0x01;
    }
    let mut frame = Vec::with_capacity(14 + 20 + payload.len());
    frame.extend_from_slice(&destination_mac);
    frame.extend_from_slice(&source_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + payload.len()) as u16;
    let mut header = [0u8; 20];
    header[0] = 0x45;
    header[1] = 0xc0;
    header[2..4].copy_from_slice(&total.to_be_bytes());
    header[8] = ttl;
    header[9] = lb_userspace::vrrp::packet::IPPROTO_VRRP;
    header[12..16].copy_from_slice(&source.octets());
    header[16..20].copy_from_slice(&destination.octets());
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    header[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&payload);
    frame
}

/// A hook script that appends its arguments, one call per line, to `log`.
pub fn hook_script(dir: &std::path::Path, log: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("hook.sh");
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .expect("writing the hook");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Waits (bounded) until `log` has a line equal to `line`.
pub fn wait_for_line(log: &std::path::Path, line: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|written| written == line) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "no line {line:?} in {} after {limit:?}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Prints a measured figure straight to stderr, so it shows in the test's output even when
/// the test passes.
pub fn report(what: &str, took: Duration) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{what}: {took:?}");
}
