//! The daemon never stalls: while a listing walks a flow table of half a million entries,
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

use lb_common::{FAMILY_IPV4, Flow, FlowKey, PROTO_TCP};
use lb_tests::{fixture::loopback, privilege::require_root};
use lb_userspace::{
    admin::{self, Reply, Request},
    config,
    daemon::{self, Daemon},
    dataplane::{batch, loader},
    reconcile::Desired,
};

const FLOWS: u32 = 500_000;
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
limits: {flows: 524288, services: 16, reals: 64}
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
    } = loader::load(&config.limits, None).unwrap_or_else(|e| panic!("{e:?}"));

    // Half a million live flows over the three reals (ids 1, 2, 3).
    let now = admin::monotonic_now_ns();
    let keys: Vec<FlowKey> = (0..FLOWS)
        .map(|i| {
            let mut key = FlowKey {
                protocol: PROTO_TCP,
                family: FAMILY_IPV4,
                src_port_be: (i as u16).to_be(),
                dst_port_be: 80u16.to_be(),
                ..FlowKey::default()
            };
            key.src[..4].copy_from_slice(&(0xcb00_7100u32 + (i >> 16)).to_be_bytes());
            key.dst[..4].copy_from_slice(&[192, 0, 2, 100]);
            key
        })
        .collect();
    let flows: Vec<Flow> = (0..FLOWS)
        .map(|i| Flow {
            real_id: 1 + i % 3,
            service_id: 1,
            last_seen_ns: now,
        })
        .collect();
    batch::update(reader.flows().fd().as_fd(), &keys, &flows).expect("filling the flow table");

    let mut desired = Desired::new(&config, vec![loopback()]).unwrap_or_else(|e| panic!("{e}"));
    for (ifindex, addr) in desired.real_addresses() {
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
        let listener = admin::bind_admin_socket(&socket).unwrap_or_else(|e| panic!("{e}"));
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
                let reply = admin::request(&socket, &Request::List);
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
        }
        let (reply, walk) = listing.await.unwrap();
        walking.store(false, Ordering::Relaxed);
        let lag = ticker.await.unwrap();
        let Ok(Reply::Listing(listing)) = reply else {
            panic!("listing: {reply:?}");
        };
        let counted: u64 = listing.services[0]
            .reals
            .iter()
            .map(|r| r.active_conn)
            .sum();
        assert_eq!(counted, u64::from(FLOWS), "every flow counted by the walk");
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
