//! Operating under traffic, through real packets: reloads (weights, reals added, drained and
//! removed, scheduler changes) and a daemon killed with SIGKILL then started again, while a
//! request loop opens new connections and long-lived connections keep talking. Nothing may
//! fail: no refused or reset connection, no request without an answer, and no long-lived
//! connection moved to another real. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, VIP,
    http::{self, HttpClient, HttpServer},
    lbd::Lbd,
    netns,
    privilege::require_root,
};

const TIMEOUT: Duration = Duration::from_secs(5);
/// Long-lived connections, opened before the first change.
const KEPT: usize = 8;
/// The request loop's bound, whatever happens.
const LOOP_LIMIT: Duration = Duration::from_secs(120);

fn vip() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP), 80)
}

fn config(reals: &str, scheduler: &str) -> String {
    format!(
        "interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: {scheduler}
    reals:
{reals}limits: {{flows: 65536, services: 16, reals: 64}}
"
    )
}

fn real(last: u8, weight: u32) -> String {
    format!("      - {{address: 192.0.2.{last}, weight: {weight}}}\n")
}

/// Traffic that runs while the test changes things: a loop of new connections, one request
/// each, and requests over the long-lived connections in turn, each checked to come from the
/// real that answered it first.
struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    failures: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<u64>>,
}

impl Traffic {
    fn start(topology: &DrTopology) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0u64));
        let mut kept: Vec<(HttpClient, String)> = (0..KEPT)
            .map(|index| {
                let mut connection = topology
                    .client
                    .run(|| HttpClient::connect(vip(), TIMEOUT))
                    .unwrap_or_else(|e| panic!("kept connection {index}: {e}"));
                let real = connection
                    .get("/")
                    .unwrap_or_else(|e| panic!("kept connection {index}: {e}"));
                (connection, real)
            })
            .collect();
        let mut threads = Vec::new();
        {
            let (stop, failures, requests) = (stop.clone(), failures.clone(), requests.clone());
            threads.push(std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < LOOP_LIMIT {
                    for (index, (connection, real)) in kept.iter_mut().enumerate() {
                        match connection.get("/") {
                            Ok(body) if body == *real => {}
                            Ok(body) => failures.lock().unwrap().push(format!(
                                "kept connection {index} moved from {real:?} to {body:?}"
                            )),
                            Err(error) => failures
                                .lock()
                                .unwrap()
                                .push(format!("kept connection {index} ({real:?}): {error}")),
                        }
                        *requests.lock().unwrap() += 1;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }));
        }
        {
            let (stop, failures, requests) = (stop.clone(), failures.clone(), requests.clone());
            threads.push(topology.client.spawn_thread(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < LOOP_LIMIT {
                    if let Err(error) = http::get(vip(), "/", TIMEOUT) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("new connection: {error}"));
                    }
                    *requests.lock().unwrap() += 1;
                }
            }));
        }
        Traffic {
            stop,
            threads,
            failures,
            requests,
        }
    }

    /// Stops the traffic; the failures seen, and how many requests were made.
    fn finish(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("traffic thread");
        }
        let failures = self.failures.lock().unwrap().clone();
        let requests = *self.requests.lock().unwrap();
        (failures, requests)
    }
}

/// Writes `text` (after the running config's instance and admin lines) and reloads it.
fn reload(lbd: &Lbd, text: &str) {
    std::fs::write(lbd.config_path(), lbd_config(lbd, text)).expect("writing the config");
    lbd.reload();
}

/// `text` with the instance and admin lines the running config starts with.
fn lbd_config(lbd: &Lbd, text: &str) -> String {
    let current = std::fs::read_to_string(lbd.config_path()).expect("reading the config");
    let head: String = current
        .lines()
        .take_while(|line| !line.starts_with("interfaces:"))
        .map(|line| format!("{line}\n"))
        .collect();
    format!("{head}{text}")
}

fn topology(test: &str) -> (DrTopology, Vec<HttpServer>) {
    let prefix = format!("lbt-{test}-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1", "real2", "real3", "real4"]);
    topology.attach_pass_program();
    let servers = topology.serve_http();
    (topology, servers)
}

#[test]
fn reloads_under_traffic_lose_nothing() {
    if !require_root("e2e_reload") {
        return;
    }
    let (topology, servers) = topology("rld");
    let initial = config(&(real(11, 1) + &real(12, 1)), "wrr");
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-rld-{}", std::process::id()),
        &initial,
    );
    let traffic = Traffic::start(&topology);

    // Reals 11 and 12 stay throughout (the long-lived connections are on them); 13 and 14
    // come, take traffic, are drained (weight 0) and only then removed, as an operator does.
    let steps = [
        config(&(real(11, 3) + &real(12, 1)), "wrr"),
        config(&(real(11, 3) + &real(12, 1) + &real(13, 2)), "wrr"),
        config(
            &(real(11, 1) + &real(12, 1) + &real(13, 1) + &real(14, 1)),
            "wlc",
        ),
        config(
            &(real(11, 1) + &real(12, 2) + &real(13, 1) + &real(14, 1)),
            "rr",
        ),
        config(
            &(real(11, 1) + &real(12, 2) + &real(13, 0) + &real(14, 1)),
            "mh",
        ),
        config(&(real(11, 1) + &real(12, 2) + &real(14, 1)), "mh"),
        config(&(real(11, 2) + &real(12, 2) + &real(14, 0)), "lc"),
        config(&(real(11, 2) + &real(12, 2)), "wrr"),
    ];
    let rounds = 3;
    for _ in 0..rounds {
        for step in &steps {
            reload(&lbd, step);
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let (failures, requests) = traffic.finish();
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed over {} reloads: {failures:#?}\n{}",
        failures.len(),
        rounds * steps.len(),
        lbd.log()
    );
    let served: Vec<usize> = servers.iter().map(HttpServer::requests).collect();
    assert!(
        served[2] > 0 && served[3] > 0,
        "the added reals took traffic: {served:?}"
    );
    eprintln!(
        "{requests} requests over {} reloads, none failed; served {served:?}",
        rounds * steps.len()
    );
    // A reload with a broken file changes nothing and says where it is broken.
    let before = lbd.listing();
    std::fs::write(
        lbd.config_path(),
        lbd_config(&lbd, &initial.replace("wrr", "fastest")),
    )
    .unwrap();
    lbd.signal(libc::SIGHUP);
    assert!(lbd.wait_for_log("reload refused", TIMEOUT), "{}", lbd.log());
    let log = lbd.log();
    let refusal = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(
        refusal.contains("lbd.yaml:") && refusal.contains("services[0].scheduler"),
        "{refusal}"
    );
    let after = lbd.listing();
    assert_eq!(
        (before.services.len(), before.services[0].reals.len()),
        (after.services.len(), after.services[0].reals.len())
    );
    assert!(lbd.stop().success());
}

#[test]
fn a_daemon_killed_under_traffic_loses_nothing() {
    if !require_root("e2e_reload") {
        return;
    }
    let (topology, _servers) = topology("kil");
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-kil-{}", std::process::id()),
        &config(&(real(11, 1) + &real(12, 1) + &real(13, 1)), "wrr"),
    );
    let traffic = Traffic::start(&topology);
    std::thread::sleep(Duration::from_millis(300));
    // SIGKILL: nothing runs at exit; the pinned program and maps go on forwarding.
    let status = lbd.stop_with(libc::SIGKILL);
    assert!(!status.success());
    std::thread::sleep(Duration::from_millis(500));
    let before_restart = *traffic.requests.lock().unwrap();
    lbd.restart(&topology.lb);
    assert!(lbd.log().contains("adopting pinned maps"), "{}", lbd.log());
    std::thread::sleep(Duration::from_millis(500));
    let (failures, requests) = traffic.finish();
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed across SIGKILL and restart: {failures:#?}\n{}",
        failures.len(),
        lbd.log()
    );
    assert!(
        before_restart > KEPT as u64,
        "traffic flowed while lbd was dead"
    );
    eprintln!("{requests} requests across SIGKILL and restart, none failed");
    assert!(lbd.stop().success());
}
