//! The daemon never stalls: while a connection listing (`lbadm -L -n -c`) walks a flow table of a hundred thousand entries,
//! another admin request is answered and a periodic task keeps its pace, both within 100 ms.
//! The daemon runs in this process (as `lbd` runs it: a two-worker runtime, the real program's
//! maps, its own admin socket), with the flow table filled directly. Needs root.

use std::{
    os::fd::AsFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lb_tests::{fixture::loopback, privilege::require_root};
use lb_userspace::{
    admin::{self, Reply, Request},
    config,
    daemon::{self, Daemon},
    dataplane::{batch, loader},
    reconcile::Desired,
};

const FLOWS: u32 = 100_000;

/// The reply's bytes as they come: decoding a hundred thousand connections would take this
/// test's CPU away from the daemon it measures.
fn raw_request(socket: &std::path::Path, request: &str) -> Vec<u8> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    stream
        .write_all(format!("{request}\n").as_bytes())
        .expect("sending the request");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("reading the reply");
    reply
}
const BOUND: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(10);

const CONFIG: &str = "
instance: liveness
interfaces: [{name: lo}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    reals: [{address: 192.0.2.11}, {address: 192.0.2.12}, {address: 192.0.2.13}]
limits: {flows: 131072, services: 16, reals: 64}
";

#[test]
fn a_flow_walk_stalls_neither_the_admin_socket_nor_the_timers() {
    if !require_root("a_flow_walk_stalls_neither_the_admin_socket_nor_the_timers") {
        return;
    }
    let config = config::parse(CONFIG, "liveness.yaml").unwrap_or_else(|e| panic!("{e}"));
    let loader::Loaded {
        ebpf: _ebpf,
        dataplane,
        reader,
        sweeper: _,
        capture: _,
    } = loader::load(&config.limits, None).unwrap_or_else(|e| panic!("{e:?}"));

    // A hundred thousand live flows over the three reals (ids 1, 2, 3).
    let (keys, flows) = lb_tests::conntrack::established_flows(
        FLOWS,
        std::net::Ipv4Addr::new(192, 0, 2, 100),
        3,
        admin::monotonic_now_ns(),
    );
    batch::update(reader.flows().fd().as_fd(), &keys, &flows).expect("filling the flow table");

    let mut desired = Desired::new(&config, vec![loopback()], &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    for (ifindex, addr) in desired.next_hops() {
        desired.set_neighbours(ifindex, &[(addr, [2, 0, 0, 0, 0, 1])].into());
    }
    let dir = std::env::temp_dir().join(format!("lbt-liveness-{}", std::process::id()));
    let socket = dir.join("lbd.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (walk, statuses, lag) = runtime.block_on(async {
        let daemon = Daemon::new(
            &config.instance,
            config.limits.flows,
            desired,
            Box::new(dataplane),
            Arc::new(reader),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let listener = admin::bind_admin_socket(&socket, None).unwrap_or_else(|e| panic!("{e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(daemon::run(daemon, listener, async {
            let _ = stopped.await;
        }));

        // A periodic task on the daemon's runtime, measuring how late each tick comes.
        let walking = Arc::new(AtomicBool::new(false));
        let ticker = {
            let walking = walking.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(TICK);
                let mut worst = None;
                loop {
                    let scheduled = interval.tick().await;
                    let late = tokio::time::Instant::now() - scheduled;
                    if walking.load(Ordering::Relaxed) {
                        worst = Some(worst.unwrap_or(Duration::ZERO).max(late));
                    } else if let Some(worst) = worst {
                        return worst;
                    }
                }
            })
        };

        walking.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let listing = {
            let socket = socket.clone();
            tokio::task::spawn_blocking(move || {
                let reply = raw_request(&socket, r#"{"request":"connections"}"#);
                (reply, started.elapsed())
            })
        };
        // Status requests, one after the other, for as long as the walk lasts (bounded).
        let mut statuses = Vec::new();
        tokio::time::sleep(Duration::from_millis(5)).await;
        while !listing.is_finished() && started.elapsed() < Duration::from_secs(30) {
            let socket = socket.clone();
            let asked = Instant::now();
            let reply =
                tokio::task::spawn_blocking(move || admin::request(&socket, &Request::Status))
                    .await
                    .unwrap();
            assert!(matches!(reply, Ok(Reply::Status(_))), "{reply:?}");
            statuses.push((asked.elapsed(), !listing.is_finished()));
            // Paced below the admin socket's rate bound (1,000 a second), which a walk of
            // several seconds would otherwise meet.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (reply, walk) = listing.await.unwrap();
        walking.store(false, Ordering::Relaxed);
        let lag = ticker.await.unwrap();
        assert!(
            reply.starts_with(br#"{"reply":"connections""#),
            "connection listing: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        );
        let listed = reply
            .windows(br#""state":"#.len())
            .filter(|window| window == br#""state":"#)
            .count();
        assert_eq!(listed, FLOWS as usize, "every flow listed by the walk");
        stop.send(()).unwrap();
        server.await.unwrap();
        (walk, statuses, lag)
    });
    let _ = std::fs::remove_dir_all(&dir);

    let during: Vec<Duration> = statuses
        .iter()
        .filter(|(_, during)| *during)
        .map(|(took, _)| *took)
        .collect();
    eprintln!(
        "walk of {FLOWS} flows: {walk:?}; {} status requests answered meanwhile, slowest {:?}; \
         worst timer lag {lag:?}",
        during.len(),
        during.iter().max()
    );
    assert!(
        !during.is_empty(),
        "no status request was answered while the walk ran ({walk:?}): nothing was shown"
    );
    for took in &during {
        assert!(
            *took < BOUND,
            "a status request took {took:?} during the walk"
        );
    }
    assert!(
        lag < BOUND,
        "a {TICK:?} timer was {lag:?} late during the walk"
    );
}
