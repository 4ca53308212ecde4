//! Health checks, the sorry server, `/metrics` and the status page, through real packets: a
//! real whose HTTP server stops leaves rotation within `fall × interval` (and a reload does
//! not bring it back), returns after `rise` passed checks, and the metrics and the status page
//! say so, with the numbers `lbadm -L -n --stats` shows. Needs root.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, VIP,
    http::{self, HttpServer},
    lbd::Lbd,
    netns::{self, Netns},
    privilege::require_root,
};

const TIMEOUT: Duration = Duration::from_secs(5);
const INTERVAL: Duration = Duration::from_millis(200);
const RISE: u32 = 2;
const FALL: u32 = 3;
/// Beyond `fall × interval` (or `rise × interval`): the check in flight when the real died,
/// its timeout, and the reconciler's write.
const SLACK: Duration = Duration::from_millis(1500);
const METRICS: &str = "127.0.0.1:9105";

fn config() -> String {
    format!(
        "interfaces:
  - name: eth0
    xdp_mode: native
metrics:
  listen: {METRICS}
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    health_check: {{type: http, path: /, expect_status: 200, interval: {}ms, timeout: 150ms, rise: {RISE}, fall: {FALL}}}
    reals:
      - {{address: 192.0.2.11, weight: 1}}
      - {{address: 192.0.2.12, weight: 1}}
      - {{address: 192.0.2.13, weight: 1}}
  - vip: 192.0.2.100
    port: 81
    protocol: tcp
    health_check: {{type: tcp, interval: {}ms, timeout: 150ms, rise: {RISE}, fall: {FALL}}}
    sorry_server: 192.0.2.13:81
    reals:
      - {{address: 192.0.2.11}}
limits: {{flows: 65536, services: 16, reals: 64}}
",
        INTERVAL.as_millis(),
        INTERVAL.as_millis()
    )
}

/// `GET path` on the metrics listener, from inside the balancer's namespace.
fn fetch(lb: &Netns, path: &str) -> String {
    lb.run(|| {
        let mut stream = TcpStream::connect_timeout(&METRICS.parse().unwrap(), TIMEOUT)
            .expect("connecting to the metrics listener");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
    })
}

/// `name{labels} value` lines of the metrics text, by name and labels.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && line.contains(' '))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn real_sample(samples: &HashMap<String, f64>, metric: &str, real: &str) -> f64 {
    samples
        .iter()
        .find(|(series, _)| {
            series.starts_with(&format!("{metric}{{"))
                && series.contains("service=\"tcp/192.0.2.100:80\"")
                && series.contains(&format!("real=\"{real}\""))
        })
        .map(|(_, value)| *value)
        .unwrap_or_else(|| panic!("no {metric} for {real} in:\n{samples:#?}"))
}

/// Waits (bounded) until the listing says whether `real` of the port-80 service is available;
/// returns how long that took.
fn wait_available(lbd: &Lbd, real: IpAddr, available: bool, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let listing = lbd.listing();
        let now = listing.services[0]
            .reals
            .iter()
            .find(|r| r.address == real)
            .expect("the real is listed")
            .available;
        if now == available {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{real} still {} after {limit:?}:\n{}",
            if available { "out" } else { "in" },
            lbd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gets(topology: &DrTopology, port: u16, count: usize) -> Vec<String> {
    let vip = SocketAddr::new(IpAddr::V4(VIP), port);
    (0..count)
        .map(|index| {
            topology
                .client
                .run(|| http::get(vip, "/", TIMEOUT))
                .unwrap_or_else(|e| panic!("request {index} to port {port}: {e}"))
                .trim_end()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_dead_real_leaves_rotation_and_returns_and_metrics_and_the_page_say_so() {
    if !require_root("e2e_health") {
        return;
    }
    let prefix = format!("lbt-hc-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1", "real2", "real3"]);
    topology.attach_pass_program();
    topology.lb.ip(&["link", "set", "lo", "up"]);
    let server = |index: usize, port: u16, name: &str| {
        let (_, netns, _) = &topology.reals[index];
        HttpServer::start(netns, SocketAddr::from(([0, 0, 0, 0], port)), name)
    };
    let _real1 = server(0, 80, "real1");
    let mut real2 = Some(server(1, 80, "real2"));
    let _real3 = server(2, 80, "real3");
    let _sorry = server(2, 81, "sorry");
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-hc-{}", std::process::id()),
        &config(),
    );
    let real2_address: IpAddr = "192.0.2.12".parse().unwrap();

    // Every real passes its checks; the port-81 service's only real has no server: after
    // `fall` checks it is down, and its sorry server answers.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let metrics = samples(&fetch(&topology.lb, "/metrics"));
        let checked = ["192.0.2.11:80", "192.0.2.12:80", "192.0.2.13:80"]
            .iter()
            .all(|real| real_sample(&metrics, "lb_real_health_checks_total", real) >= 1.0);
        let port81_down = !lbd.listing().services[1].reals[0].available;
        if checked && port81_down {
            break;
        }
        assert!(Instant::now() < deadline, "no checks:\n{}", lbd.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        gets(&topology, 81, 5).iter().all(|body| body == "sorry"),
        "the sorry server takes the flows of a service whose reals are all down"
    );
    // Listed as ipvsadm lists keepalived's sorry server, only while it stands in; its own
    // metric says so, and it is not counted as a real.
    let table = lbd.lbadm(&["-L", "-n"]);
    assert!(table.contains("-> 192.0.2.13:81"), "{table}");
    let metrics = fetch(&topology.lb, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("lb_sorry_server_standing_in{")
                && line.contains("192.0.2.13:81")
                && line.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|line| line.starts_with("lb_real_up{") && line.contains("192.0.2.13:81")),
        "{metrics}"
    );
    let before: Vec<String> = gets(&topology, 80, 30);
    assert!(before.iter().any(|body| body == "real2"), "{before:?}");

    // real2's server stops: out within fall × interval.
    real2.take();
    let out_after = wait_available(&lbd, real2_address, false, INTERVAL * FALL + SLACK);
    eprintln!(
        "real2 left rotation {out_after:?} after its server stopped (fall × interval = {:?})",
        INTERVAL * FALL
    );
    let during = gets(&topology, 80, 30);
    assert!(
        !during.iter().any(|body| body == "real2"),
        "a dead real takes no new flows: {during:?}"
    );
    let page = fetch(&topology.lb, "/");
    let row = page
        .lines()
        .skip_while(|line| !line.contains("192.0.2.12:80"))
        .take(12)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        row.contains("DOWN"),
        "the status page shows real2 down:\n{row}"
    );
    let metrics = samples(&fetch(&topology.lb, "/metrics"));
    assert_eq!(real_sample(&metrics, "lb_real_up", "192.0.2.12:80"), 0.0);
    assert_eq!(real_sample(&metrics, "lb_real_up", "192.0.2.11:80"), 1.0);

    // A reload (weights changed) does not bring the dead real back.
    std::fs::write(
        lbd.config_path(),
        std::fs::read_to_string(lbd.config_path()).unwrap().replace(
            "{address: 192.0.2.11, weight: 1}",
            "{address: 192.0.2.11, weight: 2}",
        ),
    )
    .unwrap();
    lbd.signal(libc::SIGHUP);
    assert!(lbd.wait_for_log("reload applied", TIMEOUT), "{}", lbd.log());
    assert!(
        !lbd.listing().services[0].reals[1].available,
        "a reload resurrected a dead real"
    );

    // Nor does a restart: the verdict is kept in the real's entry, and the new daemon's
    // checks start from it.
    lbd.restart(&topology.lb);
    assert!(
        !lbd.listing().services[0].reals[1].available,
        "a restart resurrected a dead real"
    );
    let during = gets(&topology, 80, 10);
    assert!(!during.iter().any(|body| body == "real2"), "{during:?}");

    // Back after `rise` passed checks.
    real2 = Some(server(1, 80, "real2"));
    let back_after = wait_available(&lbd, real2_address, true, INTERVAL * RISE + SLACK);
    eprintln!(
        "real2 returned {back_after:?} after its server restarted (rise × interval = {:?})",
        INTERVAL * RISE
    );
    let after = gets(&topology, 80, 40);
    assert!(after.iter().any(|body| body == "real2"), "{after:?}");
    // (This daemon started with real2 down: its log has the way back up.)
    assert!(
        lbd.log().contains("real 192.0.2.12:80 is up"),
        "{}",
        lbd.log()
    );

    // The metrics show what `lbadm -L -n --stats` shows (no client traffic in between; the
    // checks never pass through the program's counters).
    let listing = lbd.listing();
    let metrics = samples(&fetch(&topology.lb, "/metrics"));
    let service = &listing.services[0];
    let service_sample = |metric: &str| {
        metrics
            .iter()
            .find(|(series, _)| {
                series.starts_with(&format!("{metric}{{"))
                    && series.contains("service=\"tcp/192.0.2.100:80\"")
                    && !series.contains("real=")
            })
            .map(|(_, value)| *value as u64)
            .unwrap_or_else(|| panic!("no {metric}"))
    };
    assert_eq!(
        service_sample("lb_service_packets_total"),
        service.stats.in_packets
    );
    assert_eq!(
        service_sample("lb_service_bytes_total"),
        service.stats.in_bytes
    );
    assert_eq!(
        service_sample("lb_service_connections_total"),
        service.stats.conns
    );
    for real in &service.reals {
        let name = format!("{}:{}", real.address, real.port);
        assert_eq!(
            real_sample(&metrics, "lb_real_packets_total", &name) as u64,
            real.stats.in_packets,
            "{name}"
        );
        assert_eq!(
            real_sample(&metrics, "lb_real_connections_total", &name) as u64,
            real.stats.conns,
            "{name}"
        );
        assert_eq!(
            real_sample(&metrics, "lb_real_active_connections", &name) as u64,
            real.active_conn,
            "{name}"
        );
        assert_eq!(
            real_sample(&metrics, "lb_real_inactive_connections", &name) as u64,
            real.inactive_conn,
            "{name}"
        );
    }
    assert!(service.stats.conns >= 100, "{:?}", service.stats);
    drop(real2);
    assert!(lbd.stop().success());
}

/// `on_failure`: with `inhibit` a real that fails its check keeps its connections (weight 0,
/// keepalived's inhibit_on_failure); with `remove` they end, as for a removed real. Both take
/// no new connection until the check passes again. The checks go to a port of their own, so
/// the service's port keeps answering while the check fails.
#[test]
fn inhibit_keeps_a_failed_reals_connections_and_remove_ends_them() {
    if !require_root("e2e_health") {
        return;
    }
    let prefix = format!("lbt-hci-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1", "real2"]);
    topology.attach_pass_program();
    let server = |index: usize, port: u16, name: &str| {
        let (_, netns, _) = &topology.reals[index];
        HttpServer::start(netns, SocketAddr::from(([0, 0, 0, 0], port)), name)
    };
    let _servers: Vec<HttpServer> = [80, 8080]
        .into_iter()
        .flat_map(|port| [server(0, port, "real1"), server(1, port, "real2")])
        .collect();
    let _check1 = server(0, 8081, "check1");
    let mut check2 = Some(server(1, 8081, "check2"));
    let check = format!(
        "{{type: http, port: 8081, interval: {}ms, timeout: 150ms, rise: {RISE}, fall: {FALL}}}",
        INTERVAL.as_millis()
    );
    let lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-hci-{}", std::process::id()),
        &format!(
            "interfaces: [{{name: eth0, xdp_mode: native}}]
services:
  - {{vip: 192.0.2.100, port: 80, protocol: tcp, scheduler: rr, on_failure: inhibit, health_check: {check},
     reals: [{{address: 192.0.2.11}}, {{address: 192.0.2.12}}]}}
  - {{vip: 192.0.2.100, port: 8080, protocol: tcp, scheduler: rr, on_failure: remove, health_check: {check},
     reals: [{{address: 192.0.2.11}}, {{address: 192.0.2.12}}]}}
"
        ),
    );
    // A kept connection on real2 for each service (rr alternates, so four connections
    // give two on each real).
    let on_real2 = |port: u16| {
        let vip = SocketAddr::new(IpAddr::V4(VIP), port);
        (0..4)
            .map(|_| {
                let mut connection = topology
                    .client
                    .run(|| http::HttpClient::connect(vip, TIMEOUT))
                    .expect("a connection");
                let real = connection.get("/").expect("an answer");
                (connection, real)
            })
            .find(|(_, real)| real.trim_end() == "real2")
            .map(|(connection, _)| connection)
            .expect("a connection on real2")
    };
    let mut inhibited = on_real2(80);
    let mut removed = on_real2(8080);

    check2.take();
    let real2: IpAddr = "192.0.2.12".parse().unwrap();
    let deadline = Instant::now() + INTERVAL * FALL + SLACK;
    loop {
        let listing = lbd.listing();
        let health_of = |service: usize| {
            listing.services[service]
                .reals
                .iter()
                .find(|real| real.address == real2)
                .unwrap()
                .available
        };
        // Inhibited: still available (its flows go on); removed: not.
        if !health_of(1) {
            assert!(health_of(0), "an inhibited real stays available");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "real2 never failed:\n{}",
            lbd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Give the inhibit service's verdict the same moment to land (both check one endpoint).
    std::thread::sleep(INTERVAL);
    assert_eq!(
        inhibited
            .get("/")
            .expect("an inhibited real keeps its connection")
            .trim_end(),
        "real2"
    );
    assert!(
        removed.get("/").is_err(),
        "a removed real's connection ends"
    );
    for port in [80, 8080] {
        assert!(
            gets(&topology, port, 10).iter().all(|body| body == "real1"),
            "no new connection to a failed real on port {port}"
        );
    }
    assert_eq!(inhibited.get("/").unwrap().trim_end(), "real2");
    let _check2 = server(1, 8081, "check2");
    let deadline = Instant::now() + INTERVAL * RISE + SLACK;
    while !gets(&topology, 8080, 4).iter().any(|body| body == "real2") {
        assert!(
            Instant::now() < deadline,
            "real2 never came back:\n{}",
            lbd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
