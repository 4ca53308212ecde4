//! `lbadm dump` end to end, through the real binaries: `lbd` balancing a NAT service (VIP:80
//! to a real's 8080, the real routing its replies back through the balancer), `lbadm dump`
//! with `--socket` capturing while the client makes a TCP connection. The pcap file holds
//! that connection's packets as they left the program (to the real; back to the client from
//! the VIP); the line output shows verdict and real; Ctrl-C ends it cleanly; one capture at
//! a time; a dump outlives its capture's lease (lbd pushes the expiry on); a capture a
//! crashed lbd left armed is turned off by the next, even by a start that fails; the replies
//! show as OutPkts in `lbadm -L -n --stats`. Needs root.

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use lb_common::capture::{CAPTURE_SNAP_LEN, Capture, MAP_CAPTURE};
use lb_tests::{
    DrTopology, VIP,
    http::{HttpClient, HttpServer},
    lbd::{Lbd, binary},
    netns,
    privilege::require_root,
    topology::{CLIENT_IP, modes::any_address, real_ip, real_mac},
};
use lb_userspace::{admin::monotonic_now_ns, dataplane::capture::LEASE, lbadm::dump::pcap};

const TIMEOUT: Duration = Duration::from_secs(10);
const REAL_PORT: u16 = 8080;
/// A connection's handshake, request and answer: at least the SYN, the ACK and the request
/// from the client, the SYN-ACK and the answer from the real.
const PACKETS: usize = 5;

fn config() -> String {
    format!(
        "interfaces:\n  - {{name: eth0, xdp_mode: native}}\n\
         services:\n  - {{vip: {VIP}, port: 80, protocol: tcp, scheduler: rr, forward: nat, \
         reals: [{{address: {}, port: {REAL_PORT}}}]}}\n\
         limits: {{flows: 4096, services: 8, reals: 16}}\n",
        real_ip(0)
    )
}

/// `lbadm dump ARGS --socket SOCKET`, killed on drop if still running; its stderr lines come
/// through a channel (it says there when the capture is armed).
struct DumpProcess {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl DumpProcess {
    fn start(socket: &Path, args: &[&str]) -> DumpProcess {
        let mut child = Command::new(binary("lbadm"))
            .arg("dump")
            .args(args)
            .arg("--socket")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running lbadm dump");
        let (lines, stderr) = mpsc::channel();
        let from = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        DumpProcess {
            child,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a stderr line containing `text`.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.seen.iter().any(|line| line.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("lbadm dump never said {text:?}: {:?}", self.seen),
            }
        }
    }

    /// Waits (bounded) for it to exit; its stdout, stderr lines and whether it succeeded.
    fn finish(mut self) -> (String, Vec<String>, bool) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "lbadm dump still running after {TIMEOUT:?}: {:?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut stdout).unwrap();
        // The reader thread ends with the pipe.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(line);
        }
        (stdout, std::mem::take(&mut self.seen), status.success())
    }
}

impl Drop for DumpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection from the client: a request, its answer (the real's name), closed.
fn one_connection(topology: &DrTopology, lbd: &Lbd) -> SocketAddr {
    let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
    let mut connection = topology
        .client
        .run(|| HttpClient::connect(vip, TIMEOUT))
        .unwrap_or_else(|e| panic!("connecting to {vip}: {e}\n{}", lbd.log()));
    let name = connection
        .get("/")
        .unwrap_or_else(|e| panic!("GET / from {vip}: {e}\n{}", lbd.log()));
    assert_eq!(name.trim_end(), "nat-a");
    connection.local_addr().unwrap()
}

/// The capture entry in the pinned map, as the program reads it.
fn pinned_capture(lbd: &Lbd) -> Capture {
    let path = lbd.pin_dir().join(MAP_CAPTURE);
    let data = aya::maps::MapData::from_pin(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let map: aya::maps::Array<_, Capture> =
        aya::maps::Array::try_from(aya::maps::Map::Array(data)).unwrap();
    map.get(&0, 0).unwrap()
}

/// IPv4 source and destination, TCP ports and flags of an untagged Ethernet frame.
fn tcp_of(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16, u8) {
    let ip = &frame[14..];
    assert_eq!(ip[9], 6, "not TCP: {frame:02x?}");
    let tcp = &ip[usize::from(ip[0] & 0x0f) * 4..];
    let address = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    let port = |at: usize| u16::from_be_bytes([tcp[at], tcp[at + 1]]);
    (address(12), port(0), address(16), port(2), tcp[13])
}

#[test]
fn lbadm_dump_shows_a_connections_packets_with_verdict_and_real() {
    if !require_root("e2e_dump") {
        return;
    }
    let prefix = format!("lbdump-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["nat-a"]);
    topology.attach_pass_program();
    topology.make_nat_real("nat-a");
    let _server = HttpServer::start(topology.real("nat-a"), any_address(REAL_PORT), "nat-a");
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbdump-{}", std::process::id()),
        &config(),
    );
    let service = format!("{VIP}:80");

    // A missing service is refused, naming it.
    let missing = Command::new(binary("lbadm"))
        .args(["dump", "-t", &format!("{VIP}:81"), "--socket"])
        .arg(lbd.socket())
        .output()
        .unwrap();
    assert_eq!(
        missing.status.code(),
        Some(255),
        "refused by lbd: ipvsadm's 255"
    );
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains(&format!("No such service: -t {VIP}:81")),
        "{said}"
    );

    // -c and -w: the first packets of one connection, in a pcap file.
    let dir = tempdir(&prefix);
    let file = dir.join("dump.pcap");
    let mut dump = DumpProcess::start(
        lbd.socket(),
        &[
            "-t",
            &service,
            "-c",
            &PACKETS.to_string(),
            "-w",
            file.to_str().unwrap(),
        ],
    );
    dump.wait_for("capturing");
    let client = one_connection(&topology, &lbd);
    let (stdout, stderr, success) = dump.finish();
    assert!(success, "lbadm dump failed: {stderr:?}\n{}", lbd.log());
    assert_eq!(stdout, "", "nothing printed with -w");
    assert!(
        stderr
            .iter()
            .any(|line| line.contains(&format!("{PACKETS} packets captured"))),
        "{stderr:?}"
    );
    let pcap = pcap::read(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        (pcap.snap_len, pcap.link_type),
        (CAPTURE_SNAP_LEN as u32, 1)
    );
    assert_eq!(pcap.records.len(), PACKETS, "{pcap:?}");
    let real = real_ip(0);
    let (mut to_real, mut to_client) = (0, 0);
    for record in &pcap.records {
        let (src, sport, dst, dport, _) = tcp_of(&record.data);
        if (src, sport, dst, dport) == (CLIENT_IP, client.port(), real, REAL_PORT) {
            // Rewritten for the real, and sent to its MAC.
            assert_eq!(record.data[0..6], real_mac(0), "{record:?}");
            to_real += 1;
        } else if (src, sport, dst, dport) == (VIP, 80, CLIENT_IP, client.port()) {
            to_client += 1;
        } else {
            panic!("a packet of another flow: {src}:{sport} > {dst}:{dport}");
        }
        assert_eq!(
            record.frame_len as usize,
            record.data.len(),
            "small frames, whole"
        );
    }
    let (_, _, _, _, flags) = tcp_of(&pcap.records[0].data);
    assert_eq!(flags, 0x02, "the SYN comes first");
    assert!(
        to_real >= 3 && to_client >= 2,
        "{to_real} to the real, {to_client} back"
    );

    // The line output, until Ctrl-C; meanwhile a second capture is refused.
    let mut dump = DumpProcess::start(lbd.socket(), &["-t", &service]);
    dump.wait_for("capturing");
    let refused = Command::new(binary("lbadm"))
        .args(["dump", "--socket"])
        .arg(lbd.socket())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("a capture is already running"),
        "{refused:?}"
    );
    assert_eq!(
        refused.status.code(),
        Some(255),
        "refused by lbd: ipvsadm's 255"
    );
    // A dump longer than the capture's lease: lbd pushes the expiry on while it runs.
    std::thread::sleep(LEASE + Duration::from_secs(1));
    let armed = pinned_capture(&lbd);
    assert!(
        armed.session != 0 && armed.expires_ns > monotonic_now_ns(),
        "{armed:?}"
    );
    let client = one_connection(&topology, &lbd);
    // The packets have gone through the program by the time the answer is in; give the
    // capture a moment to hand them over.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill with a pid we own and have not reaped.
    unsafe { libc::kill(dump.child.id() as libc::pid_t, libc::SIGINT) };
    let (stdout, stderr, success) = dump.finish();
    assert!(success, "{stderr:?}");
    assert!(
        stderr.iter().any(|line| line.contains("(interrupted)")),
        "{stderr:?}"
    );
    eprintln!("lbadm dump -t {service} printed:\n{stdout}");
    let syn = format!(
        " eth0 tx forwarded_tx TCP {VIP}:80 real {real}:{REAL_PORT}: IP {CLIENT_IP}.{} > \
         {real}.{REAL_PORT}: Flags [S], seq ",
        client.port()
    );
    assert!(
        stdout.lines().any(|line| line.contains(&syn)),
        "{syn:?} not in:\n{stdout}"
    );
    let reply = format!(
        " eth0 tx forwarded_reply TCP {VIP}:80 real {real}:{REAL_PORT}: IP {VIP}.80 > {CLIENT_IP}.{}: Flags [S.]",
        client.port()
    );
    assert!(
        stdout.lines().any(|line| line.contains(&reply)),
        "{reply:?} not in:\n{stdout}"
    );
    assert_eq!(
        pinned_capture(&lbd).session,
        0,
        "Ctrl-C turned the capture off"
    );

    // The replies are the service's and the real's outgoing packets.
    let json: serde_json::Value =
        serde_json::from_str(&lbd.lbadm(&["-L", "-n", "--stats", "-o", "json"])).unwrap();
    let service_stats = &json["services"][0]["stats"];
    let real_stats = &json["services"][0]["reals"][0]["stats"];
    for stats in [service_stats, real_stats] {
        assert!(stats["out_packets"].as_u64().unwrap() >= 4, "{json:#}");
        assert!(stats["out_bytes"].as_u64().unwrap() > 0, "{json:#}");
        assert!(stats["in_packets"].as_u64().unwrap() >= 6, "{json:#}");
    }

    // A capture left armed by a daemon that died is turned off by the next one, first thing:
    // even when that one's start fails (here, on an interface that does not exist).
    let path = lbd.pin_dir().join(MAP_CAPTURE);
    let data = aya::maps::MapData::from_pin(&path).unwrap();
    let mut map: aya::maps::Array<_, Capture> =
        aya::maps::Array::try_from(aya::maps::Map::Array(data)).unwrap();
    lbd.stop_with(libc::SIGKILL);
    let left = Capture {
        session: 5,
        expires_ns: u64::MAX,
        ..Capture::default()
    };
    map.set(0, left, 0).unwrap();
    lbd.edit_config("name: eth0", "name: lbdump-none0");
    let log = dir.join("failing-lbd.log");
    let mut failing = Command::new(binary("lbd"));
    failing
        .arg("--config")
        .arg(lbd.config_path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut failing = topology.lb.spawn(failing);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = failing.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = failing.kill();
            let _ = failing.wait();
            panic!("lbd on a missing interface still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{said}");
    assert!(said.contains("left armed"), "{said}");
    assert_eq!(pinned_capture(&lbd).session, 0);
    // And by the start that goes on to load the program.
    lbd.edit_config("name: lbdump-none0", "name: eth0");
    map.set(0, left, 0).unwrap();
    lbd.restart(&topology.lb);
    assert_eq!(pinned_capture(&lbd).session, 0);
    assert!(lbd.log().contains("left armed"), "{}", lbd.log());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A directory for the test's files, named by its prefix.
fn tempdir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}files"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
