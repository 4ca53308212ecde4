//! `lbadm dump` against a daemon on a temporary socket, with the in-memory data plane and a
//! fake capture: the filter resolved from `-t/-u/-r` (and refused, in ipvsadm's words), the
//! packets printed or written to a pcap file, one capture at a time, and the capture turned
//! off when its count is reached, its client goes (not when it is only done writing), its
//! client stops reading, or lbd stops. No root.

use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr, Shutdown},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser as _;
use lb_common::Reason;
use lb_userspace::{
    admin::{self, AdminContext},
    config,
    daemon::{self, Daemon},
    dataplane::{
        FakeDataplane, FakeReader,
        capture::{CaptureFilter, CapturedPacket, FakeCapturer},
    },
    lbadm::{
        Cli, Failure, Verb,
        dump::{self, DumpArgs},
    },
    neighbour::{InterfaceInfo, Routes},
    reconcile::Desired,
};

const CONFIG: &str = "
instance: dump-test
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.100, port: 80, protocol: tcp, scheduler: wrr, forward: nat,
     reals: [{address: 192.0.2.11, port: 8080}, {address: 192.0.2.12, port: 8080}]}
  - {vip: 192.0.2.100, port: 53, protocol: udp, scheduler: rr,
     reals: [{address: 192.0.2.11}]}
limits: {flows: 1000, services: 16, reals: 64}
";

struct Running {
    socket: PathBuf,
    dir: PathBuf,
    capturer: Arc<FakeCapturer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn start(test: &str) -> Running {
        let config = config::parse(CONFIG, "dump.yaml").unwrap();
        let eth0 = InterfaceInfo {
            name: "eth0".into(),
            index: 3,
            mac: [2, 0, 0, 0, 0, 2],
            prefixes: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
            mtu: 1500,
            vlan: None,
            egress: 3,
        };
        let state = Desired::new(&config, vec![eth0], &Routes::new()).unwrap();
        let dir = std::env::temp_dir().join(format!("lb-dump-{test}-{}", std::process::id()));
        let socket = dir.join("lbd.sock");
        let listener = admin::bind_admin_socket(&socket, None).unwrap();
        let daemon = Daemon::new(
            &config.instance,
            config.limits.flows,
            state,
            Box::new(FakeDataplane::default()),
            Arc::new(FakeReader::default()),
        )
        .unwrap();
        let capturer = Arc::new(FakeCapturer::default());
        let context: Arc<AdminContext> = daemon.context();
        context.set_capturer(capturer.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(daemon::run(daemon, listener, async {
            let _ = stopped.await;
        }));
        Running {
            socket,
            dir,
            capturer,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }

    /// Waits (bounded) until a capture with `filter` runs, or none does.
    async fn wait_armed(&self, filter: Option<CaptureFilter>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.capturer.armed() != filter {
            assert!(
                Instant::now() < deadline,
                "capture {:?}, waited for {filter:?}",
                self.capturer.armed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn args(words: &[&str]) -> DumpArgs {
    let mut argv = vec!["lbadm", "dump"];
    argv.extend_from_slice(words);
    match Cli::parse_from(argv).verb {
        Some(Verb::Dump(args)) => args,
        other => panic!("{words:?} parsed as {other:?}"),
    }
}

/// `lbadm dump WORDS` on a blocking thread: what it printed, or its error. Awaiting it
/// fails the test after 10 s.
fn dump_in_background(
    socket: &Path,
    words: &[&str],
) -> impl std::future::Future<Output = Result<Result<String, Failure>, String>> + use<> {
    let (socket, args) = (socket.to_path_buf(), args(words));
    let words = words.join(" ");
    let task = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        dump::run(&socket, &args, &mut out).map(|()| String::from_utf8(out).unwrap())
    });
    async move {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(done) => Ok(done.expect("lbadm dump panicked")),
            Err(_) => Err(format!("lbadm dump {words} still running after 10 s")),
        }
    }
}

/// A SYN from 203.0.113.7:40000 to 192.0.2.11:8080 as NAT sent it to real 2 of service 1.
fn nat_syn() -> CapturedPacket {
    let mut frame = vec![2, 0, 0, 0, 0, 0x0b, 2, 0, 0, 0, 0, 2, 0x08, 0];
    frame.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    frame.extend_from_slice(&[203, 0, 113, 7, 192, 0, 2, 11]);
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&8080u16.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    CapturedPacket {
        action: 3,
        reason: Reason::ForwardedTx.index(),
        service_id: 1,
        real_id: 2,
        ingress_ifindex: 3,
        egress_ifindex: 3,
        frame_len: frame.len() as u32,
        monotonic_ns: admin::monotonic_now_ns(),
        original: None,
        data: frame,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_prints_its_packets_and_stops_at_its_count() {
    let mut lbd = Running::start("count").await;
    let dump = dump_in_background(
        &lbd.socket,
        &["-t", "192.0.2.100:80", "-r", "192.0.2.12", "-c", "2"],
    );
    lbd.wait_armed(Some(CaptureFilter {
        service_id: 1,
        real_id: 2,
    }))
    .await;
    // One the program recorded under another filter (it read the entry as it changed): not
    // this dump's, and not counted.
    let mut other_real = nat_syn();
    other_real.real_id = 1;
    assert!(lbd.capturer.send(other_real));
    assert!(lbd.capturer.send(nat_syn()));
    assert!(lbd.capturer.send(nat_syn()));
    let printed = dump.await.unwrap().unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    for line in lines {
        assert!(
            line.ends_with(
                " eth0 tx forwarded_tx TCP 192.0.2.100:80 real 192.0.2.12:8080: IP \
                 203.0.113.7.40000 > 192.0.2.11.8080: Flags [S], seq 1, length 0"
            ),
            "{printed}"
        );
    }
    // Off once the count is reached.
    lbd.wait_armed(None).await;
    lbd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_writes_a_pcap_file() {
    let mut lbd = Running::start("pcap").await;
    let path = lbd.dir.join("dump.pcap");
    let dump = dump_in_background(
        &lbd.socket,
        &[
            "-u",
            "192.0.2.100:53",
            "-c",
            "1",
            "-w",
            path.to_str().unwrap(),
        ],
    );
    lbd.wait_armed(Some(CaptureFilter {
        service_id: 2,
        real_id: 0,
    }))
    .await;
    let mut packet = nat_syn();
    packet.service_id = 2;
    packet.frame_len = 1514;
    assert!(lbd.capturer.send(packet.clone()));
    assert_eq!(dump.await.unwrap().unwrap(), "", "nothing printed with -w");
    let file = dump::pcap::read(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!((file.snap_len, file.link_type), (256, 1));
    assert_eq!(file.records.len(), 1);
    assert_eq!(file.records[0].data, packet.data);
    assert_eq!(file.records[0].frame_len, 1514);
    lbd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_service_or_real_is_refused_in_ipvsadms_words() {
    let mut lbd = Running::start("refused").await;
    // A file named by -w is left as it was by a dump lbd refuses.
    let kept = lbd.dir.join("kept.pcap");
    std::fs::write(&kept, b"an earlier capture").unwrap();
    let kept_text = kept.to_str().unwrap();
    for (words, error) in [
        (
            &["-t", "192.0.2.100:81", "-w", kept_text][..],
            "No such service: -t 192.0.2.100:81",
        ),
        (
            &["-u", "192.0.2.100:80"][..],
            "No such service: -u 192.0.2.100:80",
        ),
        (
            &["-t", "192.0.2.100:80", "-r", "192.0.2.99"][..],
            "No such destination: -r 192.0.2.99 in TCP 192.0.2.100:80",
        ),
        (
            &["-t", "192.0.2.100:80", "-r", "192.0.2.11:80"][..],
            "No such destination: -r 192.0.2.11:80 in TCP 192.0.2.100:80",
        ),
        (
            &["-r", "192.0.2.11"][..],
            "-r 192.0.2.11 is more than one real (192.0.2.11:8080 in TCP 192.0.2.100:80, \
             192.0.2.11:53 in UDP 192.0.2.100:53): name the service with -t or -u, and the port",
        ),
    ] {
        let failure = dump_in_background(&lbd.socket, words)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(failure.to_string(), error, "{words:?}");
        assert_eq!(failure.exit_code(), 255, "{words:?}: refused by lbd");
        assert_eq!(lbd.capturer.armed(), None, "{words:?}");
    }
    assert_eq!(std::fs::read(&kept).unwrap(), b"an earlier capture");

    // Arguments that do not check, and no lbd: ipvsadm's 2.
    for (words, error) in [
        (
            &["-t", "192.0.2.100"][..],
            "-t: `192.0.2.100` is not VIP:PORT",
        ),
        (&["-u", "foo"][..], "-u: `foo` is not VIP:PORT"),
        (&["-r", "foo"][..], "-r: `foo` is not RIP or RIP:PORT"),
        (&["-c", "0"][..], "-c: the count must be at least 1"),
    ] {
        let failure = dump::request(&args(words)).unwrap_err();
        assert_eq!(failure.to_string(), error, "{words:?}");
        assert_eq!(failure.exit_code(), 2, "{words:?}");
    }
    let nobody = dump_in_background(&lbd.dir.join("nobody.sock"), &[])
        .await
        .unwrap()
        .unwrap_err();
    assert!(nobody.to_string().contains("cannot reach lbd"), "{nobody}");
    assert_eq!(nobody.exit_code(), 2);
    lbd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_capture_at_a_time_and_off_when_its_client_goes_or_lbd_stops() {
    let mut lbd = Running::start("one").await;
    // A client of its own, to close at will.
    let mut first = UnixStream::connect(&lbd.socket).unwrap();
    first
        .write_all(b"{\"request\": \"dump\", \"service\": {\"protocol\": \"tcp\", \"vip\": \"192.0.2.100\", \"port\": 80}}\n")
        .unwrap();
    let mut replies = BufReader::new(first.try_clone().unwrap());
    let mut line = String::new();
    replies.read_line(&mut line).unwrap();
    assert!(line.contains("\"reply\":\"capturing\""), "{line}");
    let error = dump_in_background(&lbd.socket, &[])
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        error.to_string().contains("a capture is already running"),
        "{error}"
    );
    assert_eq!(error.exit_code(), 255);
    // Its client gone, the capture is off, and the next one starts.
    drop(replies);
    drop(first);
    lbd.wait_armed(None).await;

    let mut second = BufReader::new(UnixStream::connect(&lbd.socket).unwrap());
    second
        .get_mut()
        .write_all(b"{\"request\": \"dump\"}\n")
        .unwrap();
    line.clear();
    second.read_line(&mut line).unwrap();
    assert!(line.contains("capturing every packet"), "{line}");
    lbd.wait_armed(Some(CaptureFilter::default())).await;
    // lbd stopping ends it, with a last line that says so.
    lbd.stop().await;
    line.clear();
    second.read_line(&mut line).unwrap();
    assert!(
        line.contains("\"reply\":\"done\"") && line.contains("lbd is stopping"),
        "{line}"
    );
    assert_eq!(lbd.capturer.armed(), None);
}

/// A client of its own on `socket`, its dump request sent and lbd's `capturing` line read;
/// reads time out after 10 s.
fn raw_dump_client(socket: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let client = UnixStream::connect(socket).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (&client).write_all(b"{\"request\": \"dump\"}\n").unwrap();
    let mut replies = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    replies.read_line(&mut line).unwrap();
    assert!(line.contains("\"reply\":\"capturing\""), "{line}");
    (client, replies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_done_writing_still_gets_its_packets_until_it_closes() {
    let mut lbd = Running::start("half-closed").await;
    // As socat does once its stdin ends.
    let (client, mut replies) = raw_dump_client(&lbd.socket);
    client.shutdown(Shutdown::Write).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lbd.capturer.armed(), Some(CaptureFilter::default()));
    assert!(lbd.capturer.send(nat_syn()));
    let mut line = String::new();
    replies.read_line(&mut line).unwrap();
    assert!(line.contains("\"reply\":\"packet\""), "{line}");
    // Closed for good, with no packet to write: lbd notices the hang-up.
    drop(replies);
    drop(client);
    lbd.wait_armed(None).await;
    lbd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_capture() {
    let mut lbd = Running::start("stalled").await;
    // Never read from again, as a pager left unscrolled: lbd's writes fill the socket.
    let (_client, _replies) = raw_dump_client(&lbd.socket);
    let deadline = Instant::now() + admin::WRITE_STALL + Duration::from_secs(10);
    while lbd.capturer.armed().is_some() {
        assert!(
            Instant::now() < deadline,
            "still capturing {:?} after the client stalled",
            admin::WRITE_STALL + Duration::from_secs(10)
        );
        for _ in 0..64 {
            lbd.capturer.send(nat_syn());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lbd.stop().await;
}
